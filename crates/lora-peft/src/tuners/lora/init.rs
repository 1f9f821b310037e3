//! `init_lora_weights`: how a fresh LoRA adapter is initialised (PEFT
//! `peft/tuners/lora/config.py` `init_lora_weights`, `peft/tuners/lora/layer.py`
//! `reset_lora_parameters`).
use crate::PeftError;
use lora_core::LoraInit;
use serde::{Deserialize, Serialize};

/// PEFT's `init_lora_weights`: `true` (default), `false`, or a method name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLoraWeights {
    /// `true`: A kaiming-uniform, B zero; `false`: no zeroing (tests).
    Bool(bool),
    /// A method name: `"gaussian"` is supported; `"pissa"`, `"olora"`, `"loftq"`, `"eva"`,
    /// `"corda"`, `"orthogonal"`, `"mica"`, `"pissa_niter_N"`, `"lora_ga"` are refused.
    Name(String),
}

impl Default for InitLoraWeights {
    fn default() -> Self {
        InitLoraWeights::Bool(true)
    }
}

/// PEFT method names of `init_lora_weights` that this crate does not implement.
const KNOWN_UNSUPPORTED_INITS: &[&str] = &[
    "eva",
    "olora",
    "pissa",
    "corda",
    "loftq",
    "orthogonal",
    "mica",
    "lora_ga",
];

impl InitLoraWeights {
    /// The layer initialisation this value stands for.
    ///
    /// # Errors
    /// [`PeftError::Unsupported`] for PEFT methods not implemented here (PiSSA, OLoRA, LoftQ,
    /// EVA, CorDA, orthogonal, MiCA, LoRA-GA); [`PeftError::Config`] for strings PEFT does not
    /// know either.
    pub fn to_lora_init(&self) -> Result<LoraInit, PeftError> {
        match self {
            InitLoraWeights::Bool(true) => Ok(LoraInit::Default),
            InitLoraWeights::Bool(false) => Ok(LoraInit::NoZero),
            InitLoraWeights::Name(s) if s == "gaussian" => Ok(LoraInit::Gaussian),
            InitLoraWeights::Name(s)
                if KNOWN_UNSUPPORTED_INITS.contains(&s.as_str())
                    || s.starts_with("pissa_niter_") =>
            {
                Err(PeftError::Unsupported {
                    field: "init_lora_weights".into(),
                    value: format!("{s:?}"),
                    msg: "supported: true, false, \"gaussian\"".into(),
                })
            }
            InitLoraWeights::Name(s) => Err(PeftError::Config {
                field: "init_lora_weights".into(),
                value: format!("{s:?}"),
                msg: "expected true, false or one of PEFT's method names (\"gaussian\", ...)"
                    .into(),
            }),
        }
    }
}
