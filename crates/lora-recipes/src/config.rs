//! The PEFT [`LoraConfig`] of a run, built from its options.

use lora_peft::{LayersToTransform, LoraConfig, TargetModules};

use crate::options::{FinetuneOptions, ModelKind, Task};
use crate::AnyError;

/// Parses `--layers` indices: "15-29" (inclusive range), "1,3,5", or a mix ("1,4-6").
///
/// # Errors
/// A message naming `--layers` and the part that is not an index or a range `a-b` with
/// `a <= b`.
pub fn parse_layers(s: &str) -> Result<Vec<usize>, AnyError> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
            if a > b {
                return Err(format!("--layers: bad range {part:?}").into());
            }
            v.extend(a..=b);
        } else {
            v.push(
                part.parse()
                    .map_err(|_| format!("--layers: bad layer index {part:?}"))?,
            );
        }
    }
    Ok(v)
}

/// The layers `--layers` selects out of `n_layers`: all, the top half, or the given indices.
///
/// # Errors
/// [`parse_layers`]' errors; an index `>= n_layers`, naming `--layers`.
pub fn selected_layers(spec: &str, n_layers: usize) -> Result<Vec<usize>, AnyError> {
    let v = match spec {
        "all" => (0..n_layers).collect(),
        "top-half" => (n_layers / 2..n_layers).collect(),
        l => parse_layers(l)?,
    };
    if let Some(bad) = v.iter().find(|&&i| i >= n_layers) {
        return Err(
            format!("--layers: layer {bad} does not exist (the model has {n_layers})").into(),
        );
    }
    Ok(v)
}

/// Number of transformer layers, from module names such as `model.layers.29.mlp.up_proj`
/// (Llama) or `h.11.attn.c_attn` (GPT-2): one more than the largest index; 0 when no name has
/// one.
pub fn count_layers(names: &[String]) -> usize {
    names
        .iter()
        .filter_map(|n| {
            let parts: Vec<&str> = n.split('.').collect();
            parts
                .windows(2)
                .find(|w| w[0] == "layers" || w[0] == "h")
                .and_then(|w| w[1].parse::<usize>().ok())
        })
        .max()
        .map_or(0, |m| m + 1)
}

/// The LoRA config of a run: rank, alpha and dropout from the options; target modules from
/// `--target-modules` (a comma list or a single plain name → names, anything else → one regex)
/// or `default_targets`; `--layers` ("all", "top-half" of `n_layers`, or indices);
/// `base_model_name_or_path` = `base_model` (a hub id or a path); `fan_in_fan_out` for GPT-2 (Conv1D weights); task type and `modules_to_save`
/// (`score` for classification).
///
/// # Errors
/// [`parse_layers`]' errors; [`LoraConfig::validate`]'s.
pub fn lora_config(
    opts: &FinetuneOptions,
    default_targets: &[&str],
    base_model: &str,
    n_layers: usize,
) -> Result<LoraConfig, AnyError> {
    let mut cfg = LoraConfig::new(opts.r, opts.lora_alpha, default_targets);
    cfg.lora_dropout = opts.lora_dropout;
    if let Some(t) = &opts.target_modules {
        cfg.target_modules = Some(
            if t.contains(',') || t.chars().all(|c| c.is_alphanumeric() || c == '_') {
                TargetModules::from(t.split(',').map(str::trim).collect::<Vec<_>>().as_slice())
            } else {
                TargetModules::Pattern(t.clone())
            },
        );
    }
    match opts.layers.as_str() {
        "all" => {}
        "top-half" => {
            cfg.layers_to_transform =
                Some(LayersToTransform::List((n_layers / 2..n_layers).collect()))
        }
        l => cfg.layers_to_transform = Some(LayersToTransform::List(parse_layers(l)?)),
    }
    cfg.base_model_name_or_path = Some(base_model.to_string());
    cfg.fan_in_fan_out = opts.model == ModelKind::Gpt2;
    match opts.task {
        Task::Classify => {
            cfg.task_type = Some("SEQ_CLS".into());
            cfg.modules_to_save = Some(vec!["score".into()]);
        }
        Task::CausalLm => cfg.task_type = Some("CAUSAL_LM".into()),
    }
    cfg.validate()?;
    Ok(cfg)
}
