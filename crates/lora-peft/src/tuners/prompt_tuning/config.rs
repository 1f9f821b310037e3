//! `PromptTuningConfig`: Hugging Face PEFT's `adapter_config.json` for prompt tuning.
//!
//! Field names and defaults follow PEFT 0.21 (`peft/tuners/prompt_tuning/config.py`, its base
//! `PromptLearningConfig` in `peft/config.py`); the geometry fields left `null` are filled in
//! from the model as PEFT's `_prepare_prompt_learning_config` (`peft/utils/other.py`) does
//! ([`PromptTuningConfig::prepare`]). Fields this crate does not model are kept in
//! [`PromptTuningConfig::extra`].
use crate::adapter_dir::read_config_text;
use crate::config_types::de_null_default;
use crate::PeftError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

fn default_peft_type() -> String {
    "PROMPT_TUNING".into()
}

/// PEFT's `PromptTuningInit`: how a fresh prompt is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PromptTuningInit {
    /// Rows of the word embedding of the tokenized `prompt_tuning_init_text`, repeated or cut
    /// to `num_virtual_tokens` (the tokenizing is the caller's:
    /// [`crate::PeftModel::prompt_tuning_from_text`] takes the ids).
    #[serde(rename = "TEXT")]
    Text,
    /// Rows of the word embedding of token ids drawn uniformly from the vocabulary.
    #[serde(rename = "SAMPLE_VOCAB")]
    SampleVocab,
    /// N(0, 1) (`torch.nn.Embedding`'s init).
    #[default]
    #[serde(rename = "RANDOM")]
    Random,
}

