//! Attaching adapters to a model by config, and merging them away (PEFT `get_peft_model`,
//! `LoraModel.merge_and_unload`).
use super::dora::attach_fresh;
use super::LoraConfig;
use crate::matching::resolve_targets;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::{LoraLayerConfig, NamedLinears};
use std::collections::{HashMap, HashSet};

/// Attaches a fresh adapter to every linear layer of `model` that `config` targets (rules in
/// [`crate::resolve_targets`]), with per-layer rank/alpha from `rank_pattern`/`alpha_pattern`
/// and the initialisation of `init_lora_weights` (random draws use the backend's generator:
/// seed it with `B::seed`); with `use_dora`, each adapter is a DoRA one whose magnitude is the
/// norm of the adapted base weight (PEFT `DoraLinearLayer.update_layer`). Layers matched by `modules_to_save` (plus `classifier`/`score` for
/// `SEQ_CLS`) get a trainable base weight and bias (`LoraLinear::set_base_trainable(true)`).
/// An existing adapter on a targeted layer is replaced. Returns the adapted layer names in model
/// order (PEFT `targeted_module_names`).
///
/// When a targeted layer's recorded layout (`LoraLinear::fan_in_fan_out`) differs from
/// `config.fan_in_fan_out`, PEFT warns and uses the layer's real layout; so does this function
/// (one warning line on stderr). The adapter math does not depend on the flag; it only decides
/// the Hugging Face layout of `modules_to_save` weights on export.
///
/// # Errors
/// As [`crate::resolve_targets`] (invalid config, nothing matched, entry matched nothing);
/// [`PeftError::State`] if a targeted layer is merged; [`PeftError::Lora`] if the layer
/// refuses the adapter.
pub fn apply_lora<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    config: &LoraConfig,
    device: &B::Device,
) -> Result<Vec<String>, PeftError> {
    let names = model.linear_names();
    let plan = resolve_targets(&names, config)?;
    let targets: HashMap<&str, &LoraLayerConfig> =
        plan.targets.iter().map(|(n, c)| (n.as_str(), c)).collect();
    let mts: HashSet<&str> = plan.modules_to_save.iter().map(|s| s.as_str()).collect();

    let mut merged = Vec::new();
    let mut layout_differs = Vec::new();
    model.visit_linears(&mut |name, l| {
        if targets.contains_key(name) {
            if l.is_merged() {
                merged.push(name.to_string());
            }
            if l.fan_in_fan_out() != config.fan_in_fan_out {
                layout_differs.push(name.to_string());
            }
        }
    });
    if !merged.is_empty() {
        return Err(PeftError::State(format!(
            "cannot attach adapters to merged layers {merged:?}: call merge_and_unload first"
        )));
    }
    if !layout_differs.is_empty() {
        eprintln!(
            "lora-peft warning: fan_in_fan_out = {} in the config but {} targeted layers store the \
             other layout (e.g. `{}`); using each layer's own layout, as PEFT does",
            config.fan_in_fan_out,
            layout_differs.len(),
            layout_differs[0]
        );
    }

    let mut err = None;
    model.visit_linears_mut(&mut |name, l| {
        if err.is_some() {
            return;
        }
        if let Some(c) = targets.get(name) {
            if let Err(e) = attach_fresh(name, l, c, config.use_dora, device) {
                err = Some(e);
                return;
            }
        }
        if mts.contains(name) {
            l.set_base_trainable(true);
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(plan.target_names()),
    }
}

/// Merges every adapter into its base weight (`W += scaling·A·B`; DoRA: `W ← (m/‖W + ΔW‖)⊙(W +
/// ΔW)`; PEFT `merge_and_unload`) and
/// removes it, leaving plain linear layers; layers already merged just drop their adapter.
/// Outputs are unchanged up to float rounding on dense bases. A quantized base is dequantized,
/// updated and requantized with its scheme (PEFT's bitsandbytes merge), so outputs move by the
/// requantization error (see `LoraLinear::merge_report`); call `LoraLinear::dequantize` on every
/// layer first to merge into f32 weights instead. Returns how many layers had an adapter.
///
/// # Errors
/// [`PeftError::Lora`] naming the first layer whose adapter cannot be folded into its base
/// (`LoraLinear::unload_adapter`); layers before it are already merged.
pub fn merge_and_unload<B: Backend, M: NamedLinears<B>>(model: &mut M) -> Result<usize, PeftError> {
    unload_all(model, true)
}

/// Removes every adapter without merging (PEFT `unload`), restoring the base model's outputs;
/// a merged layer is unmerged first. Returns how many layers had an adapter.
///
/// # Errors
/// As [`merge_and_unload`].
pub fn unload<B: Backend, M: NamedLinears<B>>(model: &mut M) -> Result<usize, PeftError> {
    unload_all(model, false)
}

fn unload_all<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    merge: bool,
) -> Result<usize, PeftError> {
    let mut n = 0;
    let mut err = None;
    model.visit_linears_mut(&mut |name, l| {
        if err.is_none() {
            match l.unload_adapter(merge) {
                Ok(had) => n += usize::from(had),
                Err(source) => {
                    err = Some(PeftError::Lora {
                        name: name.to_string(),
                        source,
                    })
                }
            }
        }
    });
    err.map_or(Ok(n), Err)
}
