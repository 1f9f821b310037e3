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
//! file size before use, so bad bytes give a [`ModelError::Format`], never a panic.
use crate::ModelError;
use half::{bf16, f16};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Default alignment of the tensor data section when `general.alignment` is absent (bytes).
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;

/// ggml type id of f32 tensors.
pub const GGML_TYPE_F32: u32 = 0;
/// ggml type id of f16 tensors.
pub const GGML_TYPE_F16: u32 = 1;
/// ggml type id of Q4_0 tensors (see [`dequantize_q4_0`]).
pub const GGML_TYPE_Q4_0: u32 = 2;
/// ggml type id of Q4_1 tensors (see [`dequantize_q4_1`]).
pub const GGML_TYPE_Q4_1: u32 = 3;
/// ggml type id of Q8_0 tensors (see [`dequantize_q8_0`]).
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
    fn as_int(&self) -> Option<i128> {
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

/// A GGUF file held in memory: its metadata, tensor table and raw tensor bytes.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    /// Byte range of each tensor in `bytes` (known types only).
    ranges: Vec<Option<(usize, usize)>>,
    bytes: Vec<u8>,
    data_start: usize,
}

/// Cursor over the file bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

/// Arrays nested deeper than this are refused (llama.cpp writes none deeper than 1).
const MAX_ARRAY_DEPTH: usize = 8;

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::format(self.path, msg)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            self.err(format!(
                "truncated GGUF file: needs {n} more bytes at offset {} for {what}, file is {} bytes",
                self.pos,
                self.buf.len()
            ))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A count read from the file, refused if `count * min_bytes` exceeds what is left.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize, ModelError> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_bytes.max(1)))
            .is_some_and(|b| b <= self.remaining());
        if !fits {
            return Err(self.err(format!(
                "truncated or corrupt GGUF file: {what} = {n} at offset {at} needs at least \
                 {min_bytes} bytes each but only {} bytes remain",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.count(1, &format!("length of {what}"))?;
        let at = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.err(format!("{what} at offset {at} is not valid UTF-8: {e}")))
    }

    /// Smallest encoded size of a value of type `ty` (to bound array counts).
    fn min_size(ty: u32) -> usize {
        match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            _ => 1,
        }
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue, ModelError> {
        let what = || format!("value of `{key}`");
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.arr(&what())?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.arr(&what())?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr(&what())?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr(&what())?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.arr(&what())?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr(&what())?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr(&what())?)),
            7 => {
                let at = self.pos;
                match self.arr::<1>(&what())?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => {
                        return Err(self.err(format!(
                            "bool value of `{key}` at offset {at} is {b}, expected 0 or 1"
                        )))
                    }
                }
            }
            8 => GgufValue::String(self.string(&what())?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "array value of `{key}` is nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let at = self.pos;
                let elem = self.u32(&format!("array element type of `{key}`"))?;
                if elem > 12 {
                    return Err(self.err(format!(
                        "array `{key}` at offset {at} has unknown element type {elem} \
                         (GGUF value types are 0..=12)"
                    )));
                }
                let n = self.count(Self::min_size(elem), &format!("length of array `{key}`"))?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(elem, key, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.arr(&what())?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr(&what())?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr(&what())?)),
            other => {
                return Err(self.err(format!(
                    "metadata key `{key}` has unknown value type {other} (GGUF value types are \
                     0..=12)"
                )))
            }
        })
    }
}

