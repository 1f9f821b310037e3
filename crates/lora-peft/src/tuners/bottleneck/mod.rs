//! Bottleneck adapters as AdapterHub `adapters` 1.3 defines them (Houlsby et al. 2019;
//! Pfeiffer et al. 2021): `configuration/adapter_config.py` `BnConfig` / `SeqBnConfig`
//! (`"seq_bn"`) / `DoubleSeqBnConfig` (`"double_seq_bn"`), `methods/bottleneck.py`,
//! `methods/modeling.py` `Adapter`, and its adapter directories (`loading.py`).
//!
//! AdapterHub files are not PEFT files: `adapter_config.json` has no `peft_type` but a
//! `"config"` object and a `"version"` like `"adapters.1.3.0"` ([`is_adapterhub_config`]), and
//! the weights are in `adapter.safetensors`. The adapters live in per-layer slots of the model
//! ([`lora_core::BottleneckLayers`]: `attention_adapters`, `output_adapters`), not beside a
//! linear layer, so this method is reached through its own functions rather than the
//! [`crate::Tuner`] trait:
//!
//! - `config`: [`BnConfig`] (presets [`BnConfig::seq_bn`], [`BnConfig::double_seq_bn`]) and
//!   its checks;
//! - `model`: [`add_bottleneck`] (fresh adapters, AdapterHub `add_adapter`),
//!   [`remove_bottleneck`], [`bottleneck_slots`];
//! - `keys`: the tensor keys (`transformer.h.{i}.output_adapters.adapters.{name}.adapter_down.0.weight`…);
//! - `io`: [`BnAdapterConfig`] (the whole `adapter_config.json`), [`save_bottleneck`],
//!   [`load_bottleneck`].

mod config;
mod io;
pub mod keys;
mod model;

pub use config::{BnConfig, BnScaling, BoolOrString, ReductionFactor};
pub use io::{load_bottleneck, save_bottleneck, BnAdapterConfig};
pub use model::{add_bottleneck, bottleneck_slots, remove_bottleneck};

/// The `version` AdapterHub 1.3.0 writes into `adapter_config.json`.
pub const ADAPTERHUB_VERSION: &str = "adapters.1.3.0";

/// File name of the weights in an AdapterHub adapter directory saved with
/// `use_safetensors=True` (AdapterHub `SAFE_WEIGHTS_NAME`).
pub const ADAPTERHUB_WEIGHTS_NAME: &str = "adapter.safetensors";

/// Whether a parsed `adapter_config.json` is AdapterHub's (a `"config"` object and a
/// `"version"` string starting with `"adapters."`) rather than PEFT's.
pub fn is_adapterhub_config(v: &serde_json::Map<String, serde_json::Value>) -> bool {
    v.get("config").is_some_and(|c| c.is_object())
        && v.get("version")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s.starts_with("adapters."))
}
