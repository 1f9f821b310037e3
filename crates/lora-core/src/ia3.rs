//! The (IA)³ adapter: one trainable vector `ia3_l` that rescales a frozen layer's output, or its
//! input for a feed-forward module (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning
//! is Better and Cheaper than In-Context Learning", §3.3; PEFT `peft/tuners/ia3/layer.py`,
//! `IA3Layer.update_layer`, `Linear.forward`, `Linear.merge`, `Linear.unmerge`).

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};

use crate::{BaseTensors, LoraError};

/// PEFT's guard against a division by zero when unmerging (`Linear.unmerge` divides by
/// `ia3_l + 1e-8`).
pub const IA3_UNMERGE_EPS: f64 = 1e-8;

/// The learned (IA)³ vector of one layer.
///
/// - Output scaling (`is_feedforward = false`): `y = base(x) ⊙ l`, bias included (PEFT
///   `result = base_layer(x) * ia3_scaling`), `l` of length `d_out`.
/// - Input scaling (`is_feedforward = true`, PEFT `feedforward_modules`):
///   `y = base(x ⊙ l)`, `l` of length `d_in`.
///
/// # Shapes
/// - `ia3_l`: `[d_out]`, or `[d_in]` for a feed-forward module (f32, trainable; PEFT stores it
///   `[d_out, 1]` / `[1, d_in]`)
/// - input `[..., d_in]`, output `[..., d_out]`
#[derive(Module, Debug)]
pub struct Ia3Adapter<B: Backend> {
    /// The scaling vector, `[d_out]` or `[d_in]` (f32, trainable).
    ia3_l: Param<Tensor<B, 1>>,
    /// Whether `ia3_l` scales the input (feed-forward module) rather than the output.
    is_feedforward: bool,
}

impl<B: Backend> Ia3Adapter<B> {
    /// A fresh adapter for a `[d_in, d_out]` layer: `ia3_l` all ones (the identity; PEFT
    /// `init_ia3_weights = True`, `reset_ia3_parameters`), or drawn from N(0, 1) with
    /// `init_ia3_weights = false` (PEFT's `torch.randn`, for tests; seed with `B::seed`).
    pub fn new(
        d_in: usize,
        d_out: usize,
        is_feedforward: bool,
        init_ia3_weights: bool,
        device: &B::Device,
    ) -> Self {
        let n = if is_feedforward { d_in } else { d_out };
        let l = if init_ia3_weights {
            Tensor::ones([n], device)
        } else {
            Tensor::random([n], Distribution::Normal(0.0, 1.0), device)
        };
        Self {
            ia3_l: Param::from_tensor(l),
            is_feedforward,
        }
    }

    /// An adapter for a `[d_in, d_out]` layer from a given vector `ia3_l`: `[d_in]` when
    /// `is_feedforward`, else `[d_out]`.
    ///
    /// # Errors
    /// [`LoraError::Shape`] naming `ia3_l` when its length is not the one the layer needs.
    pub fn from_tensor(
        ia3_l: Tensor<B, 1>,
        d_in: usize,
        d_out: usize,
        is_feedforward: bool,
    ) -> Result<Self, LoraError> {
        let n = if is_feedforward { d_in } else { d_out };
        if ia3_l.dims() != [n] {
            return Err(LoraError::Shape {
                what: format!(
                    "ia3_l ({} scaling of a [d_in = {d_in}, d_out = {d_out}] layer)",
                    if is_feedforward { "input" } else { "output" }
                ),
                expected: vec![n],
                got: ia3_l.dims().to_vec(),
            });
        }
        Ok(Self {
            ia3_l: Param::from_tensor(ia3_l),
            is_feedforward,
        })
    }

    /// The vector `ia3_l`, `[d_in]` (feed-forward) or `[d_out]`, f32.
    pub fn ia3_l(&self) -> Tensor<B, 1> {
        self.ia3_l.val()
    }

    /// Whether `ia3_l` scales the layer's input (PEFT `is_feedforward`).
    pub fn is_feedforward(&self) -> bool {
        self.is_feedforward
    }

    /// `t ⊙ l` along the last axis, `l` cast to `t`'s dtype when they differ (PEFT multiplies
    /// in the promoted dtype and casts back).
    fn scale<const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        let l = self.ia3_l.val();
        let l = if l.dtype() == t.dtype() {
            l
        } else {
            l.cast(FloatDType::from(t.dtype()))
        };
        t * l.unsqueeze::<D>()
    }

    /// What the base layer sees: `x ⊙ l` for a feed-forward module, `x` unchanged otherwise.
    /// `x` `[..., d_in]`.
    pub fn forward_input<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if self.is_feedforward {
            self.scale(x)
        } else {
            x
        }
    }

    /// The layer output from the base's output `base` `[..., d_out]` (bias included) on
    /// [`Ia3Adapter::forward_input`]: `base ⊙ l` for output scaling, `base` unchanged for a
    /// feed-forward module.
    pub fn forward_output<const D: usize>(&self, base: Tensor<B, D>) -> Tensor<B, D> {
        if self.is_feedforward {
            base
        } else {
            self.scale(base)
        }
    }

    /// The base with `ia3_l` folded in (PEFT `Linear.merge`), from the weight `w`
    /// `[d_in, d_out]` and bias `b` `[d_out]`: output scaling multiplies column `j` of `w` and
    /// `b[j]` by `l[j]`; input scaling multiplies row `i` of `w` by `l[i]` and keeps `b` (the
    /// bias is added after the scaled input's product).
    pub fn merge_into(&self, w: Tensor<B, 2>, b: Option<Tensor<B, 1>>) -> BaseTensors<B> {
        self.fold(w, b, self.ia3_l.val().detach())
    }

    /// The inverse of [`Ia3Adapter::merge_into`] as PEFT computes it (`Linear.unmerge`): the
    /// same products with `1 / (l + 1e-8)` ([`IA3_UNMERGE_EPS`]), so it is inexact near
    /// `l = 0` exactly where PEFT's is.
    pub fn unmerge_from(&self, w: Tensor<B, 2>, b: Option<Tensor<B, 1>>) -> BaseTensors<B> {
        let inv = self
            .ia3_l
            .val()
            .detach()
            .add_scalar(IA3_UNMERGE_EPS)
            .recip();
        self.fold(w, b, inv)
    }

    fn fold(&self, w: Tensor<B, 2>, b: Option<Tensor<B, 1>>, s: Tensor<B, 1>) -> BaseTensors<B> {
        if self.is_feedforward {
            (w * s.unsqueeze_dim::<2>(1), b)
        } else {
            let b = b.map(|b| b * s.clone());
            (w * s.unsqueeze::<2>(), b)
        }
    }
}
