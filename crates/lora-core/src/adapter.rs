//! The adaptation-method seam: which adapter sits beside a frozen base.
//!
//! A new method (DoRA, IA3, …) is a new file holding its module and a new [`Adapter`] variant;
//! the `match`es below are the only places that dispatch on the method, so the compiler lists
//! every spot the new variant must fill in. Merging hands the method the base's weight and
//! bias ([`Adapter::merge_into`]), so additive (LoRA) and multiplicative (IA3, DoRA) updates
//! both fold in through [`FrozenLinear::update`], and the mixed-precision forward hands it the
//! base itself, so it decides where the bias goes.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

use crate::{FrozenLinear, Ia3Adapter, LoraAdapter, LoraError};

/// A base weight `[d_in, d_out]` and its optional bias `[d_out]`, as merging reads and writes
/// them.
pub type BaseTensors<B> = (Tensor<B, 2>, Option<Tensor<B, 1>>);

/// The adapter attached to a [`crate::LoraLinear`], one variant per adaptation method.
///
/// # Shapes
/// - input `x` `[..., d_in]`, base output `[..., d_out]`, output `[..., d_out]`
/// - [`Adapter::merge_into`], [`Adapter::unmerge_from`]: weight `[d_in, d_out]`, bias `[d_out]`
#[derive(Module, Debug)]
pub enum Adapter<B: Backend> {
    /// LoRA (Hu et al. 2021): `scaling · B(A(dropout(x)))` added to the base output.
    Lora(LoraAdapter<B>),
    /// (IA)³ (Liu et al. 2022): the base output scaled by `ia3_l` (bias included), or the base
    /// applied to the input scaled by `ia3_l` for a feed-forward module.
    Ia3(Ia3Adapter<B>),
}

impl<B: Backend> From<LoraAdapter<B>> for Adapter<B> {
    fn from(a: LoraAdapter<B>) -> Self {
        Self::Lora(a)
    }
}

impl<B: Backend> From<Ia3Adapter<B>> for Adapter<B> {
    fn from(a: Ia3Adapter<B>) -> Self {
        Self::Ia3(a)
    }
}

impl<B: Backend> Adapter<B> {
    /// The LoRA adapter, when this is one.
    pub fn as_lora(&self) -> Option<&LoraAdapter<B>> {
        match self {
            Self::Lora(a) => Some(a),
            Self::Ia3(_) => None,
        }
    }

    /// The (IA)³ adapter, when this is one.
    pub fn as_ia3(&self) -> Option<&Ia3Adapter<B>> {
        match self {
            Self::Ia3(a) => Some(a),
            Self::Lora(_) => None,
        }
    }

    /// The base with this adapter folded in (PEFT `merge`): from the frozen weight `w`
    /// `[d_in, d_out]` and bias `b` `[d_out]` (f32, detached), the weight and bias whose plain
    /// forward equals the adapted layer's. LoRA adds `scaling · A·B` to `w` and keeps `b`; a
    /// multiplicative method (IA3, DoRA) scales them instead.
    ///
    /// # Errors
    /// [`LoraError::State`] from a method whose update cannot be folded into the base.
    pub fn merge_into(
        &self,
        w: Tensor<B, 2>,
        b: Option<Tensor<B, 1>>,
    ) -> Result<BaseTensors<B>, LoraError> {
        match self {
            Self::Lora(a) => Ok((w + a.delta_weight().detach(), b)),
            Self::Ia3(a) => Ok(a.merge_into(w, b)),
        }
    }

    /// The inverse of [`Adapter::merge_into`] (PEFT `unmerge`): LoRA subtracts
    /// `scaling · A·B` from `w` and keeps `b`.
    ///
    /// # Errors
    /// As [`Adapter::merge_into`].
    pub fn unmerge_from(
        &self,
        w: Tensor<B, 2>,
        b: Option<Tensor<B, 1>>,
    ) -> Result<BaseTensors<B>, LoraError> {
        match self {
            Self::Lora(a) => Ok((w + a.delta_weight().detach().neg(), b)),
            Self::Ia3(a) => Ok(a.unmerge_from(w, b)),
        }
    }

    /// What the frozen base is applied to, from the layer input `x` `[..., d_in]`: `x` itself,
    /// except for a method that rescales the input (IA3 on a feed-forward module: `x ⊙ ia3_l`,
    /// PEFT `base_layer(x * ia3_scaling)`). The base output handed to [`Adapter::forward`] is
    /// the base's output on this.
    pub fn base_input<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Lora(_) => x,
            Self::Ia3(a) => a.forward_input(x),
        }
    }

    /// The layer output of an unmerged adapter from the input `x` `[..., d_in]` and the base's
    /// output `base` `[..., d_out]` on [`Adapter::base_input`] (bias included), both in the same
    /// dtype (LoRA: `base + scaling · B(A(dropout(x)))`; IA3: `base ⊙ ia3_l`, or `base` for a
    /// feed-forward module, whose input was scaled).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>, base: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Lora(a) => base + a.forward(x),
            Self::Ia3(a) => a.forward_output(base),
        }
    }

    /// As [`Adapter::forward`] in a mixed-precision layer whose frozen base `base` computes in
    /// `cd`: `x` is the input in its own dtype, `xc` the same input cast to `cd`; the result is
    /// the layer output in `x`'s dtype, bias included. LoRA (PyTorch autocast with PEFT):
    /// `add_bias(cast(xc·W + forward_autocast(x, xc), x's dtype))`; a method that scales the
    /// base output scales it after the bias, as PEFT's `result = base_layer(x) * scale` does.
    pub fn forward_mixed<const D: usize>(
        &self,
        base: &FrozenLinear<B>,
        x: Tensor<B, D>,
        xc: Tensor<B, D>,
        cd: FloatDType,
    ) -> Tensor<B, D> {
        let xd = FloatDType::from(x.dtype());
        match self {
            Self::Lora(a) => {
                let y = base.forward_compute(xc.clone()) + a.forward_autocast(x, xc, cd);
                base.add_bias(y.cast(xd))
            }
            // PEFT scales the input in its own dtype and hands it to the (autocast) base.
            Self::Ia3(a) if a.is_feedforward() => base.forward(a.forward_input(x)),
            Self::Ia3(a) => a.forward_output(base.add_bias(base.forward_compute(xc).cast(xd))),
        }
    }
}