impl GgufFile {
    /// Reads and parses a whole GGUF v2/v3 file (metadata, tensor table, and the tensor bytes,
    /// kept in memory).
    ///
    /// # Errors
    /// [`ModelError::Io`] if the file cannot be read; [`ModelError::Format`] naming the file for
    /// a bad magic, an unsupported version (1, big-endian, or unknown), an unknown metadata value
    /// type, invalid UTF-8, a duplicate key or tensor name, a tensor with more than 4 dimensions
    /// or a first dimension not a multiple of its block size, a misaligned tensor offset, or a
    /// file truncated anywhere (header or tensor data); [`ModelError::Config`] if
    /// `general.alignment` is not a positive power of two.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, ModelError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes already in memory; `path` is only used in error messages.
    ///
    /// # Errors
    /// As [`GgufFile::open`], without [`ModelError::Io`].
    pub fn parse(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile, ModelError> {
        let path = path.into();
        let mut r = Reader {
            buf: &bytes,
            pos: 0,
            path: &path,
        };
        let magic = r.arr::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(r.err(format!(
                "bad magic {magic:?} (\"{}\"), expected \"GGUF\": not a GGUF file",
                String::from_utf8_lossy(&magic).escape_debug()
            )));
        }
        let version = r.u32("version")?;
        match version {
            2 | 3 => {}
            1 => return Err(r.err("GGUF version 1 is not supported (only 2 and 3)")),
            v if v.swap_bytes() <= 3 => {
                return Err(r.err(format!(
                    "GGUF version field is {v:#x}: a big-endian GGUF file, not supported"
                )))
            }
            v => return Err(r.err(format!("unsupported GGUF version {v}, expected 2 or 3"))),
        }
        // Each tensor info takes at least 8+4+4+8 bytes, each KV at least 8+4+1.
        let tensor_count_raw = r.u64("tensor_count")?;
        let kv_count = r.count(13, "kv_count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key #{i}"))?;
            let ty = r.u32(&format!("value type of `{key}`"))?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.err(format!("duplicate metadata key `{key}`")));
            }
        }
        let tensor_count = usize::try_from(tensor_count_raw)
            .ok()
            .filter(|&n| n.checked_mul(24).is_some_and(|b| b <= r.remaining()))
            .ok_or_else(|| {
                r.err(format!(
                    "truncated or corrupt GGUF file: tensor_count = {tensor_count_raw} but only \
                     {} bytes remain after the metadata",
                    r.remaining()
                ))
            })?;
        let mut tensors = Vec::with_capacity(tensor_count);
        let mut index = HashMap::with_capacity(tensor_count);
        for i in 0..tensor_count {
            let name = r.string(&format!("name of tensor #{i}"))?;
            let n_dims = r.u32(&format!("n_dims of tensor `{name}`"))?;
            if n_dims > 4 {
                return Err(r.err(format!(
                    "tensor `{name}` has {n_dims} dimensions, GGUF allows at most 4"
                )));
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = r.u64(&format!("dimensions of tensor `{name}`"))?;
                let d = usize::try_from(d)
                    .map_err(|_| r.err(format!("tensor `{name}` has dimension {d}, too large")))?;
                ne.push(d);
            }
            let ggml_type = r.u32(&format!("type of tensor `{name}`"))?;
            let offset = r.u64(&format!("offset of tensor `{name}`"))?;
            let shape: Vec<usize> = ne.iter().rev().copied().collect();
            if index.insert(name.clone(), i).is_some() {
                return Err(r.err(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(GgufTensorInfo {
                name,
                shape,
                ggml_type,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => GGUF_DEFAULT_ALIGNMENT,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && (a as u128).is_power_of_two() && a <= u32::MAX as i128 => {
                    a as u64
                }
                _ => {
                    return Err(ModelError::Config {
                        path,
                        key: "general.alignment".into(),
                        msg: format!("{v:?}: expected a positive power of two (u32)"),
                    })
                }
            },
        };
        let header_end = r.pos as u64;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let data_len = (bytes.len() as u64).saturating_sub(data_start);
        let mut ranges = Vec::with_capacity(tensors.len());
        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(ModelError::format(
                    &path,
                    format!(
                        "tensor `{}` has offset {} not a multiple of the alignment {alignment}",
                        t.name, t.offset
                    ),
                ));
            }
            let Some((tname, block, block_bytes)) = ggml_type_layout(t.ggml_type) else {
                ranges.push(None);
                continue;
            };
            let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let first = t.shape.last().copied().unwrap_or(1);
            let size = match n {
                Some(n) if first % block == 0 => (n / block).checked_mul(block_bytes),
                Some(_) => {
                    return Err(ModelError::format(
                        &path,
                        format!(
                            "tensor `{}` of type {tname} has first dimension ne[0] = {first}, \
                             not a multiple of its block size {block}",
                            t.name
                        ),
                    ))
                }
                None => None,
            };
            match size.and_then(|s| Some((s, (s as u64).checked_add(t.offset)?))) {
                Some((size, end)) if end <= data_len => {
                    // In bounds of `bytes`, so these fit a usize.
                    let start = (data_start + t.offset) as usize;
                    ranges.push(Some((start, start + size)));
                }
                _ => {
                    return Err(ModelError::format(
                        &path,
                        format!(
                            "truncated GGUF file: tensor `{}` ({tname}, shape {:?}) needs {} bytes \
                             at data offset {} but the data section is {data_len} bytes",
                            t.name,
                            t.shape,
                            size.map_or("too many".to_string(), |s| s.to_string()),
                            t.offset
                        ),
                    ))
                }
            }
        }
        Ok(GgufFile {
            path,
            version,
            metadata,
            tensors,
            index,
            ranges,
            bytes,
            data_start: data_start as usize,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Byte offset of the tensor data section in the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// All metadata key/value pairs, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// Metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&GgufValue, ModelError> {
        self.metadata
            .get(key)
            .ok_or_else(|| ModelError::MissingKey {
                path: self.path.clone(),
                key: key.into(),
            })
    }

    fn bad(&self, key: &str, msg: String) -> ModelError {
        ModelError::Config {
            path: self.path.clone(),
            key: key.into(),
            msg,
        }
    }

    /// Metadata `key` as a u64; any integer type is accepted.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Config`] if not an integer or negative.
    pub fn get_u64(&self, key: &str) -> Result<u64, ModelError> {
        let v = self.require(key)?;
        match v.as_int() {
            Some(i) if i >= 0 => Ok(i as u64),
            Some(i) => Err(self.bad(key, format!("is {i}, expected a non-negative integer"))),
            None => Err(self.bad(
                key,
                format!("is a {} ({v:?}), expected an integer", v.type_name()),
            )),
        }
    }

    /// Metadata `key` as an f32; f32 and f64 values are accepted (f64 is rounded).
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Config`] if another type.
    pub fn get_f32(&self, key: &str) -> Result<f32, ModelError> {
        match self.require(key)? {
            GgufValue::F32(x) => Ok(*x),
            GgufValue::F64(x) => Ok(*x as f32),
            v => Err(self.bad(
                key,
                format!("is a {} ({v:?}), expected f32 or f64", v.type_name()),
            )),
        }
    }

    /// Metadata `key` as a bool.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Config`] if another type.
    pub fn get_bool(&self, key: &str) -> Result<bool, ModelError> {
        match self.require(key)? {
            GgufValue::Bool(b) => Ok(*b),
            v => Err(self.bad(
                key,
                format!("is a {} ({v:?}), expected bool", v.type_name()),
            )),
        }
    }

    /// Metadata `key` as a string.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Config`] if another type.
    pub fn get_str(&self, key: &str) -> Result<&str, ModelError> {
        match self.require(key)? {
            GgufValue::String(s) => Ok(s),
            v => Err(self.bad(key, format!("is a {}, expected string", v.type_name()))),
        }
    }

    /// Metadata `key` as an array of strings (e.g. `tokenizer.ggml.tokens`).
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Config`] if not an array, or an
    /// element is not a string (naming its index).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<String>, ModelError> {
        match self.require(key)? {
            GgufValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    GgufValue::String(s) => Ok(s.clone()),
                    v => Err(self.bad(
                        key,
                        format!("element {i} is a {}, expected string", v.type_name()),
                    )),
                })
                .collect(),
            v => Err(self.bad(
                key,
                format!("is a {}, expected an array of strings", v.type_name()),
            )),
        }
    }

    /// Metadata `key` as an array of integers (any integer element type, e.g. the i32
    /// `tokenizer.ggml.token_type`).
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Config`] if not an array, or an
    /// element is not an integer or does not fit an i64.
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>, ModelError> {
        match self.require(key)? {
            GgufValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_int()
                        .and_then(|x| i64::try_from(x).ok())
                        .ok_or_else(|| {
                            self.bad(key, format!("element {i} is {v:?}, expected an integer"))
                        })
                })
                .collect(),
            v => Err(self.bad(
                key,
                format!("is a {}, expected an array of integers", v.type_name()),
            )),
        }
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// Info of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Raw bytes of tensor `name` (ggml layout of its type) and its info.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Dtype`] if its ggml type is one whose
    /// size is unknown (so its bytes cannot be located).
    pub fn tensor_bytes(&self, name: &str) -> Result<(&[u8], &GgufTensorInfo), ModelError> {
        let &i = self.index.get(name).ok_or_else(|| ModelError::MissingKey {
            path: self.path.clone(),
            key: name.into(),
        })?;
        let info = &self.tensors[i];
        match self.ranges[i] {
            Some((s, e)) => Ok((&self.bytes[s..e], info)),
            None => Err(ModelError::Dtype {
                path: self.path.clone(),
                key: name.into(),
                dtype: ggml_type_name(info.ggml_type),
            }),
        }
    }

    /// Tensor `name` dequantized to f32 values (row-major) with its shape in PyTorch order.
    /// Supported ggml types: F32 (0), F16 (1), Q4_0 (2), Q4_1 (3), Q8_0 (8), BF16 (30); values
    /// equal gguf-py's `gguf.quants.dequantize`. Large tensors are converted on several threads.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if absent; [`ModelError::Dtype`] naming the tensor and its type
    /// for any other ggml type.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let (bytes, info) = self.tensor_bytes(name)?;
        let n = info.n_elements();
        let vals = match info.ggml_type {
            GGML_TYPE_F32 => par_blocks(bytes, n, 4, 1, |b, o| {
                o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }),
            GGML_TYPE_F16 => par_blocks(bytes, n, 2, 1, |b, o| {
                o[0] = f16::from_le_bytes([b[0], b[1]]).to_f32()
            }),
            GGML_TYPE_BF16 => par_blocks(bytes, n, 2, 1, |b, o| {
                o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()
            }),
            GGML_TYPE_Q4_0 => dequantize_q4_0(bytes, n),
            GGML_TYPE_Q4_1 => dequantize_q4_1(bytes, n),
            GGML_TYPE_Q8_0 => dequantize_q8_0(bytes, n),
            t => {
                return Err(ModelError::Dtype {
                    path: self.path.clone(),
                    key: name.into(),
                    dtype: format!(
                        "{} (ggml type {t}; supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)",
                        ggml_type_name(t)
                    ),
                })
            }
        };
        Ok((vals, info.shape.clone()))
    }
}

