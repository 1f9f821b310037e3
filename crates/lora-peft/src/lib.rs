//! lora-peft
