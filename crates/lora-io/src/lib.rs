//! # lora-io — the workspace's file writing
//!
//! Every file a lora-burn crate writes (adapters, configs, checkpoints, merged models, fetched
//! inputs) goes through [`atomic_write`] or [`atomic_write_with`], and every safetensors file
//! through [`write_safetensors`]; every safetensors float tensor is read through [`f32_values`].
//! No burn dependency: this crate knows bytes, shapes and dtypes only.

mod atomic;
mod error;
mod st;

pub use atomic::{atomic_write, atomic_write_with};
pub use error::IoError;
pub use st::{f32_values, serialize_safetensors, write_safetensors, StTensor};
