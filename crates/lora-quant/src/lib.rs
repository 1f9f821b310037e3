#![doc = include_str!("../README.md")]
//!
//! ## Overview
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
//! - [`convert`]: whole safetensors files ↔ that layout (the `quantize` example).
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
pub mod convert;
#[cfg(feature = "cubecl")]
pub mod cube;
mod error;
pub mod int8;
mod linear;
pub mod nf4;
mod stats;

pub use base::{QuantBase, QuantKind};
pub use blockwise8::{
    create_dynamic_map, dequantize_blockwise_8bit, quantize_blockwise_8bit, torch_cpu_mean,
};
pub use error::QuantError;
pub(crate) use error::{check_shape, check_values};
pub use int8::{quantize_int8_per_tensor, quantize_int8_vectorwise, Int8Tensor};
pub use linear::{
    Int8Linear, NestedAbsmax, Nf4Scales, QuantLinear, BYTES_PER_WORD, NIBBLES_PER_WORD,
};
pub use nf4::{
    dequantize_nf4, quantize_nf4, quantize_nf4_shaped, Absmax, DoubleQuant, Nf4Tensor, BLOCKSIZES,
    DOUBLE_QUANT_BLOCKSIZE, NF4_CODE,
};
pub use stats::{error_stats, QuantStats};
