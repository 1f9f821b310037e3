//! GGUF's type ids, block layouts, metadata values and tensor table entries.

/// Default alignment of the tensor data section when `general.alignment` is absent (bytes).
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;

/// ggml type id of f32 tensors.
pub const GGML_TYPE_F32: u32 = 0;
/// ggml type id of f16 tensors.
pub const GGML_TYPE_F16: u32 = 1;
/// ggml type id of Q4_0 tensors (see [`dequantize_q4_0`](super::dequantize_q4_0)).
pub const GGML_TYPE_Q4_0: u32 = 2;
/// ggml type id of Q4_1 tensors (see [`dequantize_q4_1`](super::dequantize_q4_1)).
pub const GGML_TYPE_Q4_1: u32 = 3;
/// ggml type id of Q8_0 tensors (see [`dequantize_q8_0`](super::dequantize_q8_0)).
pub const GGML_TYPE_Q8_0: u32 = 8;
/// ggml type id of bf16 tensors.
pub const GGML_TYPE_BF16: u32 = 30;

/// Elements per block of the Q4_0, Q4_1 and Q8_0 formats.
pub const QK: usize = 32;
/// Bytes per Q4_0 block: f16 scale + 16 bytes of nibbles.
pub const Q4_0_BLOCK_BYTES: usize = 18;
/// Bytes per Q4_1 block: f16 scale + f16 minimum + 16 bytes of nibbles.
pub const Q4_1_BLOCK_BYTES: usize = 20;
/// Bytes per Q8_0 block: f16 scale + 32 signed bytes.
pub const Q8_0_BLOCK_BYTES: usize = 34;

/// `(name, elements per block, bytes per block)` of a ggml type id, from gguf-py's
/// `GGML_QUANT_SIZES`; `None` for ids it does not list.
pub fn ggml_type_layout(ggml_type: u32) -> Option<(&'static str, usize, usize)> {
    Some(match ggml_type {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 40),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        _ => return None,
    })
}

/// Name of a ggml type id (`"Q4_1"`), or `"unknown(<id>)"`.
pub fn ggml_type_name(ggml_type: u32) -> String {
    match ggml_type_layout(ggml_type) {
        Some((name, _, _)) => name.to_string(),
        None => format!("unknown({ggml_type})"),
    }
}

/// One metadata value, as typed in the file (GGUF value types 0..=12).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8 (UTF-8).
    String(String),
    /// Type 9: elements all of one type.
    Array(Vec<GgufValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl GgufValue {
    /// The value as an i128 if it is any integer type, else `None`.
    pub(super) fn as_int(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v as i128,
            GgufValue::I8(v) => v as i128,
            GgufValue::U16(v) => v as i128,
            GgufValue::I16(v) => v as i128,
            GgufValue::U32(v) => v as i128,
            GgufValue::I32(v) => v as i128,
            GgufValue::U64(v) => v as i128,
            GgufValue::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// GGUF type name of the value (`"u32"`, `"string"`, `"array"`...), for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::F32(_) => "f32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F64(_) => "f64",
        }
    }
}

/// Where one tensor lies in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// Tensor name (`"blk.0.attn_q.weight"`).
    pub name: String,
    /// Shape in PyTorch order: the file's `ne` reversed (`ne = [in, out]` → `[out, in]`).
    pub shape: Vec<usize>,
    /// ggml type id (0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 30 BF16, ...; see [`ggml_type_name`]).
    pub ggml_type: u32,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Number of elements (product of the shape).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}
