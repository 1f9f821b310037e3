//! Normalisation layers: LayerNorm (GPT-2) and RMSNorm (Llama). Parameters are frozen.
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// LayerNorm over the last dimension: `(x − mean)/√(var + eps)·weight + bias`, biased variance
/// (PyTorch `nn.LayerNorm`). Parameters are frozen.
///
/// # Shapes
/// `x` `[batch, seq, d]` → `[batch, seq, d]`; `weight`, `bias` `[d]`.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale `[d]` (HF `…ln_*.weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Shift `[d]` (HF `…ln_*.bias`).
    pub bias: Param<Tensor<B, 1>>,
    /// Epsilon added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let xhat = (x - mean) * var.add_scalar(self.eps).sqrt().recip();
        xhat * self.weight.val().unsqueeze::<3>() + self.bias.val().unsqueeze::<3>()
    }
}

/// RMSNorm (transformers `LlamaRMSNorm`): `x · rsqrt(mean(x²) + eps) · weight` over the last
/// dimension.
///
/// # Shapes
/// `x` `[batch, seq, d]` → `[batch, seq, d]`; `weight` `[d]`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale `[d]`, frozen.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv = x
            .clone()
            .square()
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * inv * self.weight.val().unsqueeze::<3>()
    }
}
