//! The method seam: one module per adaptation method, `tuners/<method>/`, shaped like PEFT's
//! `peft/tuners/<method>/{config,layer,model}.py`, and the routing from an adapter directory's
//! `peft_type` to its method (PEFT `peft/mapping.py`: `PEFT_TYPE_TO_CONFIG_MAPPING`,
//! `PEFT_TYPE_TO_TUNER_MAPPING`).
//!
//! Each method module holds its `config` (the `adapter_config.json` struct and its validation),
//! `model` (injection into a model and removal: PEFT's `<Method>Model`), `keys` (its tensor
//! names in `adapter_model.safetensors`) and `io` (save/load on top of the shared
//! [`crate::adapter_dir`]), and implements [`Tuner`]. Target matching
//! ([`crate::matching`], PEFT `tuners_utils.py`) is shared through
//! [`crate::matching::TargetConfig`].
//!
//! Adding a method (e.g. IA3): a `tuners/ia3/` module implementing [`Tuner`], a [`PeftType`]
//! variant, an [`AdapterConfig`] variant, and one arm in each `match` below.
//!
//! Prompt-learning methods ([`prefix_tuning`], [`prompt_tuning`]) keep their state beside the
//! model, not in its layers: they have no [`Tuner`], [`crate::PeftModel`] wraps the model with
//! them, and the per-layer entry points here ([`inject`], [`save`], [`load`]) refuse them.
use crate::adapter_dir::read_config_text;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::NamedLinears;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod bottleneck;
pub mod ia3;
pub mod lora;
pub mod prefix_tuning;
pub mod prompt_tuning;

use ia3::{IA3Config, Ia3};
use lora::{Lora, LoraConfig};
use prefix_tuning::PrefixTuningConfig;
use prompt_tuning::PromptTuningConfig;

/// Every `peft_type` PEFT 0.21 defines (`peft/utils/peft_types.py` `PeftType`); the ones
/// without a [`PeftType`] variant are refused as "not implemented yet" rather than "unknown".
const PEFT_TYPE_NAMES: &[&str] = &[
    "PROMPT_TUNING",
    "MULTITASK_PROMPT_TUNING",
    "P_TUNING",
    "PREFIX_TUNING",
    "LORA",
    "ADALORA",
    "BOFT",
    "ADAPTION_PROMPT",
    "IA3",
    "LOHA",
    "LOKR",
    "OFT",
    "POLY",
    "LN_TUNING",
    "VERA",
    "FOURIERFT",
    "XLORA",
    "HRA",
    "VBLORA",
    "CPT",
    "BONE",
    "MISS",
    "RANDLORA",
    "ROAD",
    "TRAINABLE_TOKENS",
    "SHIRA",
    "C3A",
    "WAVEFT",
];

/// The methods this crate implements, named by PEFT's `peft_type` strings
/// (`peft/utils/peft_types.py`). Each method module adds its variant with its PEFT name, and
/// [`PeftType::ALL`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeftType {
    /// LoRA (Hu et al. 2021), `tuners/lora`.
    Lora,
    /// (IA)³ (Liu et al. 2022), `tuners/ia3`.
    Ia3,
    /// Prefix tuning (Li & Liang 2021), `tuners/prefix_tuning`; wraps the model
    /// ([`crate::PeftModel`]).
    PrefixTuning,
    /// Prompt tuning (Lester et al. 2021), `tuners/prompt_tuning`; wraps the model
    /// ([`crate::PeftModel`]).
    PromptTuning,
}

