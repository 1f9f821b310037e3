use crate::{
    NdArray, NdArrayTensor, SharedArray,
    element::{FloatNdArrayElement, IntNdArrayElement, QuantElement},
    execute_with_float_dtype, execute_with_numeric_dtype,
    ops::NdArrayMathOps,
};
use burn_backend::{ElementConversion, TensorMetadata, ops::ActivationOps, tensor::FloatTensor};

impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> ActivationOps<Self>
    for NdArray<E, I, Q>
where
    NdArrayTensor: From<SharedArray<E>>,
    NdArrayTensor: From<SharedArray<I>>,
{
    fn relu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        execute_with_numeric_dtype!(tensor, |array| NdArrayMathOps::clamp_min(array, 0.elem()))
    }

    /// lora-burn patch (vendor/PATCHES.md): one pass of `1 / (1 + e^-x)` in the tensor's own dtype. The
    /// default (burn-backend's `ActivationOps::sigmoid`) makes six passes through f32, and SiLU
    /// calls it in every Llama MLP. Large arrays are split over threads (`par_elementwise.rs`).
    fn sigmoid(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        execute_with_float_dtype!(tensor, FloatElem, |array: SharedArray<FloatElem>| {
            super::par_elementwise::par_map(array, |a: FloatElem| 1.0 / (1.0 + (-a).exp()))
        })
    }
}
