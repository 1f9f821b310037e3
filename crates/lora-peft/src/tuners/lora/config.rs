//! `LoraConfig`: Hugging Face PEFT's `adapter_config.json` for LoRA.
//!
//! Field names, defaults and checks follow PEFT 0.21 (`peft/tuners/lora/config.py`,
//! `LoraConfig` and its `__post_init__`). Files written by PEFT load here: fields this crate does
//! not model are kept in [`LoraConfig::extra`] and written back unchanged; the ones that would
//! change the adapter's meaning (lora_bias, QALoRA, aLoRA, VeLoRA...) are refused by
//! [`LoraConfig::validate`] with [`PeftError::Unsupported`].
use super::InitLoraWeights;
use crate::adapter_dir::read_config_text;
use crate::config_types::{
    de_null_default, LayersToTransform, PatternMap, StringOrList, TargetModules,
};
use crate::matching::SEQ_CLS_HEAD_NAMES;
use crate::patterns::pattern_key_regex;
use crate::PeftError;
use lora_core::LoraLayerConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_bias() -> String {
    "none".into()
}

/// PEFT's `LoraConfig` as stored in `adapter_config.json`.
///
/// Defaults are PEFT's: `r = 8`, `lora_alpha = 8`, `lora_dropout = 0.0`, `bias = "none"`,
/// `init_lora_weights = true`, everything else off/empty. Source: PEFT 0.21
/// `peft/tuners/lora/config.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always `"LORA"`.
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    /// `"CAUSAL_LM"`, `"SEQ_CLS"`, ... (PEFT `TaskType`); `SEQ_CLS` adds `classifier` and
    /// `score` to `modules_to_save` (PEFT `PeftModelForSequenceClassification`).
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model's hub id or path (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision (informational).
    #[serde(default)]
    pub revision: Option<String>,
    /// Whether the adapter was saved for inference (informational here).
    #[serde(default, deserialize_with = "de_null_default")]
    pub inference_mode: bool,
    /// Rank of the update. Must be ≥ 1.
    #[serde(default = "default_r")]
    pub r: usize,
    /// `lora_alpha`; scaling is `lora_alpha / r` (or `/ sqrt(r)` with `use_rslora`).
    #[serde(
        default = "default_alpha",
        serialize_with = "crate::config_types::ser_number"
    )]
    pub lora_alpha: f64,
    /// Dropout probability on the LoRA path, in `[0, 1)`.
    #[serde(default, deserialize_with = "de_null_default")]
    pub lora_dropout: f64,
    /// Which linear layers get adapters (see [`TargetModules`]). `None`: PEFT's default for the
    /// architecture (`["c_attn"]` for GPT-2, `["q_proj", "v_proj"]` for Llama-family models).
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Layers excluded from `target_modules` (same list/regex rules).
    #[serde(default)]
    pub exclude_modules: Option<TargetModules>,
    /// `"none"` only (`"all"` and `"lora_only"` are refused as not supported).
    #[serde(default = "default_bias")]
    pub bias: String,
    /// rsLoRA scaling `lora_alpha / sqrt(r)`.
    #[serde(default, deserialize_with = "de_null_default")]
    pub use_rslora: bool,
    /// Initialisation (see [`InitLoraWeights`]).
    #[serde(default, deserialize_with = "de_null_default")]
    pub init_lora_weights: InitLoraWeights,
    /// `true` when the target layers store weights `[d_in, d_out]` (GPT-2 `Conv1D`). Layers in
    /// this workspace record their own layout; when they differ from this flag, PEFT warns and
    /// uses the layer's layout, and so does this crate.
    #[serde(default, deserialize_with = "de_null_default")]
    pub fan_in_fan_out: bool,
    /// Only layers with these indices get adapters (list targets only).
    #[serde(default)]
    pub layers_to_transform: Option<LayersToTransform>,
    /// Name(s) of the layer container used to find the layer index (`"h"`, `"layers"`...).
    #[serde(default)]
    pub layers_pattern: Option<StringOrList>,
    /// Layers trained in full and saved whole (e.g. a classifier head `score`). A module name
    /// matches when it ends with an entry (PEFT `_set_trainable`).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Per-module rank overrides (`{pattern: r}`), first match in order.
    #[serde(default)]
    pub rank_pattern: PatternMap<usize>,
    /// Per-module `lora_alpha` overrides (`{pattern: alpha}`), first match in order.
    #[serde(default)]
    pub alpha_pattern: PatternMap<f64>,
    /// DoRA (Liu et al. 2024): each adapter gets a trainable magnitude per output unit
    /// (`lora_magnitude_vector`); see [`super::dora`] and `lora_core::DoraAdapter`.
    #[serde(default, deserialize_with = "de_null_default")]
    pub use_dora: bool,
    /// A bias on `lora_B`; `true` is refused.
    #[serde(default, deserialize_with = "de_null_default")]
    pub lora_bias: bool,
    /// Every other field of the file (PEFT writes ~20 more, e.g. `peft_version`,
    /// `megatron_core`, `loftq_config`), kept and written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            peft_type: default_peft_type(),
            task_type: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
            r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            target_modules: None,
            exclude_modules: None,
            bias: default_bias(),
            use_rslora: false,
            init_lora_weights: InitLoraWeights::default(),
            fan_in_fan_out: false,
            layers_to_transform: None,
            layers_pattern: None,
            modules_to_save: None,
            rank_pattern: PatternMap::default(),
            alpha_pattern: PatternMap::default(),
            use_dora: false,
            lora_bias: false,
            extra: Map::new(),
        }
    }
}