impl PeftType {
    /// Every implemented method, in the order error messages list them.
    pub const ALL: &'static [PeftType] = &[
        PeftType::Lora,
        PeftType::Ia3,
        PeftType::PrefixTuning,
        PeftType::PromptTuning,
    ];

    /// PEFT's `peft_type` string (`"LORA"`, `"IA3"`).
    pub fn as_str(self) -> &'static str {
        match self {
            PeftType::Lora => "LORA",
            PeftType::Ia3 => "IA3",
            PeftType::PrefixTuning => "PREFIX_TUNING",
            PeftType::PromptTuning => "PROMPT_TUNING",
        }
    }

    /// The method of PEFT's `peft_type` string `name` (exact, upper case as PEFT writes it);
    /// `None` when not implemented here.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == name)
    }

    /// The accepted `peft_type` values as JSON strings joined by `, ` (for error messages).
    pub fn accepted() -> String {
        Self::ALL
            .iter()
            .map(|t| format!("{:?}", t.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for PeftType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a method module provides (PEFT's `BaseTuner` subclass plus its config class and the
/// save/load of `peft/utils/save_and_load.py` for its keys). Implemented by a unit struct per
/// method ([`lora::Lora`]); the [`AdapterConfig`] functions route to it.
pub trait Tuner {
    /// The method's `peft_type`.
    const PEFT_TYPE: PeftType;
    /// The parameter-name prefix of the method's tensors (PEFT `<Method>Model.prefix`,
    /// `"lora_"`).
    const PREFIX: &'static str;
    /// The method's `adapter_config.json`.
    type Config;

    /// Attaches fresh adapters to the layers `config` targets (PEFT `inject_adapter`). Returns
    /// the adapted layer names in model order.
    ///
    /// # Errors
    /// The method's config and matching errors.
    fn inject<B: Backend, M: NamedLinears<B>>(
        model: &mut M,
        config: &Self::Config,
        device: &B::Device,
    ) -> Result<Vec<String>, PeftError>;

    /// The tensor keys the adapter file of `config` on `model` holds (PEFT
    /// `get_peft_model_state_dict`, adapter name removed).
    ///
    /// # Errors
    /// The method's config and matching errors.
    fn state_dict_keys<B: Backend, M: NamedLinears<B>>(
        model: &M,
        config: &Self::Config,
    ) -> Result<Vec<String>, PeftError>;

    /// Writes `dir/adapter_config.json` and `dir/adapter_model.safetensors`.
    ///
    /// # Errors
    /// State, matching and I/O errors.
    fn save<B: Backend, M: NamedLinears<B>>(
        model: &M,
        config: &Self::Config,
        dir: &Path,
    ) -> Result<(), PeftError>;

    /// Reads an adapter directory of this method into `model`; returns its config.
    ///
    /// # Errors
    /// Config, matching, file and key errors.
    fn load<B: Backend, M: NamedLinears<B>>(
        model: &mut M,
        dir: &Path,
        device: &B::Device,
    ) -> Result<Self::Config, PeftError>;
}

/// An `adapter_config.json` of any implemented method (PEFT `PeftConfig.from_pretrained` through
/// `PEFT_TYPE_TO_CONFIG_MAPPING`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AdapterConfig {
    /// `peft_type = "LORA"`.
    Lora(LoraConfig),
    /// `peft_type = "IA3"`.
    Ia3(IA3Config),
    /// `peft_type = "PREFIX_TUNING"`.
    PrefixTuning(PrefixTuningConfig),
    /// `peft_type = "PROMPT_TUNING"`.
    PromptTuning(PromptTuningConfig),
}

impl AdapterConfig {
    /// The method of this config.
    pub fn peft_type(&self) -> PeftType {
        match self {
            AdapterConfig::Lora(_) => PeftType::Lora,
            AdapterConfig::Ia3(_) => PeftType::Ia3,
            AdapterConfig::PrefixTuning(_) => PeftType::PrefixTuning,
            AdapterConfig::PromptTuning(_) => PeftType::PromptTuning,
        }
    }

    /// Reads `adapter_config.json` (`path`: the file or the adapter directory) and parses it as
    /// the config of the method its `peft_type` names. A file without `peft_type` is read as
    /// LoRA, as [`LoraConfig::from_file`] does. Does not validate.
    ///
    /// # Errors
    /// [`PeftError::Io`], [`PeftError::Json`] naming the file; [`PeftError::UnsupportedPeftType`]
    /// naming the file, the key `peft_type`, its value and the accepted values.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PeftError> {
        let (path, text) = read_config_text(path.as_ref())?;
        Self::from_json_str(&text, &path)
    }

    /// Parses `adapter_config.json` text (`path` names it in errors) as
    /// [`AdapterConfig::from_file`] does. Does not validate.
    ///
    /// # Errors
    /// [`PeftError::Json`], [`PeftError::UnsupportedPeftType`] as [`AdapterConfig::from_file`].
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, PeftError> {
        match peft_type_of(text, path)? {
            PeftType::Lora => LoraConfig::from_json_str(text, path).map(AdapterConfig::Lora),
            PeftType::Ia3 => IA3Config::from_json_str(text, path).map(AdapterConfig::Ia3),
            PeftType::PrefixTuning => {
                PrefixTuningConfig::from_json_str(text, path).map(AdapterConfig::PrefixTuning)
            }
            PeftType::PromptTuning => {
                PromptTuningConfig::from_json_str(text, path).map(AdapterConfig::PromptTuning)
            }
        }
    }

    /// Writes `dir/adapter_config.json` atomically, creating `dir`; returns the file's path.
    ///
    /// # Errors
    /// [`PeftError::Io`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf, PeftError> {
        match self {
            AdapterConfig::Lora(c) => c.save(dir),
            AdapterConfig::Ia3(c) => c.save(dir),
            AdapterConfig::PrefixTuning(c) => c.save(dir),
            AdapterConfig::PromptTuning(c) => c.save(dir),
        }
    }
}

/// The method named by the `peft_type` of config `text` (read from `path`, named in errors);
/// a config without the key is LoRA's.
///
/// # Errors
/// [`PeftError::Json`] when `text` is not a JSON object; [`PeftError::UnsupportedPeftType`] when
/// `peft_type` is not a string or names no implemented method.
pub fn peft_type_of(text: &str, path: &Path) -> Result<PeftType, PeftError> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|source| PeftError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let refuse = |value: String, msg: &str| PeftError::UnsupportedPeftType {
        path: path.to_path_buf(),
        value,
        msg: msg.into(),
        accepted: PeftType::accepted(),
    };
    match v.get("peft_type") {
        None if bottleneck::is_adapterhub_config(&v) => Err(refuse(
            "null".into(),
            "an AdapterHub adapter, not a PEFT one: load it with lora_peft::load_bottleneck",
        )),
        None => Ok(PeftType::Lora),
        Some(serde_json::Value::String(s)) => PeftType::from_name(s).ok_or_else(|| {
            if PEFT_TYPE_NAMES.contains(&s.as_str()) {
                refuse(
                    format!("{s:?}"),
                    "a PEFT method lora-peft does not implement yet",
                )
            } else {
                refuse(format!("{s:?}"), "not a PEFT method name")
            }
        }),
        Some(other) => Err(refuse(other.to_string(), "expected a string")),
    }
}

