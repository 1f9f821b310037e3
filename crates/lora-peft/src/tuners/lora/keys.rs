//! The state-dict keys of a LoRA adapter, as PEFT saves them (adapter name removed;
//! `peft/tuners/lora/model.py` `prefix = "lora_"`, `peft/utils/save_and_load.py`):
//!
//! - `base_model.model.{layer}.lora_A.weight`: `[r, d_in]` (our `lora_a` `[d_in, r]`
//!   transposed);
//! - `base_model.model.{layer}.lora_B.weight`: `[d_out, r]` (our `lora_b` `[r, d_out]`
//!   transposed);
//! - with `use_dora`, `base_model.model.{layer}.lora_magnitude_vector`: `[d_out]`
//!   ([`super::dora`]);
//! - `base_model.model.{layer}.weight` (+ `.bias`) for `modules_to_save` layers
//!   ([`crate::adapter_dir::module_key`]).
use super::dora::{magnitude_key, MAGNITUDE_PART};
use super::LoraConfig;
use crate::adapter_dir::{module_key, KEY_PREFIX};
use crate::matching::resolve;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::NamedLinears;

/// The per-layer parts of a LoRA adapter; a key may carry PEFT's adapter name after them
/// (`lora_A.default.weight`).
pub const ADAPTER_PARTS: &[&str] = &["lora_A", "lora_B", MAGNITUDE_PART];

/// `base_model.model.{layer}.lora_A.weight`, shape `[r, d_in]`.
pub fn lora_a_key(layer: &str) -> String {
    format!("{KEY_PREFIX}{layer}.lora_A.weight")
}

/// `base_model.model.{layer}.lora_B.weight`, shape `[d_out, r]`.
pub fn lora_b_key(layer: &str) -> String {
    format!("{KEY_PREFIX}{layer}.lora_B.weight")
}

/// Every key the adapter file of `config` on `model` holds, in model order (per adapted layer
/// `lora_A` then `lora_B`, then `lora_magnitude_vector` with `use_dora`; per `modules_to_save`
/// layer `weight`, then `bias` when the layer has one), as [`super::save_adapter`] writes them and [`super::load_adapter`] expects them.
///
/// # Errors
/// The errors of [`crate::resolve_targets`] (without its per-entry checks, as when loading).
pub fn state_dict_keys<B: Backend, M: NamedLinears<B>>(
    model: &M,
    config: &LoraConfig,
) -> Result<Vec<String>, PeftError> {
    let plan = resolve(&model.linear_names(), config, false)?;
    let mut keys = Vec::new();
    model.visit_linears(&mut |name, l| {
        if plan.targets.iter().any(|(n, _)| n == name) {
            keys.push(lora_a_key(name));
            keys.push(lora_b_key(name));
            if config.use_dora {
                keys.push(magnitude_key(name));
            }
        }
        if plan.modules_to_save.iter().any(|n| n == name) {
            keys.push(module_key(name, "weight"));
            if l.bias().is_some() {
                keys.push(module_key(name, "bias"));
            }
        }
    });
    Ok(keys)
}
