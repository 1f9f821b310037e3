//! # lora-quant — bitsandbytes-exact quantization and a frozen 4-bit base for QLoRA
//!
//! Host-side codecs that reproduce bitsandbytes 0.50 (`bitsandbytes/functional.py`, the CPU backend
//! in `bitsandbytes/backends/{default,cpu}/ops.py` and `csrc/cpu_ops.cpp`) bit for bit:
//!
//! - [`nf4`]: 4-bit NormalFloat (Dettmers et al. 2023, "QLoRA", §3) — `quantize_4bit(quant_type="nf4")`
//!   and `dequantize_4bit`, with optional double quantization of the block absmax
//!   (`compress_statistics=True`, QLoRA §3 "Double Quantization").
//! - [`blockwise8`]: the signed 8-bit dynamic map (`create_dynamic_map`) and the blockwise 8-bit
//!   quantizer that double quantization uses (`quantize_blockwise`, CPU lookup-table rule), plus
//!   torch's CPU `mean` order for the double-quant offset.
//! - [`int8`]: LLM.int8 vector-wise (per-row absmax, `int8_vectorwise_quant`, Dettmers et al. 2022
//!   §3) and per-tensor absmax int8.
//! - [`bnb`]: the `save_pretrained` layout of a bitsandbytes `Linear4bit` weight
//!   (`weight`, `weight.absmax`, `weight.quant_map`, `weight.nested_absmax`, …).
//!
//! And frozen burn modules, generic over `B: Backend`, that `lora_core::LoraLinear` uses as its
//! quantized base (QLoRA = LoRA on a frozen quantized base; this crate does not depend on
//! `lora-core`):
//!
//! - [`QuantLinear`]: NF4 whose codes stay packed on the device (eight 4-bit codes per `I32`
//!   word) and are dequantized on the fly in `forward`; double-quantized statistics stay
//!   compressed on the device too.
//! - [`Int8Linear`]: LLM.int8 vector-wise (absmax per output row), four int8 codes per `I32` word.
//! - [`QuantBase`]: either of them; [`QuantKind`]: the scheme (`"nf4"`, `"nf4-dq"`, `"int8"`).
//!
//! [`QuantStats`] reports packed storage against f32 and the reconstruction error.
//!
//! Storage on the device: codes are `Int` tensors of dtype I32 on every backend — NdArray keeps
//! I32 storage (`NdArrayTensor::I32`) although its default int element is i64, and the CubeCL
//! backends (CUDA, wgpu) hold i32 natively — so a `[d_out, d_in]` NF4 weight takes `d_out·d_in/2`
//! bytes plus 4 bytes per block absmax (4.5 bits a parameter at blocksize 64; about 4.13 with
//! double quantization), and an int8 one `d_out·d_in` bytes plus 4 per row.

mod base;
pub mod blockwise8;
pub mod bnb;
#[cfg(feature = "cubecl")]
pub mod cube;
pub mod int8;
mod linear;
pub mod nf4;
mod stats;

pub use base::{QuantBase, QuantKind};
pub use blockwise8::{
    create_dynamic_map, dequantize_blockwise_8bit, quantize_blockwise_8bit, torch_cpu_mean,
};
pub use int8::{quantize_int8_per_tensor, quantize_int8_vectorwise, Int8Tensor};
pub use linear::{
    Int8Linear, NestedAbsmax, Nf4Scales, QuantLinear, BYTES_PER_WORD, NIBBLES_PER_WORD,
};
pub use nf4::{
    dequantize_nf4, quantize_nf4, quantize_nf4_shaped, Absmax, DoubleQuant, Nf4Tensor, BLOCKSIZES,
    DOUBLE_QUANT_BLOCKSIZE, NF4_CODE,
};
pub use stats::{error_stats, QuantStats};

/// Errors of the quantizers and the quantized layers.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuantError {
    /// A block size bitsandbytes does not accept (`quantize_4bit` raises
    /// `ValueError("invalid blocksize …")` outside 32, 64, …, 4096).
    #[error("invalid blocksize {blocksize} for {what}: expected one of {allowed:?}")]
    BadBlocksize {
        /// What was being quantized (for example `"nf4"`).
        what: &'static str,
        /// The block size that was given.
        blocksize: usize,
        /// The accepted block sizes.
        allowed: &'static [usize],
    },
    /// An input with no elements.
    #[error("{0}: empty tensor (0 elements), nothing to quantize")]
    Empty(String),
    /// A NaN or infinite input value (bitsandbytes would write meaningless codes).
    #[error("{what}: non-finite value {value} at flat index {index}")]
    NonFinite {
        /// Which tensor.
        what: String,
        /// Flat (row-major) index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A shape that does not fit the data or the layer.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which tensor.
        what: String,
        /// The shape (or length) needed.
        expected: Vec<usize>,
        /// The shape (or length) given.
        got: Vec<usize>,
    },
    /// A malformed serialized quantization state (key, and what is wrong with it).
    #[error("bitsandbytes state `{key}`: {message}")]
    Format {
        /// The state-dict key (for example `weight.quant_state.bitsandbytes__nf4`).
        key: String,
        /// What was expected.
        message: String,
    },
    /// A quantization scheme name other than `nf4`, `nf4-dq` and `int8`.
    #[error("unknown quantization {0:?}: expected one of \"nf4\", \"nf4-dq\", \"int8\"")]
    UnknownKind(String),
}

/// Checks that `values` is non-empty and finite; `what` names the tensor in the error.
pub(crate) fn check_values(values: &[f32], what: &str) -> Result<(), QuantError> {
    if values.is_empty() {
        return Err(QuantError::Empty(what.to_string()));
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(QuantError::NonFinite {
            what: what.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

/// Checks that `shape` multiplies out to `len`.
pub(crate) fn check_shape(shape: &[usize], len: usize, what: &str) -> Result<(), QuantError> {
    let n: usize = shape.iter().product();
    if shape.is_empty() || n != len {
        return Err(QuantError::Shape {
            what: format!("{what} (shape vs number of values)"),
            expected: vec![len],
            got: shape.to_vec(),
        });
    }
    Ok(())
}
