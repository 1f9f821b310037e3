//! MLP activations: GPT-2's tanh-approximated GELU and Llama's SwiGLU gate.
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (transformers `NewGELUActivation`).
///
/// # Shapes
/// Element-wise: any shape.
pub fn gelu_new<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const C: f64 = 0.797_884_560_802_865_4; // √(2/π)
    let inner = x.clone() * (x.clone().square().mul_scalar(0.044715).add_scalar(1.0)) * C;
    x * (inner.tanh().add_scalar(1.0)) * 0.5
}

/// SwiGLU gate (Shazeer 2020; transformers `LlamaMLP`): `silu(gate) · up`.
///
/// # Shapes
/// `gate`, `up` of one shape → that shape.
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}