/// Attaches fresh adapters of `config`'s method to `model` (PEFT `get_peft_model`). Returns the
/// adapted layer names in model order.
///
/// # Errors
/// As the method's [`Tuner::inject`] (for LoRA, [`crate::apply_lora`]).
pub fn inject<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    config: &AdapterConfig,
    device: &B::Device,
) -> Result<Vec<String>, PeftError> {
    match config {
        AdapterConfig::Lora(c) => Lora::inject(model, c, device),
        AdapterConfig::Ia3(c) => Ia3::inject(model, c, device),
        AdapterConfig::PrefixTuning(_) | AdapterConfig::PromptTuning(_) => {
            Err(wraps_the_model(config.peft_type()))
        }
    }
}

/// Saves `model`'s adapters of `config`'s method as a PEFT adapter directory.
///
/// # Errors
/// As the method's [`Tuner::save`] (for LoRA, [`crate::save_adapter`]).
pub fn save<B: Backend, M: NamedLinears<B>>(
    model: &M,
    config: &AdapterConfig,
    dir: &Path,
) -> Result<(), PeftError> {
    match config {
        AdapterConfig::Lora(c) => Lora::save(model, c, dir),
        AdapterConfig::Ia3(c) => Ia3::save(model, c, dir),
        AdapterConfig::PrefixTuning(_) | AdapterConfig::PromptTuning(_) => {
            Err(wraps_the_model(config.peft_type()))
        }
    }
}

/// Loads the PEFT adapter directory `dir` into `model`, whatever its method: reads
/// `dir/adapter_config.json`, routes on its `peft_type` and runs the method's loader (PEFT
/// `PeftModel.from_pretrained`). Returns the config.
///
/// # Errors
/// [`PeftError::UnsupportedPeftType`] (naming the file, `peft_type`, the value and the accepted
/// values) before anything else is read; then as the method's [`Tuner::load`] (for LoRA,
/// [`crate::load_adapter`]).
pub fn load<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    dir: &Path,
    device: &B::Device,
) -> Result<AdapterConfig, PeftError> {
    let (path, text) = read_config_text(&dir.join(crate::adapter_dir::CONFIG_NAME))?;
    match peft_type_of(&text, &path)? {
        PeftType::Lora => Lora::load(model, dir, device).map(AdapterConfig::Lora),
        PeftType::Ia3 => Ia3::load(model, dir, device).map(AdapterConfig::Ia3),
        t @ (PeftType::PrefixTuning | PeftType::PromptTuning) => Err(wraps_the_model(t)),
    }
}

/// The refusal of a per-layer entry point for a prompt-learning method, whose state lives
/// beside the model, not in its layers.
fn wraps_the_model(t: PeftType) -> PeftError {
    PeftError::State(format!(
        "peft_type {t} is a prompt-learning method: it wraps the model instead of adapting its \
         linear layers; use lora_peft::PeftModel (get_peft_model / from_pretrained / \
         save_pretrained)"
    ))
}
