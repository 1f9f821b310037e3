//! Errors of model loading and running.
use std::path::PathBuf;

/// Everything that can go wrong reading a checkpoint, a GGUF file or a tokenizer. Each variant
/// names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file or directory could not be written (or created).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error (without the path).
        source: std::io::Error,
    },
    /// The file is not in the expected format (truncated, bad header, bad JSON...).
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
    /// A tensor or metadata key the model needs is absent.
    #[error("{path}: missing key `{key}`")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A tensor has a shape other than the one the config implies.
    #[error("{path}: tensor `{key}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// Expected shape (PyTorch order).
        expected: Vec<usize>,
        /// Actual shape.
        got: Vec<usize>,
    },
    /// A tensor has a dtype this crate cannot read.
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("{path}: bad config value `{key}`: {msg}")]
    Config {
        /// The file (config.json or the GGUF file).
        path: PathBuf,
        /// The field.
        key: String,
        /// What was wrong.
        msg: String,
    },
    /// A model path read as a hub id `org/name[@rev]` that is neither a local path nor in the
    /// local hub cache ([`crate::hub::resolve_model_path`]).
    #[error(
        "model {repo_id}@{revision} is neither a local path nor in the Hugging Face hub cache \
         {cache}; looked at {}; on a machine with the hub run `hf download {repo_id}` (or \
         `huggingface-cli download {repo_id}`) and copy its models--* folder into that cache, \
         or set HF_HUB_CACHE / HF_HOME to where it is",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotInHubCache {
        /// `org/name`.
        repo_id: String,
        /// The revision asked for (`main` by default).
        revision: String,
        /// Every path looked at, in order: the local path, the ref file, the snapshot folder.
        looked: Vec<PathBuf>,
        /// The cache folder and the variable that chose it.
        cache: String,
    },
    /// The LoRA layer refused a tensor.
    #[error(transparent)]
    Lora(#[from] lora_core::LoraError),
}

impl ModelError {
    /// Shorthand for [`ModelError::Format`].
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