impl LoraConfig {
    /// A config with PEFT's defaults and the given rank, alpha and list of target names.
    pub fn new(r: usize, lora_alpha: f64, target_modules: &[&str]) -> Self {
        Self {
            r,
            lora_alpha,
            target_modules: Some(TargetModules::from(target_modules)),
            ..Self::default()
        }
    }

    /// Parses `adapter_config.json` text (PEFT's format; unknown fields are kept in `extra`).
    /// Does not [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`PeftError::Json`] naming `path` (used only for the message).
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, PeftError> {
        crate::adapter_dir::parse_config(text, path)
    }

    /// Reads `adapter_config.json`. `path` may be the file or the adapter directory. Does not
    /// [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`PeftError::Io`] if unreadable, [`PeftError::Json`] if not a valid config.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PeftError> {
        let (path, text) = read_config_text(path.as_ref())?;
        Self::from_json_str(&text, &path)
    }

    /// The config as pretty JSON (PEFT field names; `extra` fields included).
    pub fn to_json_string(&self) -> String {
        // Serialising plain data to a String cannot fail (all map keys are strings).
        serde_json::to_string_pretty(self).expect("LoraConfig serialises")
    }

    /// Writes `dir/adapter_config.json` atomically (temp file + rename), creating `dir`.
    /// Returns the file's path.
    ///
    /// # Errors
    /// [`PeftError::Io`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf, PeftError> {
        crate::adapter_dir::save_config_text(dir.as_ref(), &self.to_json_string())
    }

    /// Whether this is a sequence-classification adapter (`task_type = "SEQ_CLS"`).
    pub fn is_seq_cls(&self) -> bool {
        self.task_type.as_deref() == Some("SEQ_CLS")
    }

    /// `modules_to_save` as PEFT uses it: the config's entries, plus `classifier` and `score`
    /// for `SEQ_CLS` (PEFT `PeftModelForSequenceClassification.__init__`).
    pub fn effective_modules_to_save(&self) -> Vec<String> {
        let mut v = self.modules_to_save.clone().unwrap_or_default();
        if self.is_seq_cls() {
            for d in SEQ_CLS_HEAD_NAMES {
                if !v.iter().any(|x| x == d) {
                    v.push((*d).to_string());
                }
            }
        }
        v
    }

    /// The per-layer hyper-parameters for module `name`: rank and alpha from the first matching
    /// `rank_pattern` / `alpha_pattern` key (regex `(.*\.)?(key)$`, PEFT `get_pattern_key`),
    /// else `r` / `lora_alpha`.
    ///
    /// # Errors
    /// [`PeftError::Regex`] for a bad pattern key, [`PeftError::Unsupported`]/
    /// [`PeftError::Config`] for `init_lora_weights`.
    pub fn layer_config(&self, name: &str) -> Result<LoraLayerConfig, PeftError> {
        let mut r = self.r;
        for (k, v) in self.rank_pattern.iter() {
            if pattern_key_regex("rank_pattern", k)?.is_match(name) {
                r = *v;
                break;
            }
        }
        let mut alpha = self.lora_alpha;
        for (k, v) in self.alpha_pattern.iter() {
            if pattern_key_regex("alpha_pattern", k)?.is_match(name) {
                alpha = *v;
                break;
            }
        }
        Ok(LoraLayerConfig {
            r,
            lora_alpha: alpha,
            lora_dropout: self.lora_dropout,
            use_rslora: self.use_rslora,
            init: self.init_lora_weights.to_lora_init()?,
        })
    }
}
