//! `IA3Config`: Hugging Face PEFT's `adapter_config.json` for (IA)³, and its checks.
//!
//! Field names, defaults and checks follow PEFT 0.21 (`peft/tuners/ia3/config.py`, `IA3Config`
//! and its `__post_init__`). Files written by PEFT load here: fields this crate does not model
//! (`peft_version`, `auto_mapping`, ...) are kept in [`IA3Config::extra`] and written back
//! unchanged.
use crate::adapter_dir::read_config_text;
use crate::config_types::{de_null_default, TargetModules};
use crate::matching::SEQ_CLS_HEAD_NAMES;
use crate::patterns::{fullmatch_regex, modules_to_save_regex};
use crate::PeftError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

fn default_peft_type() -> String {
    "IA3".into()
}
fn default_true() -> bool {
    true
}

/// PEFT's `IA3Config` as stored in `adapter_config.json`.
///
/// Defaults are PEFT's: `target_modules` and `feedforward_modules` `null` (then PEFT's
/// defaults for the architecture, see [`IA3Config::prepare`]), `fan_in_fan_out = false`,
/// `init_ia3_weights = true`, everything else off/empty. Source: PEFT 0.21
/// `peft/tuners/ia3/config.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IA3Config {
    /// Always `"IA3"`.
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
    /// Which linear layers get an `ia3_l` vector (list: exact name or `"." + suffix`; string:
    /// full-match regex or `"all-linear"`). `None`: PEFT's default for the architecture
    /// (`TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING`: GPT-2 `["c_attn", "mlp.c_proj"]`,
    /// Llama `["k_proj", "v_proj", "down_proj"]`).
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Layers excluded from `target_modules` (same list/regex rules).
    #[serde(default)]
    pub exclude_modules: Option<TargetModules>,
    /// The targeted layers whose **input** `ia3_l` scales (the paper's feed-forward vectors);
    /// the others scale their output. List: a layer is feed-forward when its name ends with an
    /// entry (plain suffix, PEFT `key.endswith(target_key)`), and the list must be a subset of a
    /// list `target_modules`; string: full-match regex. `None`: PEFT's default for the
    /// architecture (`TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING`: GPT-2
    /// `["mlp.c_proj"]`, Llama `["down_proj"]`).
    #[serde(default)]
    pub feedforward_modules: Option<TargetModules>,
    /// `true` when the target layers store weights `[d_in, d_out]` (GPT-2 `Conv1D`). PEFT sets
    /// it to the layer's real layout (with a warning), and so does this crate: the math does not
    /// depend on it, and the stored `ia3_l` shapes (`[d_out, 1]` / `[1, d_in]`) neither.
    #[serde(default, deserialize_with = "de_null_default")]
    pub fan_in_fan_out: bool,
    /// Layers trained in full and saved whole (e.g. a classifier head `score`). A module name
    /// matches when it ends with an entry (PEFT `_set_trainable`).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// `true`: `ia3_l` starts at ones (the identity); `false`: N(0, 1) draws (PEFT
    /// `torch.randn`; discouraged, for tests).
    #[serde(default = "default_true", deserialize_with = "de_true_if_null")]
    pub init_ia3_weights: bool,
    /// Every other field of the file (`peft_version`, `auto_mapping`, ...), kept and written
    /// back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Reads `null` as PEFT's default `true`.
fn de_true_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

impl Default for IA3Config {
    fn default() -> Self {
        Self {
            peft_type: default_peft_type(),
            task_type: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
            target_modules: None,
            exclude_modules: None,
            feedforward_modules: None,
            fan_in_fan_out: false,
            modules_to_save: None,
            init_ia3_weights: true,
            extra: Map::new(),
        }
    }
}

impl IA3Config {
    /// A config with PEFT's defaults and the given lists of target and feed-forward names.
    pub fn new(target_modules: &[&str], feedforward_modules: &[&str]) -> Self {
        Self {
            target_modules: Some(TargetModules::from(target_modules)),
            feedforward_modules: Some(TargetModules::from(feedforward_modules)),
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
        serde_json::to_string_pretty(self).expect("IA3Config serialises")
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

    /// Checks the config as PEFT's `IA3Config.__post_init__` does, plus the regexes.
    ///
    /// # Errors
    /// [`PeftError::Config`] naming the field and value: `peft_type` not `"IA3"`;
    /// `feedforward_modules` a list that is not a subset of a list `target_modules` (PEFT:
    /// "`feedforward_modules` should be a subset of `target_modules`"). [`PeftError::Regex`]: a
    /// pattern that does not compile.
    pub fn validate(&self) -> Result<(), PeftError> {
        self.validate_fields()?;
        if let (Some(TargetModules::List(ff)), Some(TargetModules::List(t))) =
            (&self.feedforward_modules, &self.target_modules)
        {
            let outside: Vec<&String> = ff.iter().filter(|f| !t.contains(f)).collect();
            if !outside.is_empty() {
                return Err(PeftError::Config {
                    field: "feedforward_modules".into(),
                    value: serde_json::to_string(ff).unwrap_or_default(),
                    msg: format!(
                        "must be a subset of target_modules {}: {outside:?} not in it",
                        serde_json::to_string(t).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every check of [`IA3Config::validate`] but the subset rule, which PEFT applies to the
    /// config as given, not to the one its defaults complete.
    pub(crate) fn validate_fields(&self) -> Result<(), PeftError> {
        if self.peft_type != "IA3" {
            return Err(PeftError::Config {
                field: "peft_type".into(),
                value: format!("{:?}", self.peft_type),
                msg: "expected \"IA3\" for an (IA)³ adapter".into(),
            });
        }
        for (field, t) in [
            ("target_modules", &self.target_modules),
            ("exclude_modules", &self.exclude_modules),
            ("feedforward_modules", &self.feedforward_modules),
        ] {
            if let Some(TargetModules::Pattern(p)) = t {
                if !(field == "target_modules" && t.as_ref().is_some_and(|t| t.is_all_linear())) {
                    fullmatch_regex(field, p)?;
                }
            }
        }
        for m in self.modules_to_save.iter().flatten() {
            modules_to_save_regex(m)?;
        }
        Ok(())
    }
}
