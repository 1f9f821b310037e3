//! The serialized tensors of a bitsandbytes state dict ([`BnbTensor`]) and the typed reads of
//! its entries (a missing or mistyped entry is a [`QuantError::Format`] naming the key).

use crate::QuantError;

/// The data of one serialized tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum BnbData {
    /// U8 values.
    U8(Vec<u8>),
    /// I8 values (the int8 `CB` codes).
    I8(Vec<i8>),
    /// F32 values.
    F32(Vec<f32>),
}

/// One serialized tensor: shape and data.
#[derive(Debug, Clone, PartialEq)]
pub struct BnbTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: BnbData,
}

impl BnbTensor {
    /// Bytes of the stored data (1 per U8/I8 value, 4 per F32 value).
    pub fn nbytes(&self) -> usize {
        match &self.data {
            BnbData::U8(v) => v.len(),
            BnbData::I8(v) => v.len(),
            BnbData::F32(v) => 4 * v.len(),
        }
    }

    /// The safetensors dtype name (`"U8"`, `"I8"`, `"F32"`).
    pub fn dtype_name(&self) -> &'static str {
        match &self.data {
            BnbData::U8(_) => "U8",
            BnbData::I8(_) => "I8",
            BnbData::F32(_) => "F32",
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.data {
            BnbData::U8(v) => v.len(),
            BnbData::I8(v) => v.len(),
            BnbData::F32(v) => v.len(),
        }
    }

    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn u8(shape: Vec<usize>, v: Vec<u8>) -> Self {
        Self {
            shape,
            data: BnbData::U8(v),
        }
    }
    pub(super) fn f32(v: Vec<f32>) -> Self {
        Self {
            shape: vec![v.len()],
            data: BnbData::F32(v),
        }
    }
}

pub(super) fn fmt_err(key: &str, message: impl Into<String>) -> QuantError {
    QuantError::Format {
        key: key.to_string(),
        message: message.into(),
    }
}

pub(super) fn take_u8(key: &str, t: Option<BnbTensor>) -> Result<Vec<u8>, QuantError> {
    match t {
        Some(BnbTensor {
            data: BnbData::U8(v),
            ..
        }) => Ok(v),
        Some(t) => Err(fmt_err(
            key,
            format!("expected a U8 tensor, found {}", t.dtype_name()),
        )),
        None => Err(fmt_err(key, "missing")),
    }
}

pub(super) fn take_f32(key: &str, t: Option<BnbTensor>) -> Result<Vec<f32>, QuantError> {
    match t {
        Some(BnbTensor {
            data: BnbData::F32(v),
            ..
        }) => Ok(v),
        Some(t) => Err(fmt_err(
            key,
            format!("expected an F32 tensor, found {}", t.dtype_name()),
        )),
        None => Err(fmt_err(key, "missing")),
    }
}
