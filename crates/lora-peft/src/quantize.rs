//! Quantizing the frozen base of a model's linear layers (QLoRA, Dettmers et al. 2023: quantize
//! the base model, then add adapters; the role of transformers' `BitsAndBytesConfig`
//! `load_in_4bit` / `load_in_8bit` before PEFT's `get_peft_model`).
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::{LoraError, NamedLinears, QuantKind, QuantStats};

/// What [`quantize_model`] did: per-layer storage and reconstruction error, and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantReport {
    /// The scheme used.
    pub kind: QuantKind,
    /// `(layer name, statistics)` of every quantized layer, in model order. Bytes are those of
    /// the weight only (biases stay f32 and are not counted on either side).
    pub layers: Vec<(String, QuantStats)>,
    /// Linear layers left dense because `skip` named them, in model order.
    pub skipped: Vec<String>,
    /// Entries of `skip` that named no linear layer of this model (for example `lm_head` of a
    /// model whose head is tied to the embedding and so is no linear layer).
    pub unused_skip: Vec<String>,
}

impl QuantReport {
    /// Values in the quantized weights.
    pub fn numel(&self) -> usize {
        self.layers.iter().map(|(_, s)| s.numel).sum()
    }

    /// Bytes of the quantized weights in f32 (`4 · numel`).
    pub fn f32_bytes(&self) -> usize {
        self.layers.iter().map(|(_, s)| s.f32_bytes).sum()
    }

    /// Bytes the quantized weights take on the device (codes and scales).
    pub fn quant_bytes(&self) -> usize {
        self.layers.iter().map(|(_, s)| s.quant_bytes).sum()
    }

    /// `8 · quant_bytes / numel` (0 when nothing was quantized).
    pub fn bits_per_parameter(&self) -> f64 {
        match self.numel() {
            0 => 0.0,
            n => 8.0 * self.quant_bytes() as f64 / n as f64,
        }
    }

    /// The largest `max |W − dequant(W)|` over the layers, and that layer's name.
    pub fn worst(&self) -> Option<(&str, &QuantStats)> {
        self.layers
            .iter()
            .max_by(|a, b| a.1.max_abs_error.total_cmp(&b.1.max_abs_error))
            .map(|(n, s)| (n.as_str(), s))
    }

    /// The largest `max |W − dequant(W)|` over the layers (0 when nothing was quantized).
    pub fn max_abs_error(&self) -> f64 {
        self.worst().map_or(0.0, |(_, s)| s.max_abs_error)
    }

    /// RMS reconstruction error over all quantized values.
    pub fn rms_error(&self) -> f64 {
        let n = self.numel();
        if n == 0 {
            return 0.0;
        }
        let sq: f64 = self
            .layers
            .iter()
            .map(|(_, s)| s.rms_error * s.rms_error * s.numel as f64)
            .sum();
        (sq / n as f64).sqrt()
    }
}

impl std::fmt::Display for QuantReport {
    /// One line: `base linear weights: 427.2 MB f32 -> 60.1 MB nf4 (4.50 bits/param), max
    /// reconstruction error 1.2e-2` (MB = 10⁶ bytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "base linear weights: {:.1} MB f32 -> {:.1} MB {} ({:.2} bits/param), max \
             reconstruction error {:.3e}",
            self.f32_bytes() as f64 / 1e6,
            self.quant_bytes() as f64 / 1e6,
            self.kind.name(),
            self.bits_per_parameter(),
            self.max_abs_error()
        )
    }
}

/// Whether layer `name` is named by a `skip` entry: equal, or ending in `"." + entry` (PEFT's
/// list matching, so `"score"` or `"lm_head"` match at any depth).
fn skip_matches(name: &str, entry: &str) -> bool {
    name == entry
        || name
            .strip_suffix(entry)
            .is_some_and(|head| head.ends_with('.'))
}

/// Quantizes the frozen base weight of every linear layer of `model` ([`lora_core::LoraLinear::quantize`])
/// except those named in `skip` (exact names or `.`-suffixes, e.g. `"score"`, `"lm_head"` and
/// the `modules_to_save` of the config to be applied; a trainable base cannot be quantized).
/// Only linear weights are quantized: embeddings, norms and biases are not linear layers'
/// weights and stay f32, as with bitsandbytes. Call it before [`crate::apply_lora`] (QLoRA
/// order); adapters already attached are kept and still train.
///
/// # Errors
/// [`PeftError::Lora`] naming the layer: [`LoraError::Quant`] for a bad block size (checked
/// before any layer changes) or a non-finite weight, [`LoraError::State`] for a layer already
/// quantized or with a trainable base (both checked before any layer changes). A non-finite
/// weight is found while quantizing: layers before it stay quantized.
pub fn quantize_model<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    kind: &QuantKind,
    skip: &[&str],
) -> Result<QuantReport, PeftError> {
    let mut report = QuantReport {
        kind: *kind,
        layers: Vec::new(),
        skipped: Vec::new(),
        unused_skip: Vec::new(),
    };
    let mut used = vec![false; skip.len()];
    let mut targets = Vec::new();
    let mut err = None;
    model.visit_linears(&mut |name, l| {
        let hits: Vec<usize> = (0..skip.len())
            .filter(|&i| skip_matches(name, skip[i]))
            .collect();
        if !hits.is_empty() {
            hits.iter().for_each(|&i| used[i] = true);
            report.skipped.push(name.to_string());
            return;
        }
        if err.is_none() {
            let state = if l.is_quantized() {
                Some("the base is already quantized")
            } else if l.is_base_trainable() {
                Some("the base weight is trainable (modules_to_save): add it to `skip`")
            } else {
                None
            };
            if let Some(m) = state {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source: LoraError::State(format!("quantize_model: {m}")),
                });
            }
        }
        targets.push(name.to_string());
    });
    if let Some(e) = err {
        return Err(e);
    }
    if let Err(source) = kind.validate() {
        return Err(PeftError::Lora {
            name: targets.first().cloned().unwrap_or_default(),
            source: source.into(),
        });
    }
    report.unused_skip = skip
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(s, _)| s.to_string())
        .collect();
    let mut err = None;
    model.visit_linears_mut(&mut |name, l| {
        if err.is_some() || report.skipped.iter().any(|s| s == name) {
            return;
        }
        match l.quantize(kind) {
            Ok(stats) => report.layers.push((name.to_string(), stats)),
            Err(source) => {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source,
                })
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
