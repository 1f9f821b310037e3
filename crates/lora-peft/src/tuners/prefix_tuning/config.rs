//! `PrefixTuningConfig`: Hugging Face PEFT's `adapter_config.json` for prefix tuning.
//!
//! Field names and defaults follow PEFT 0.21 (`peft/tuners/prefix_tuning/config.py`, its base
//! `PromptLearningConfig` in `peft/config.py`); the geometry fields left `null` are filled in
//! from the model as PEFT's `_prepare_prompt_learning_config` (`peft/utils/other.py`) does
//! ([`PrefixTuningConfig::prepare`]). Fields this crate does not model are kept in
//! [`PrefixTuningConfig::extra`] and written back unchanged.
use crate::adapter_dir::read_config_text;
use crate::config_types::de_null_default;
use crate::PeftError;
use lora_models::AttentionShape;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

fn default_peft_type() -> String {
    "PREFIX_TUNING".into()
}

/// PEFT's `PrefixTuningConfig` as stored in `adapter_config.json`.
///
/// The prefix is `num_virtual_tokens` key/value pairs per attention layer, stored flat as
/// `prompt_embeddings` `[num_virtual_tokens, num_layers · 2 · token_dim]` with
/// `token_dim = num_attention_heads · head_dim` the width of one layer's keys (with
/// grouped-query attention the key/value heads, not the query heads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixTuningConfig {
    /// Always `"PREFIX_TUNING"`.
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
    /// PEFT writes `true` on save: the saved tensor is the prefix itself (with
    /// `prefix_projection`, the projection's output), so a loaded prefix has no encoder.
    #[serde(default, deserialize_with = "de_null_default")]
    pub inference_mode: bool,
    /// Virtual tokens `V`: prefix positions per layer. Required, ≥ 1.
    pub num_virtual_tokens: usize,
    /// Width of one layer's keys, `num_attention_heads · head_dim`; `None` until
    /// [`PrefixTuningConfig::prepare`].
    #[serde(default)]
    pub token_dim: Option<usize>,
    /// 1 for decoder-only models (2 is encoder-decoder, not supported).
    #[serde(default)]
    pub num_transformer_submodules: Option<usize>,
    /// Key/value heads of the prefix (the model's `num_key_value_heads`).
    #[serde(default)]
    pub num_attention_heads: Option<usize>,
    /// Attention layers (`num_hidden_layers` / `n_layer`).
    #[serde(default)]
    pub num_layers: Option<usize>,
    /// Not supported for prefix tuning here (`None` or empty only).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// `None`: random init; `"zero"`: the prefix (or the projection's last layer) starts at 0.
    #[serde(default)]
    pub init_weights: Option<String>,
    /// Hidden size of the projection MLP (PEFT default: `token_dim`).
    #[serde(default)]
    pub encoder_hidden_size: Option<usize>,
    /// Train the prefix through Embedding `[V, token_dim]` → Linear → tanh → Linear.
    #[serde(default, deserialize_with = "de_null_default")]
    pub prefix_projection: bool,
    /// Every other field of the file (`peft_version`, `auto_mapping`, ...), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The prefix's geometry, all fields resolved ([`PrefixTuningConfig::geometry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixGeometry {
    /// Virtual tokens `V`.
    pub num_virtual_tokens: usize,
    /// Attention layers.
    pub num_layers: usize,
    /// Key/value heads.
    pub num_heads: usize,
    /// Per-head size (`token_dim / num_attention_heads`).
    pub head_dim: usize,
    /// Projection hidden size, when `prefix_projection`.
    pub encoder_hidden_size: Option<usize>,
}

impl PrefixGeometry {
    /// `token_dim = num_heads · head_dim`.
    pub fn token_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    /// Columns of `prompt_embeddings`: `num_layers · 2 · token_dim`.
    pub fn flat_dim(&self) -> usize {
        self.num_layers * 2 * self.token_dim()
    }
}

