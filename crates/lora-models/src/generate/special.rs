//! The EOS and padding ids a model's files declare, for [`super::GenerationConfig`].
use crate::gguf::GgufFile;
use crate::ModelError;
use std::path::Path;

/// The ids that end and pad a generated sequence, as a model's files give them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    /// `eos_token_id` (an id or a list of ids); empty when absent or null.
    pub eos_token_ids: Vec<u32>,
    /// `pad_token_id`, if set.
    pub pad_token_id: Option<u32>,
}

impl SpecialIds {
    /// Reads a model path as [`crate::load_any`] takes it: a GGUF file's
    /// `tokenizer.ggml.eos_token_id` / `tokenizer.ggml.padding_token_id`; a Hugging Face
    /// directory's `generation_config.json` when present (transformers' source for `generate`),
    /// else its `config.json`, fields `eos_token_id` (integer, list of integers or null) and
    /// `pad_token_id`.
    ///
    /// # Errors
    /// [`ModelError::Io`] / [`ModelError::Format`] naming the file when it cannot be read or
    /// parsed; [`ModelError::Config`] naming the field when it is not a non-negative integer
    /// (or a list of them).
    pub fn from_model_path(path: &Path) -> Result<Self, ModelError> {
        if path.is_file() {
            let g = GgufFile::open(path)?;
            let id = |key: &str| -> Result<Option<u32>, ModelError> {
                match g.get(key) {
                    None => Ok(None),
                    Some(_) => {
                        let v = g.get_u64(key)?;
                        u32::try_from(v).map(Some).map_err(|_| ModelError::Config {
                            path: path.to_path_buf(),
                            key: key.into(),
                            msg: format!("is {v}, not a 32-bit token id"),
                        })
                    }
                }
            };
            return Ok(Self {
                eos_token_ids: id("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
                pad_token_id: id("tokenizer.ggml.padding_token_id")?,
            });
        }
        let gen = path.join("generation_config.json");
        let file = if gen.is_file() {
            gen
        } else {
            path.join("config.json")
        };
        let text = lora_io::read_regular_to_string(&file).map_err(|source| ModelError::Io {
            path: file.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::format(&file, format!("invalid JSON: {e}")))?;
        let bad = |key: &str, got: &serde_json::Value| ModelError::Config {
            path: file.clone(),
            key: key.into(),
            msg: format!("is {got}, expected a token id (a non-negative integer)"),
        };
        let one = |key: &str, x: &serde_json::Value| -> Result<u32, ModelError> {
            x.as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad(key, x))
        };
        let eos_token_ids = match &v["eos_token_id"] {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| one("eos_token_id", x))
                .collect::<Result<_, _>>()?,
            x => vec![one("eos_token_id", x)?],
        };
        let pad_token_id = match &v["pad_token_id"] {
            serde_json::Value::Null => None,
            x => Some(one("pad_token_id", x)?),
        };
        Ok(Self {
            eos_token_ids,
            pad_token_id,
        })
    }
}
