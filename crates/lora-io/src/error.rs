//! The error of the safetensors writer.

/// Errors of [`crate::write_safetensors`] and [`crate::serialize_safetensors`].
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// Writing the file failed (the message names the path).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The tensors could not be serialized (a shape that does not match the byte count).
    #[error("safetensors {path}: {message}")]
    SafeTensors {
        /// The file being written (`<memory>` for [`crate::serialize_safetensors`]).
        path: String,
        /// safetensors' message.
        message: String,
    },
}
