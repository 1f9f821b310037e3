//! lora-burn: re-exports
