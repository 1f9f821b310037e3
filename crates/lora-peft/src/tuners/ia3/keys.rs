//! The state-dict keys of an (IA)³ adapter, as PEFT saves them (adapter name removed;
//! `peft/tuners/ia3/model.py` `prefix = "ia3_"`, `peft/utils/save_and_load.py`):
//!
//! - `base_model.model.{layer}.ia3_l`: `[d_out, 1]` for output scaling, `[1, d_in]` for a
//!   feed-forward layer (PEFT `IA3Layer.update_layer`; GPT-2 `Conv1D` layers included, whose
//!   `fan_in_fan_out` does not change the stored shape); our `ia3_l` is the same values, 1-D;
//! - `base_model.model.{layer}.weight` (+ `.bias`) for `modules_to_save` layers
//!   ([`crate::adapter_dir::module_key`]).
use super::targeting::Ia3LayerConfig;
use super::IA3Config;
use crate::adapter_dir::{module_key, KEY_PREFIX};
use crate::matching::resolve;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::NamedLinears;

/// The per-layer part of an (IA)³ adapter.
pub const ADAPTER_PARTS: &[&str] = &["ia3_l"];

/// `base_model.model.{layer}.ia3_l`.
pub fn ia3_l_key(layer: &str) -> String {
    format!("{KEY_PREFIX}{layer}.ia3_l")
}

/// The shape PEFT stores `ia3_l` in for a `[d_in, d_out]` layer: `[1, d_in]` when
/// feed-forward, else `[d_out, 1]`.
pub fn ia3_l_shape(layer: &Ia3LayerConfig, d_in: usize, d_out: usize) -> [usize; 2] {
    if layer.is_feedforward {
        [1, d_in]
    } else {
        [d_out, 1]
    }
}

/// Every key the adapter file of `config` on `model` holds, in model order (per adapted layer
/// `ia3_l`; per `modules_to_save` layer `weight`, then `bias` when the layer has one), as
/// [`super::save_ia3`] writes them and [`super::load_ia3`] expects them.
///
/// # Errors
/// The errors of [`IA3Config::prepare`] and of the matching (without its per-entry checks, as
/// when loading).
pub fn state_dict_keys<B: Backend, M: NamedLinears<B>>(
    model: &M,
    config: &IA3Config,
) -> Result<Vec<String>, PeftError> {
    let names = model.linear_names();
    let plan = resolve(&names, &config.prepare(&names)?, false)?;
    let mut keys = Vec::new();
    model.visit_linears(&mut |name, l| {
        if plan.targets.iter().any(|(n, _)| n == name) {
            keys.push(ia3_l_key(name));
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
