//! The error type of loading, splitting and batching.

use std::path::PathBuf;

/// Errors of loading, splitting and batching. Every variant names the file, index or value.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or its top level is not an array.
    #[error("{path}: invalid JSON: {message}")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// One record of the array is malformed (missing/non-string `t`, label not 0 or 1, …).
    #[error("{path}: record {index}: {message}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 0-based index in the JSON array.
        index: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// No reviews (an empty file, or nothing left after de-duplication).
    #[error("{what}: no reviews")]
    Empty {
        /// Where the data came from.
        what: String,
    },
    /// The split cannot be made as asked.
    #[error("cannot split: {0}")]
    Split(String),
    /// Batching arguments are inconsistent.
    #[error("cannot make batches: {0}")]
    Batch(String),
}