/// Converts `n` values held in blocks of `in_block` bytes → `out_block` f32s each, splitting the
/// work over up to 8 threads when `n` is large. Panics if `bytes` is shorter than needed or
/// `n` is not a multiple of `out_block` (callers check).
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; MSRV is 1.85
fn par_blocks<F>(bytes: &[u8], n: usize, in_block: usize, out_block: usize, f: F) -> Vec<f32>
where
    F: Fn(&[u8], &mut [f32]) + Sync,
{
    assert!(
        n % out_block == 0,
        "{n} values is not a whole number of {out_block}-value blocks"
    );
    let blocks = n / out_block;
    assert!(
        bytes.len() >= blocks * in_block,
        "{} bytes hold fewer than {blocks} blocks of {in_block} bytes",
        bytes.len()
    );
    let bytes = &bytes[..blocks * in_block];
    let mut out = vec![0f32; n];
    let run = |src: &[u8], dst: &mut [f32]| {
        for (b, o) in src
            .chunks_exact(in_block)
            .zip(dst.chunks_exact_mut(out_block))
        {
            f(b, o);
        }
    };
    let threads = if n >= 1 << 16 {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(8)
    } else {
        1
    };
    if threads <= 1 {
        run(bytes, &mut out);
    } else {
        let per = blocks.div_ceil(threads);
        std::thread::scope(|s| {
            for (src, dst) in bytes
                .chunks(per * in_block)
                .zip(out.chunks_mut(per * out_block))
            {
                s.spawn(move || run(src, dst));
            }
        });
    }
    out
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` values (a multiple of 32) of ggml Q4_0 to f32.
///
/// Block of 18 bytes per 32 values: f16 `d` (little-endian), then 16 bytes `qs`. Value `j`
/// (0..16) is `((qs[j] & 0xF) - 8) * d`, value `j + 16` is `((qs[j] >> 4) - 8) * d`, computed in
/// f32 as ggml's `dequantize_row_q4_0` and gguf-py's `Q4_0.dequantize_blocks`.
///
/// # Panics
/// If `n` is not a multiple of 32 or `bytes` is shorter than `n / 32 * 18` (a caller's bug;
/// [`GgufFile::tensor_f32`] checks both first).
pub fn dequantize_q4_0(bytes: &[u8], n: usize) -> Vec<f32> {
    par_blocks(bytes, n, Q4_0_BLOCK_BYTES, QK, |b, o| {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            o[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
            o[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    })
}

/// Dequantizes `n` values (a multiple of 32) of ggml Q4_1 to f32.
///
/// Block of 20 bytes per 32 values: f16 scale `d`, f16 minimum `m` (little-endian), then 16
/// bytes `qs`. Value `j` (0..16) is `(qs[j] & 0xF) * d + m`, value `j + 16` is
/// `(qs[j] >> 4) * d + m`, in f32 with the product rounded before the sum, as gguf-py's
/// `Q4_1.dequantize_blocks` and ggml's `dequantize_row_q4_1`.
///
/// # Panics
/// If `n` is not a multiple of 32 or `bytes` is shorter than `n / 32 * 20` (a caller's bug;
/// [`GgufFile::tensor_f32`] checks both first).
pub fn dequantize_q4_1(bytes: &[u8], n: usize) -> Vec<f32> {
    par_blocks(bytes, n, Q4_1_BLOCK_BYTES, QK, |b, o| {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            o[j] = (qs[j] & 0xF) as f32 * d + m;
            o[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    })
}

/// Dequantizes `n` values (a multiple of 32) of ggml Q8_0 to f32.
///
/// Block of 34 bytes per 32 values: f16 scale `d` (little-endian), then 32 signed bytes `q`.
/// Value `j` is `q[j] * d` in f32, as ggml's `dequantize_row_q8_0` and gguf-py's
/// `Q8_0.dequantize_blocks`.
///
/// # Panics
/// If `n` is not a multiple of 32 or `bytes` is shorter than `n / 32 * 34` (a caller's bug;
/// [`GgufFile::tensor_f32`] checks both first).
pub fn dequantize_q8_0(bytes: &[u8], n: usize) -> Vec<f32> {
    par_blocks(bytes, n, Q8_0_BLOCK_BYTES, QK, |b, o| {
        let d = f16_at(b, 0);
        for (o, &q) in o.iter_mut().zip(&b[2..34]) {
            *o = (q as i8) as f32 * d;
        }
    })
}