/// PEFT's `PromptTuningConfig` as stored in `adapter_config.json`.
///
/// The prompt is `num_virtual_tokens` trained input embeddings put before the real tokens,
/// stored as `prompt_embeddings` `[num_virtual_tokens, token_dim]` (`token_dim` = the model's
/// hidden size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTuningConfig {
    /// Always `"PROMPT_TUNING"`.
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    /// `"CAUSAL_LM"`, `"SEQ_CLS"`, ... (PEFT `TaskType`).
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model's hub id or path (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision (informational).
    #[serde(default)]
    pub revision: Option<String>,
    /// PEFT writes `true` on save (informational here).
    #[serde(default, deserialize_with = "de_null_default")]
    pub inference_mode: bool,
    /// Virtual tokens `V`. Required, ≥ 1.
    pub num_virtual_tokens: usize,
    /// The model's hidden size; `None` until [`PromptTuningConfig::prepare`].
    #[serde(default)]
    pub token_dim: Option<usize>,
    /// 1 for decoder-only models (2 is encoder-decoder, not supported).
    #[serde(default)]
    pub num_transformer_submodules: Option<usize>,
    /// The model's attention heads (informational for prompt tuning).
    #[serde(default)]
    pub num_attention_heads: Option<usize>,
    /// The model's layers (informational for prompt tuning).
    #[serde(default)]
    pub num_layers: Option<usize>,
    /// Not supported for prompt tuning here (`None` or empty only).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// The initialisation of a fresh prompt (default `RANDOM`).
    #[serde(default, deserialize_with = "de_null_default")]
    pub prompt_tuning_init: PromptTuningInit,
    /// The text of `TEXT` init (required with it, as in PEFT).
    #[serde(default)]
    pub prompt_tuning_init_text: Option<String>,
    /// The tokenizer of `TEXT` init (required with it, as in PEFT; informational here).
    #[serde(default)]
    pub tokenizer_name_or_path: Option<String>,
    /// Tokenizer arguments of `TEXT` init (informational here).
    #[serde(default)]
    pub tokenizer_kwargs: Option<Map<String, Value>>,
    /// Every other field of the file (`peft_version`, `auto_mapping`, ...), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PromptTuningConfig {
    /// PEFT's defaults (`RANDOM` init) with `num_virtual_tokens` virtual tokens and
    /// `task_type = "CAUSAL_LM"`; the geometry is filled in by [`PromptTuningConfig::prepare`].
    pub fn new(num_virtual_tokens: usize) -> Self {
        Self {
            peft_type: default_peft_type(),
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
            num_virtual_tokens,
            token_dim: None,
            num_transformer_submodules: None,
            num_attention_heads: None,
            num_layers: None,
            modules_to_save: None,
            prompt_tuning_init: PromptTuningInit::Random,
            prompt_tuning_init_text: None,
            tokenizer_name_or_path: None,
            tokenizer_kwargs: None,
            extra: Map::new(),
        }
    }

    /// Parses `adapter_config.json` text; `path` names it in errors. Does not validate.
    ///
    /// # Errors
    /// [`PeftError::Json`] naming `path` (an unknown `prompt_tuning_init` included).
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, PeftError> {
        crate::adapter_dir::parse_config(text, path)
    }

    /// Reads `adapter_config.json` (the file or its directory). Does not validate.
    ///
    /// # Errors
    /// [`PeftError::Io`], [`PeftError::Json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PeftError> {
        let (path, text) = read_config_text(path.as_ref())?;
        Self::from_json_str(&text, &path)
    }

    /// The config as pretty JSON (PEFT's field names, `extra` included).
    pub fn to_json_string(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string_pretty(self).expect("PromptTuningConfig serialises")
    }

    /// Writes `dir/adapter_config.json` atomically, creating `dir`; returns the path.
    ///
    /// # Errors
    /// [`PeftError::Io`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf, PeftError> {
        crate::adapter_dir::save_config_text(dir.as_ref(), &self.to_json_string())
    }

    /// Fills the fields left `None` from the model, as PEFT's `_prepare_prompt_learning_config`:
    /// `token_dim` = `hidden_size`, `num_attention_heads` = the query heads, `num_layers`,
    /// `num_transformer_submodules` = 1.
    pub fn prepare(&mut self, hidden_size: usize, num_layers: usize, num_heads: usize) {
        self.token_dim.get_or_insert(hidden_size);
        self.num_layers.get_or_insert(num_layers);
        self.num_attention_heads.get_or_insert(num_heads);
        self.num_transformer_submodules.get_or_insert(1);
    }

    /// Checks PEFT's constraints and what this crate supports; returns `(V, token_dim)`.
    ///
    /// # Errors
    /// [`PeftError::Config`] for `num_virtual_tokens = 0`, `token_dim` `None` (call
    /// [`PromptTuningConfig::prepare`]) or 0, `TEXT` init without `prompt_tuning_init_text` or
    /// `tokenizer_name_or_path`, `tokenizer_kwargs` without `TEXT` init (PEFT's
    /// `__post_init__`); [`PeftError::Unsupported`] for `num_transformer_submodules = 2` or a
    /// non-empty `modules_to_save`.
    pub fn dims(&self) -> Result<(usize, usize), PeftError> {
        let cfg = |field: &str, value: String, msg: &str| PeftError::Config {
            field: field.into(),
            value,
            msg: msg.into(),
        };
        if self.num_virtual_tokens == 0 {
            return Err(cfg("num_virtual_tokens", "0".into(), "must be at least 1"));
        }
        let token_dim =
            match self.token_dim {
                Some(0) => return Err(cfg("token_dim", "0".into(), "must be at least 1")),
                Some(d) => d,
                None => return Err(cfg(
                    "token_dim",
                    "null".into(),
                    "must be set (PEFT fills it in from the model: PromptTuningConfig::prepare)",
                )),
            };
        let text = self.prompt_tuning_init == PromptTuningInit::Text;
        if text && self.prompt_tuning_init_text.is_none() {
            return Err(cfg(
                "prompt_tuning_init_text",
                "null".into(),
                "required when prompt_tuning_init = \"TEXT\"",
            ));
        }
        if text
            && self
                .tokenizer_name_or_path
                .as_deref()
                .unwrap_or("")
                .is_empty()
        {
            return Err(cfg(
                "tokenizer_name_or_path",
                "null".into(),
                "required when prompt_tuning_init = \"TEXT\"",
            ));
        }
        if !text
            && self
                .tokenizer_kwargs
                .as_ref()
                .is_some_and(|m| !m.is_empty())
        {
            return Err(cfg(
                "tokenizer_kwargs",
                serde_json::to_string(&self.tokenizer_kwargs).unwrap_or_default(),
                "only valid with prompt_tuning_init = \"TEXT\"",
            ));
        }
        match self.num_transformer_submodules {
            None | Some(1) => {}
            Some(n) => {
                return Err(PeftError::Unsupported {
                    field: "num_transformer_submodules".into(),
                    value: n.to_string(),
                    msg: "only decoder-only models (1) are supported".into(),
                })
            }
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(PeftError::Unsupported {
                field: "modules_to_save".into(),
                value: serde_json::to_string(&self.modules_to_save).unwrap_or_default(),
                msg: "with prompt tuning (a SEQ_CLS adapter's saved `score` head is not read yet)"
                    .into(),
            });
        }
        Ok((self.num_virtual_tokens, token_dim))
    }

    /// [`PromptTuningConfig::dims`], then checks `token_dim` against the model's
    /// `hidden_size`; `path` names the config in errors. Returns `(V, token_dim)`.
    ///
    /// # Errors
    /// As [`PromptTuningConfig::dims`]; [`PeftError::ModelMismatch`] naming `path`,
    /// `token_dim`, its value and the model's hidden size.
    pub fn check_model(
        &self,
        hidden_size: usize,
        path: &Path,
    ) -> Result<(usize, usize), PeftError> {
        let (v, d) = self.dims()?;
        if d != hidden_size {
            return Err(PeftError::ModelMismatch {
                path: path.to_path_buf(),
                field: "token_dim".into(),
                value: d.to_string(),
                msg: format!("the model's hidden size is {hidden_size}"),
            });
        }
        Ok((v, d))
    }
}
