//! The adaptation-method seam: which adapter sits beside a frozen base.
//!
//! A new method (DoRA, IA3, …) is a new file holding its module and a new [`Adapter`] variant;
//! the `match`es below are the only places that dispatch on the method, so the compiler lists
//! every spot the new variant must fill in.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

use crate::LoraAdapter;

/// The adapter attached to a [`crate::LoraLinear`], one variant per adaptation method.
///
/// # Shapes
/// - input `x` `[..., d_in]`, base output `[..., d_out]`, output `[..., d_out]`
/// - [`Adapter::delta_weight`]: `[d_in, d_out]`
#[derive(Module, Debug)]
pub enum Adapter<B: Backend> {
    /// LoRA (Hu et al. 2021): `scaling · B(A(dropout(x)))` added to the base output.
    Lora(LoraAdapter<B>),
}

impl<B: Backend> From<LoraAdapter<B>> for Adapter<B> {
    fn from(a: LoraAdapter<B>) -> Self {
        Self::Lora(a)
    }
}

impl<B: Backend> Adapter<B> {
    /// The LoRA adapter, when this is one.
    pub fn as_lora(&self) -> Option<&LoraAdapter<B>> {
        match self {
            Self::Lora(a) => Some(a),
        }
    }

    /// The dense update this adapter adds to the base weight when merged, `[d_in, d_out]`
    /// (LoRA: `scaling · A·B`) — for merging only, never in forward.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        match self {
            Self::Lora(a) => a.delta_weight(),
        }
    }

    /// The layer output of an unmerged adapter from the input `x` `[..., d_in]` and the base's
    /// output `base` `[..., d_out]` (bias included), both in the same dtype (LoRA:
    /// `base + scaling · B(A(dropout(x)))`).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>, base: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Lora(a) => base + a.forward(x),
        }
    }

    /// As [`Adapter::forward`] in a mixed-precision layer: `x` is the input in its own dtype,
    /// `xc` the same input cast to the compute dtype `cd`, and `base` the base's `x·W` in `cd`
    /// without bias; the result is in `cd` (LoRA: [`LoraAdapter::forward_autocast`] added to
    /// `base`).
    pub fn forward_mixed<const D: usize>(
        &self,
        x: Tensor<B, D>,
        xc: Tensor<B, D>,
        base: Tensor<B, D>,
        cd: FloatDType,
    ) -> Tensor<B, D> {
        match self {
            Self::Lora(a) => base + a.forward_autocast(x, xc, cd),
        }
    }
}
