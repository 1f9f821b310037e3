//! # lora-peft — Hugging Face PEFT-compatible LoRA configs and adapter files
//!
//! Reads and writes PEFT 0.21's LoRA format so adapters move between this workspace and Python
//! (`peft.PeftModel.from_pretrained` / `save_pretrained`):
//!
//! - [`LoraConfig`]: `adapter_config.json` with PEFT's field names and defaults
//!   (`peft/tuners/lora/config.py`); unknown fields are preserved; [`LoraConfig::validate`]
//!   refuses bad values and unimplemented variants (DoRA, PiSSA init, `bias = "all"`...).
//! - [`resolve_targets`] / [`apply_lora`]: PEFT's target matching
//!   (`check_target_module_exists`: list = exact name or `"." + suffix`, string = full-match
//!   regex, `"all-linear"`, `layers_to_transform`/`layers_pattern`, `exclude_modules`,
//!   `modules_to_save`, `rank_pattern`/`alpha_pattern`) on any model implementing
//!   [`lora_core::NamedLinears`].
//! - [`save_adapter`] / [`load_adapter`]: `adapter_model.safetensors` with PEFT's keys
//!   (`base_model.model.{layer}.lora_A.weight` `[r, d_in]`, `.lora_B.weight` `[d_out, r]`,
//!   `modules_to_save` weights in the Hugging Face layout), strict key and shape checks.
//! - [`merge_and_unload`] / [`unload`].
//! - [`quantize_model`]: QLoRA — quantize the frozen linear bases (NF4, NF4 with double
//!   quantization, LLM.int8) before applying adapters; [`QuantReport`] gives bytes and errors.
//!
//! Layout: `lora_core::LoraAdapter` keeps A as `[d_in, r]` and B as `[r, d_out]`; files keep
//! PyTorch's `nn.Linear` layout, so both are transposed on the way in and out.

pub mod apply;
pub mod config;
pub mod error;
pub mod io;
pub mod matching;
pub mod quantize;

pub use apply::{apply_lora, merge_and_unload, unload};
pub use config::{
    InitLoraWeights, LayersToTransform, LoraConfig, PatternMap, StringOrList, TargetModules,
    CONFIG_NAME,
};
pub use error::PeftError;
pub use io::{load_adapter, save_adapter, write_atomic, KEY_PREFIX, WEIGHTS_NAME};
pub use matching::{resolve_targets, TargetPlan};
pub use quantize::{quantize_model, QuantReport};
