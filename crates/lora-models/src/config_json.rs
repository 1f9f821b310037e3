//! Typed reading of a Hugging Face `config.json`: every error names the file and the key.
use crate::ModelError;
use serde_json::Value;
use std::path::Path;

/// Typed access to the fields of a `config.json` object, with errors naming file and key.
pub(crate) struct Cfg<'a> {
    pub v: &'a Value,
    pub path: &'a Path,
}

impl Cfg<'_> {
    pub fn err(&self, key: &str, msg: String) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            key: key.into(),
            msg,
        }
    }
    /// The value of `key`, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.v.get(key).filter(|x| !x.is_null())
    }
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {x}"))),
        }
    }
    /// A positive integer; `default` when absent (an error naming the key if no default).
    pub fn usize_pos(&self, key: &str, default: Option<usize>) -> Result<usize, ModelError> {
        let n = match (self.opt_usize(key)?, default) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(ModelError::MissingKey {
                    path: self.path.to_path_buf(),
                    key: key.into(),
                })
            }
        };
        if n == 0 {
            return Err(self.err(key, "must be positive, got 0".into()));
        }
        Ok(n)
    }
    pub fn f64(&self, key: &str, default: Option<f64>) -> Result<f64, ModelError> {
        match (self.get(key), default) {
            (Some(x), _) => x
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.err(key, format!("expected a number, got {x}"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ModelError::MissingKey {
                path: self.path.to_path_buf(),
                key: key.into(),
            }),
        }
    }
    pub fn bool(&self, key: &str, default: Option<bool>) -> Result<bool, ModelError> {
        match (self.get(key), default) {
            (Some(x), _) => x
                .as_bool()
                .ok_or_else(|| self.err(key, format!("expected true or false, got {x}"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ModelError::MissingKey {
                path: self.path.to_path_buf(),
                key: key.into(),
            }),
        }
    }
    pub fn str(&self, key: &str, default: Option<&str>) -> Result<String, ModelError> {
        match (self.get(key), default) {
            (Some(x), _) => x
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.err(key, format!("expected a string, got {x}"))),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(ModelError::MissingKey {
                path: self.path.to_path_buf(),
                key: key.into(),
            }),
        }
    }
    /// `id2label`'s size, else `num_labels`, else `None` (transformers `PretrainedConfig`).
    pub fn num_labels(&self) -> Result<Option<usize>, ModelError> {
        match self.get("id2label") {
            Some(Value::Object(m)) => Ok(Some(m.len())),
            Some(x) => Err(self.err("id2label", format!("expected an object, got {x}"))),
            None => self.opt_usize("num_labels"),
        }
    }
    /// `pad_token_id` as a token id, if set.
    pub fn pad_token_id(&self) -> Result<Option<u32>, ModelError> {
        match self.get("pad_token_id") {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.err("pad_token_id", format!("expected a token id, got {x}"))),
        }
    }
}

/// Reads a JSON object from `path`.
pub(crate) fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = lora_io::read_regular_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(path, format!("invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ModelError::format(path, "expected a JSON object"));
    }
    Ok(v)
}
