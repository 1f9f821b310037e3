//! Reader for GGUF files (versions 2 and 3), the llama.cpp / ggml model format.
//!
//! Source: ggml's `docs/gguf.md` and gguf-py (`gguf/gguf_reader.py`, `gguf/quants.py`,
//! `gguf/constants.py` for the block sizes). Layout, all little-endian:
//!
//! ```text
//! magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//! kv_count × (gguf_string key, u32 value_type, value)
//! tensor_count × (gguf_string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset
//! ```
//!
//! A `gguf_string` is a u64 byte length followed by UTF-8 bytes. Value types: 0 u8, 1 i8, 2 u16,
//! 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (one byte), 8 string, 9 array (u32 element type, u64
//! count, elements), 10 u64, 11 i64, 12 f64. `ne` lists dimensions fastest-varying first (ggml
//! order); [`GgufTensorInfo::shape`] gives them reversed, in PyTorch / numpy order.
//!
//! The reader is written here rather than taken from crates.io: the GGUF crates there (`gguf`,
//! `gguf-rs`, `gguf-rs-lib`, `ggus`) read headers but none dequantizes Q4_1 / Q8_0, and the
//! format is small. Every length and count read from the file is bounds-checked against the
//! file size before use, so bad bytes give a [`crate::ModelError::Format`], never a panic.

mod dequant;
mod file;
mod reader;
mod types;

pub use dequant::{dequantize_q4_0, dequantize_q4_1, dequantize_q8_0};
pub use file::GgufFile;
pub use types::{
    ggml_type_layout, ggml_type_name, GgufTensorInfo, GgufValue, GGML_TYPE_BF16, GGML_TYPE_F16,
    GGML_TYPE_F32, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, GGUF_DEFAULT_ALIGNMENT,
    Q4_0_BLOCK_BYTES, Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK,
};
