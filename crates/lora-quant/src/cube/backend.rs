//! Which backends dequantize NF4 with the kernel: a backend-extension trait, as burn's
//! `examples/custom-cubecl-kernel` extends `Backend` with its fused kernel.
//!
//! [`Nf4DequantBackend`] is implemented with the kernel for every `CubeBackend` (CUDA, wgpu,
//! ROCm without fusion), for `Fusion<CubeBackend<CudaRuntime, f32, i32, u8>>` (feature
//! `cuda-base`) and for `Autodiff` of any implementor; its provided method is the burn-ops path,
//! so any other backend opts in with an empty `impl`. Code generic over
//! `B: Nf4DequantBackend` gets the kernel chosen at compile time.
//!
//! Trade-off: [`QuantLinear`] and every layer built on it are generic over plain
//! `B: Backend` in every crate of the workspace, and stable Rust has no specialization, so
//! [`QuantLinear::dequantize_weight`] cannot require the trait without adding the bound to every
//! model, tuner and training loop. It reaches the trait through [`try_dequantize_weight`], a
//! type-identity check of the backend (one `Any` comparison of a function pointer per listed
//! backend; no boxed values) over the four CUDA backend types this workspace trains on. A new
//! backend with a kernel implements the trait and is added to that list (`cuda.rs`).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::weight::dequantize_weight_cube;
use crate::linear::QuantLinear;
use crate::QuantError;

/// A backend with its own NF4 dequantization of a [`QuantLinear`] weight.
pub trait Nf4DequantBackend: Backend {
    /// The weight `[d_out, d_in]` F32, equal bit for bit to
    /// [`QuantLinear::dequantize_weight_ops`]. The provided method is that burn-ops path.
    ///
    /// # Errors
    /// A kernel implementation returns the launcher's [`QuantError`] when it rejects the layer's
    /// tensors (for example a dtype other than I32/F32); the caller then falls back to the
    /// burn-ops path.
    fn nf4_dequantize_weight(q: &QuantLinear<Self>) -> Result<Tensor<Self, 2>, QuantError> {
        Ok(q.dequantize_weight_ops())
    }
}

/// The kernel ([`dequantize_weight_cube`]): one launch, two with double quantization.
impl<R, F, I, BT> Nf4DequantBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn nf4_dequantize_weight(q: &QuantLinear<Self>) -> Result<Tensor<Self, 2>, QuantError> {
        dequantize_weight_cube(q)
    }
}

/// The inner backend's implementation on the inner layer; the weight is frozen, so the result
/// is a constant of the graph.
impl<B: Nf4DequantBackend, C: CheckpointStrategy> Nf4DequantBackend for Autodiff<B, C> {
    fn nf4_dequantize_weight(q: &QuantLinear<Self>) -> Result<Tensor<Self, 2>, QuantError> {
        B::nf4_dequantize_weight(&q.valid()).map(Tensor::from_inner)
    }
}

/// [`QuantLinear::dequantize_weight`] as the CubeCL kernel when `B` is one of the CUDA backends
/// of this build (feature `cuda-base`: `burn::backend::Cuda` with fusion, `CubeBackend<CudaRuntime,
/// f32, i32, u8>`, and `Autodiff` of either; the weight is frozen, so under autodiff the result is
/// a constant); `None` for any other backend, or when the kernel path rejects the layer's tensors
/// (a dtype other than I32/F32), so that the caller falls back to the burn-ops path.
pub fn try_dequantize_weight<B: Backend>(q: &QuantLinear<B>) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "cuda-base")]
    {
        super::cuda::kernel_for::<B>().and_then(|f| f(q).ok())
    }
    #[cfg(not(feature = "cuda-base"))]
    {
        let _ = q;
        None
    }
}