impl PrefixTuningConfig {
    /// PEFT's defaults with `num_virtual_tokens` virtual tokens and `task_type = "CAUSAL_LM"`;
    /// the geometry is filled in by [`PrefixTuningConfig::prepare`].
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
            init_weights: None,
            encoder_hidden_size: None,
            prefix_projection: false,
            extra: Map::new(),
        }
    }

    /// Parses `adapter_config.json` text; `path` names it in errors. Does not validate.
    ///
    /// # Errors
    /// [`PeftError::Json`] naming `path` (a missing `num_virtual_tokens` included).
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
        serde_json::to_string_pretty(self).expect("PrefixTuningConfig serialises")
    }

    /// Writes `dir/adapter_config.json` atomically, creating `dir`; returns the path.
    ///
    /// # Errors
    /// [`PeftError::Io`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf, PeftError> {
        crate::adapter_dir::save_config_text(dir.as_ref(), &self.to_json_string())
    }

    /// Fills the geometry fields left `None` from the model, as PEFT's
    /// `_prepare_prompt_learning_config`: `num_layers` = the model's layers; `token_dim` =
    /// `head_dim · num_key_value_heads` and `num_attention_heads` = `num_key_value_heads` (PEFT
    /// applies this grouped-query rule to every model with `num_key_value_heads`; for the others
    /// it gives the same values, `hidden_size` and `num_heads`); `num_transformer_submodules` = 1;
    /// `encoder_hidden_size` = `token_dim`. Fields already set are kept (and checked by
    /// [`PrefixTuningConfig::check_model`]).
    pub fn prepare(&mut self, shape: AttentionShape) {
        self.num_layers.get_or_insert(shape.num_layers);
        self.token_dim
            .get_or_insert(shape.head_dim * shape.num_kv_heads);
        self.num_attention_heads.get_or_insert(shape.num_kv_heads);
        self.num_transformer_submodules.get_or_insert(1);
        if self.encoder_hidden_size.is_none() {
            self.encoder_hidden_size = self.token_dim;
        }
    }

    /// Checks PEFT's constraints and what this crate supports, and resolves the geometry.
    /// `path` (the config file, or `<config>`) names the source in errors.
    ///
    /// # Errors
    /// [`PeftError::Config`] for `num_virtual_tokens = 0`, a geometry field left `None`
    /// (call [`PrefixTuningConfig::prepare`]) or zero, a `token_dim` not divisible by
    /// `num_attention_heads`, `init_weights` other than `null`/`"zero"`, or `prefix_projection`
    /// without `encoder_hidden_size`; [`PeftError::Unsupported`] for
    /// `num_transformer_submodules = 2` (encoder-decoder) or a non-empty `modules_to_save`.
    pub fn geometry(&self) -> Result<PrefixGeometry, PeftError> {
        let cfg = |field: &str, value: String, msg: &str| PeftError::Config {
            field: field.into(),
            value,
            msg: msg.into(),
        };
        let need = |field: &str, v: Option<usize>| match v {
            Some(0) => Err(cfg(field, "0".into(), "must be at least 1")),
            Some(n) => Ok(n),
            None => Err(cfg(
                field,
                "null".into(),
                "must be set (PEFT fills it in from the model: PrefixTuningConfig::prepare)",
            )),
        };
        if self.num_virtual_tokens == 0 {
            return Err(cfg("num_virtual_tokens", "0".into(), "must be at least 1"));
        }
        let num_layers = need("num_layers", self.num_layers)?;
        let token_dim = need("token_dim", self.token_dim)?;
        let num_heads = need("num_attention_heads", self.num_attention_heads)?;
        if token_dim % num_heads != 0 {
            return Err(cfg(
                "token_dim",
                token_dim.to_string(),
                &format!("must be a multiple of num_attention_heads = {num_heads}"),
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
                msg: "with prefix tuning (a SEQ_CLS adapter's saved `score` head is not read yet)"
                    .into(),
            });
        }
        match self.init_weights.as_deref() {
            None | Some("zero") => {}
            Some(v) => {
                return Err(cfg(
                    "init_weights",
                    format!("{v:?}"),
                    "expected null or \"zero\"",
                ))
            }
        }
        let encoder_hidden_size = if self.prefix_projection {
            Some(need("encoder_hidden_size", self.encoder_hidden_size)?)
        } else {
            None
        };
        Ok(PrefixGeometry {
            num_virtual_tokens: self.num_virtual_tokens,
            num_layers,
            num_heads,
            head_dim: token_dim / num_heads,
            encoder_hidden_size,
        })
    }

    /// [`PrefixTuningConfig::geometry`], then checks that the prefix fits a model of attention
    /// geometry `shape`: `num_layers` = its layers, `num_attention_heads` = its key/value heads,
    /// `token_dim` = key/value heads · head size. `path` names the config in errors.
    ///
    /// # Errors
    /// As [`PrefixTuningConfig::geometry`]; [`PeftError::ModelMismatch`] naming `path`, the
    /// field, its value and the model's value.
    pub fn check_model(
        &self,
        shape: AttentionShape,
        path: &Path,
    ) -> Result<PrefixGeometry, PeftError> {
        let g = self.geometry()?;
        let mismatch = |field: &str, value: usize, msg: String| PeftError::ModelMismatch {
            path: path.to_path_buf(),
            field: field.into(),
            value: value.to_string(),
            msg,
        };
        if g.num_layers != shape.num_layers {
            return Err(mismatch(
                "num_layers",
                g.num_layers,
                format!("the model has {} attention layers", shape.num_layers),
            ));
        }
        if g.num_heads != shape.num_kv_heads {
            return Err(mismatch(
                "num_attention_heads",
                g.num_heads,
                format!(
                    "the model has {} key/value heads (a prefix has one per key/value head)",
                    shape.num_kv_heads
                ),
            ));
        }
        let want = shape.num_kv_heads * shape.head_dim;
        if g.token_dim() != want {
            return Err(mismatch(
                "token_dim",
                g.token_dim(),
                format!(
                    "the model's keys are {want} wide ({} key/value heads x head_dim {})",
                    shape.num_kv_heads, shape.head_dim
                ),
            ));
        }
        Ok(g)
    }
}
