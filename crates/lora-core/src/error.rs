//! The errors of the layer crate.

use burn::tensor::FloatDType;
use lora_quant::QuantError;

/// Errors of the LoRA layer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoraError {
    /// `r` must be at least 1 (PEFT raises `ValueError` for `r <= 0`).
    #[error("invalid LoRA rank r = {0}: r must be a positive integer")]
    ZeroRank(usize),
    /// `lora_dropout` must be a probability in `[0, 1)`.
    #[error("invalid lora_dropout = {0}: expected a probability in [0, 1)")]
    BadDropout(f64),
    /// A tensor had a shape other than the one the layer needs.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which tensor (for example `lora_A` of `transformer.h.0.attn.c_attn`).
        what: String,
        /// The shape the layer needs.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// Merge asked of a layer without an adapter, or unmerge of a layer that is not merged;
    /// quantizing a layer that is already quantized or whose base is trainable.
    #[error("{0}")]
    State(String),
    /// Quantizing (or requantizing, on merge) the base weight failed: a non-finite value, a bad
    /// block size, unreadable tensor data.
    #[error("quantization: {0}")]
    Quant(#[from] QuantError),
    /// The backend cannot hold tensors of the requested compute dtype (for example bf16 or f16
    /// on burn's NdArray CPU backend, whose `dtype_usage` lists neither).
    #[error(
        "compute dtype {dtype:?} is not supported by the {backend} backend; use f32 there, or \
         a GPU backend (cuda, wgpu) for bf16/f16"
    )]
    UnsupportedDtype {
        /// The dtype asked for.
        dtype: FloatDType,
        /// The backend's name (`Backend::name`).
        backend: String,
    },
    /// A `--precision` value other than `f32`, `bf16` and `f16`.
    #[error("unknown precision {0:?}: expected one of \"f32\", \"bf16\", \"f16\"")]
    UnknownPrecision(String),
    /// A bottleneck adapter (AdapterHub `Adapter`) refused a size, factor or slot.
    #[error("bottleneck adapter: {0}")]
    Bottleneck(String),
}
