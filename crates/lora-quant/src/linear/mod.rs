//! Frozen quantized linear bases for QLoRA, with the codes kept packed on the device:
//! [`QuantLinear`] (NF4, optionally with double-quantized block statistics) and [`Int8Linear`]
//! (LLM.int8 vector-wise).
//!
//! Storage choice (burn 0.21): codes are held as `Int` tensors of dtype **I32**, eight 4-bit codes
//! (NF4) or four 8-bit codes (int8, and the 8-bit absmax codes of double quantization) per word,
//! the first code in the most significant bits (word `j` = bytes `4j..4j+4` of bitsandbytes' packed
//! byte tensor, big-endian). I32 is an integer dtype every burn backend stores natively (NdArray
//! keeps `NdArrayTensor::I32` although its default `IntElem` is i64; the CubeCL backends, CUDA and
//! wgpu, hold i32 in 4 bytes), so the device holds exactly half a byte per NF4 code and one byte
//! per int8 code. U8 int tensors exist in burn 0.21 (NdArray `U8`, CubeCL `int_from_data` accepts
//! `DType::U8`) but the unpacking ops (shifts, masks, `select`) are not exercised on u8 across
//! backends (WGSL has no 8-bit integers), so I32 words are used everywhere. Unpacking is
//! `bitwise_right_shift_scalar` + `bitwise_and_scalar(mask)` (correct for the arithmetic shift of a
//! negative word because of the mask) followed by a `select` into a small f32 code table (the 16
//! NF4 values; the 256 values of the signed 8-bit dynamic map; or `byte as i8 as f32` for int8), so
//! the signs of int8 codes need no integer arithmetic.
//!
//! Nothing here is trainable: codes are `Int` tensors (no gradient can exist for them) and the
//!
//! Files: `packing` (words ↔ bytes, upload and read-back, unpacking on the device), `nf4`
//! ([`QuantLinear`] and its block scales), `int8` ([`Int8Linear`]).

mod int8;
mod nf4;
mod packing;

pub use int8::Int8Linear;
pub use nf4::{NestedAbsmax, Nf4Scales, QuantLinear};
pub(crate) use packing::read_f32;

/// 4-bit codes per I32 storage word.
pub const NIBBLES_PER_WORD: usize = 8;

/// 8-bit codes per I32 storage word.
pub const BYTES_PER_WORD: usize = 4;
