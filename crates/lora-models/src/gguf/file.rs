//! [`GgufFile`]: a parsed GGUF file in memory and its typed metadata and tensor accessors.
use super::dequant::{dequantize_q4_0, dequantize_q4_1, dequantize_q8_0, par_blocks};
use super::types::{
    ggml_type_name, GgufTensorInfo, GgufValue, GGML_TYPE_BF16, GGML_TYPE_F16, GGML_TYPE_F32,
    GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q8_0,
};
use crate::ModelError;
use half::{bf16, f16};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A GGUF file held in memory: its metadata, tensor table and raw tensor bytes.
#[derive(Debug)]
pub struct GgufFile {
    pub(super) path: PathBuf,
    pub(super) version: u32,
    pub(super) metadata: BTreeMap<String, GgufValue>,
    pub(super) tensors: Vec<GgufTensorInfo>,
    pub(super) index: HashMap<String, usize>,
    /// Byte range of each tensor in `bytes` (known types only).
    pub(super) ranges: Vec<Option<(usize, usize)>>,
    pub(super) bytes: Vec<u8>,
    pub(super) data_start: usize,
}

impl GgufFile {
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
