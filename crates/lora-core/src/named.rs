//! Models whose linear layers are addressed by their Hugging Face module names, and the
//! model-wide compute dtype switch.

use burn::tensor::backend::Backend;
use burn::tensor::FloatDType;

use crate::{LoraError, LoraLinear};

/// A model whose linear layers can carry adapters, addressed by their Hugging Face module names
/// (for example `transformer.h.0.attn.c_attn` or `model.layers.3.self_attn.q_proj`).
/// `lora-peft` uses it to apply configs and to save and load adapter files.
pub trait NamedLinears<B: Backend> {
    /// Calls `f(name, layer)` for every linear layer, in model order.
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>));
    /// Calls `f(name, layer)` for every linear layer, mutably, in model order.
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>));
    /// The names of all linear layers, in model order.
    fn linear_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        self.visit_linears(&mut |n, _| v.push(n.to_string()));
        v
    }

    /// Mixed precision for the whole model: [`LoraLinear::set_compute_dtype`] on every linear
    /// layer whose base is frozen. Layers with a trainable base (PEFT `modules_to_save`, such
    /// as a classifier's `score`) keep their f32 master weight and compute in f32; they are
    /// listed in the report. Everything outside the linear layers (embeddings, norms, softmax,
    /// attention scores, the loss) stays f32, as under PyTorch autocast, where those ops run in
    /// f32 (Micikevicius et al. 2018 §3). `Precision::F32.dtype()` switches a model back.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedDtype`] when the backend cannot hold `dtype`, checked on the
    /// first layer before anything changes.
    fn set_compute_dtype(&mut self, dtype: FloatDType) -> Result<PrecisionReport, LoraError> {
        let mut first_err = None;
        let mut checked = false;
        self.visit_linears(&mut |_, l| {
            if !checked {
                checked = true;
                let device = l.base().device();
                if !B::supports_dtype(&device, dtype.into()) {
                    first_err = Some(LoraError::UnsupportedDtype {
                        dtype,
                        backend: B::name(&device),
                    });
                }
            }
        });
        if let Some(e) = first_err {
            return Err(e);
        }
        let mut report = PrecisionReport {
            dtype,
            ..PrecisionReport::default()
        };
        let mut err = None;
        self.visit_linears_mut(&mut |name, l| {
            if err.is_some() {
                return;
            }
            if l.is_base_trainable() {
                report.kept_master.push(name.to_string());
                return;
            }
            match l.set_compute_dtype(dtype) {
                Ok(()) => report.switched.push(name.to_string()),
                Err(e) => err = Some(LoraError::State(format!("{name}: {e}"))),
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// What [`NamedLinears::set_compute_dtype`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionReport {
    /// The compute dtype asked for.
    pub dtype: FloatDType,
    /// Layers now computing in `dtype` (module names, model order).
    pub switched: Vec<String>,
    /// Layers with a trainable base (`modules_to_save`) left in f32.
    pub kept_master: Vec<String>,
}

impl Default for PrecisionReport {
    fn default() -> Self {
        Self {
            dtype: FloatDType::F32,
            switched: Vec::new(),
            kept_master: Vec::new(),
        }
    }
}

impl std::fmt::Display for PrecisionReport {
    /// `compute dtype BF16 on 210 linear layers (kept f32: ["score"])`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "compute dtype {:?} on {} linear layers (kept f32: {:?})",
            self.dtype,
            self.switched.len(),
            self.kept_master
        )
    }
}

/// A single layer is a model of one linear layer, named `""` (so that [`crate::count_parameters`]
/// and the model-wide calls work on one layer too).
impl<B: Backend> NamedLinears<B> for LoraLinear<B> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        f("", self);
    }

    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        f("", self);
    }
}
