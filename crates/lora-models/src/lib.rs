//! lora-models
