//! Attaching (IA)³ vectors to a model by config (PEFT `get_peft_model` with an `IA3Config`:
//! `IA3Model._prepare_adapter_config`, `_create_and_replace`). Merging and removal are the
//! method-independent [`crate::merge_and_unload`] / [`crate::unload`]: each layer folds its own
//! adapter in (`W ⊙ l`, and `b ⊙ l` for output scaling; PEFT `ia3/layer.py` `Linear.merge`).
use super::targeting::Ia3LayerConfig;
use super::IA3Config;
use crate::matching::resolve_targets;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::{Ia3Adapter, NamedLinears};
use std::collections::{HashMap, HashSet};

/// Attaches a fresh `ia3_l` to every linear layer of `model` that `config` targets: the config
/// is first completed with PEFT's defaults ([`IA3Config::prepare`]), then matched (rules in
/// [`crate::resolve_targets`]); a layer matched by `feedforward_modules` scales its input
/// (`ia3_l` `[d_in]`), the others their output (`[d_out]`). `ia3_l` starts at ones with
/// `init_ia3_weights` (the model's outputs are unchanged), else at N(0, 1) draws from the
/// backend's generator (seed it with `B::seed`). Layers matched by `modules_to_save` (plus
/// `classifier`/`score` for `SEQ_CLS`) get a trainable base weight and bias. An existing
/// adapter on a targeted layer is replaced. Returns the adapted layer names in model order
/// (PEFT `targeted_module_names`).
///
/// When a targeted layer's recorded layout differs from `config.fan_in_fan_out`, PEFT warns
/// and uses the layer's layout; so does this function (one line on stderr).
///
/// # Errors
/// As [`IA3Config::prepare`] (invalid config, `feedforward_modules` not a subset of
/// `target_modules`, no default for the model) and [`crate::resolve_targets`] (nothing
/// matched, an entry matched nothing); [`PeftError::State`] if a targeted layer is merged.
pub fn apply_ia3<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    config: &IA3Config,
    device: &B::Device,
) -> Result<Vec<String>, PeftError> {
    let names = model.linear_names();
    let config = config.prepare(&names)?;
    let plan = resolve_targets(&names, &config)?;
    let targets: HashMap<&str, Ia3LayerConfig> =
        plan.targets.iter().map(|(n, c)| (n.as_str(), *c)).collect();
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
            "cannot attach (IA)³ vectors to merged layers {merged:?}: call merge_and_unload first"
        )));
    }
    if !layout_differs.is_empty() {
        eprintln!(
            "lora-peft warning: fan_in_fan_out = {} in the IA3 config but {} targeted layers \
             store the other layout (e.g. `{}`); using each layer's own layout, as PEFT does",
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
            let (d_in, d_out) = l.dims();
            let a = Ia3Adapter::new(d_in, d_out, c.is_feedforward, c.init_ia3_weights, device);
            if let Err(source) = l.attach_adapter(a) {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source,
                });
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
