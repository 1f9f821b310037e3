//! # lora-io — the workspace's file writing
//!
//! Every file a lora-burn crate writes (adapters, configs, checkpoints, merged models, fetched
//! inputs) goes through [`atomic_write`] or [`atomic_write_with`], and every safetensors file
//! through [`write_safetensors`]; every safetensors float tensor is read through [`f32_values`].
//! No burn dependency: this crate knows bytes, shapes and dtypes only.

mod atomic;
mod st;

pub use atomic::{atomic_write, atomic_write_with};
pub use st::{f32_values, serialize_safetensors, write_safetensors, StTensor};

/// Errors of [`write_safetensors`] and [`serialize_safetensors`].
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// Writing the file failed (the message names the path).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The tensors could not be serialized (a shape that does not match the byte count).
    #[error("safetensors {path}: {message}")]
    SafeTensors {
        /// The file being written (`<memory>` for [`serialize_safetensors`]).
        path: String,
        /// safetensors' message.
        message: String,
    },
}
