#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! Reads and writes PEFT 0.21's adapter format so adapters move between this workspace and
//! Python (`peft.PeftModel.from_pretrained` / `save_pretrained`). Shaped like PEFT's tuners:
//!
//! - [`tuners`]: the method seam — [`PeftType`], the [`Tuner`] trait and the dispatcher
//!   ([`AdapterConfig::from_file`], [`tuners::load`]) that routes an adapter directory on its
//!   `peft_type`; one module per method, LoRA first ([`tuners::lora`]):
//!   - [`LoraConfig`]: `adapter_config.json` with PEFT's field names and defaults
//!     (`peft/tuners/lora/config.py`); unknown fields are preserved; [`LoraConfig::validate`]
//!     refuses bad values and unimplemented variants (DoRA, PiSSA init, `bias = "all"`...);
//!   - [`apply_lora`], [`merge_and_unload`] / [`unload`];
//!   - [`save_adapter`] / [`load_adapter`]: `adapter_model.safetensors` with PEFT's keys
//!     (`base_model.model.{layer}.lora_A.weight` `[r, d_in]`, `.lora_B.weight` `[d_out, r]`,
//!     `modules_to_save` weights in the Hugging Face layout), strict key and shape checks.
//! - [`tuners::bottleneck`]: AdapterHub `adapters` 1.3 bottleneck adapters (`seq_bn`,
//!   `double_seq_bn`): [`BnConfig`], [`add_bottleneck`], [`save_bottleneck`] /
//!   [`load_bottleneck`] (`adapter_config.json` + `adapter.safetensors`, AdapterHub's keys).
//! - [`tuners::ia3`]: (IA)³ — [`IA3Config`] (PEFT's fields and defaults, the
//!   `feedforward_modules` ⊆ `target_modules` rule, PEFT's default targets per architecture),
//!   [`apply_ia3`], [`save_ia3`] / [`load_ia3`] (`base_model.model.{layer}.ia3_l`, `[d_out, 1]`
//!   or `[1, d_in]` for a feed-forward layer); [`merge_and_unload`] folds it in (`W ⊙ l`).
//! - prompt learning, which wraps the model instead of adapting its layers:
//!   [`tuners::prefix_tuning`] ([`PrefixTuningConfig`], [`PrefixEncoder`]: the prefix as the
//!   key/value cache) and [`tuners::prompt_tuning`] ([`PromptTuningConfig`],
//!   [`PromptEmbedding`]: virtual input embeddings), both saved as `prompt_embeddings`.
//! - [`PeftModel`]: a `lora_models::LanguageModel` with its method (LoRA inside, or a
//!   [`PromptLearner`] beside it), itself a `LanguageModel`; `from_pretrained` routes on
//!   `peft_type`, `save_pretrained` writes PEFT's files.
//! - [`resolve_targets`] ([`matching`]): PEFT's target matching for any method's config
//!   ([`TargetConfig`]; `check_target_module_exists`: list = exact name or `"." + suffix`,
//!   string = full-match regex, `"all-linear"`, `layers_to_transform`/`layers_pattern`,
//!   `exclude_modules`, `modules_to_save`, `rank_pattern`/`alpha_pattern`) on any model
//!   implementing [`lora_core::NamedLinears`].
//! - [`adapter_dir`]: the adapter-directory I/O every method shares (file names, key prefix and
//!   normalisation, strict tensor reading, `modules_to_save` tensors); writes go through
//!   `lora-io`. [`config_types`]: the config field types every method shares.
//! - [`NamedAdapters`] ([`multi`]): several named adapters on one model as PEFT's `PeftModel`
//!   holds them — load under a name, `set_adapter([a, b])`, delete, `save_pretrained`
//!   (`default` → `dir/`, others → `dir/<name>/`), per-row `adapter_names`, and LoRA's
//!   `add_weighted_adapter` ([`CombinationType`]: `cat`, `linear`, `svd`).
//! - [`quantize_model`]: QLoRA — quantize the frozen linear bases (NF4, NF4 with double
//!   quantization, LLM.int8) before applying adapters; [`QuantReport`] gives bytes and errors.

pub mod adapter_dir;
pub mod auto;
pub mod config_types;
pub mod error;
pub mod matching;
pub mod multi;
mod patterns;
pub mod peft_model;
pub mod quantize;
pub mod tuners;

pub use adapter_dir::{write_atomic, CONFIG_NAME, KEY_PREFIX, WEIGHTS_NAME};
pub use auto::{adapter_kind, load_adapters, AdapterKind};
pub use config_types::{LayersToTransform, PatternMap, PatternValue, StringOrList, TargetModules};
pub use error::PeftError;
pub use matching::{resolve_targets, TargetConfig, TargetPlan, SEQ_CLS_HEAD_NAMES};
pub use multi::{check_adapter_name, NamedAdapters};
pub use peft_model::{PeftModel, PromptLearner};
pub use quantize::{quantize_model, QuantReport};
pub use tuners::bottleneck::{
    add_bottleneck, load_bottleneck, remove_bottleneck, save_bottleneck, BnAdapterConfig, BnConfig,
};
pub use tuners::ia3::{apply_ia3, load_ia3, save_ia3, IA3Config, Ia3LayerConfig};
pub use tuners::lora::{
    apply_lora, load_adapter, merge_and_unload, save_adapter, unload, CombinationType,
    InitLoraWeights, LoraConfig,
};
pub use tuners::prefix_tuning::{PrefixEncoder, PrefixTuningConfig};
pub use tuners::prompt_tuning::{PromptEmbedding, PromptTuningConfig, PromptTuningInit};
pub use tuners::{AdapterConfig, PeftType, Tuner};
