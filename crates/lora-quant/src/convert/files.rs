//! Reading the input safetensors file and writing the output one (through `lora_io`, atomically),
//! with the conversions between safetensors tensors and [`BnbTensor`]s.

use std::collections::HashMap;
use std::path::Path;

use lora_io::StTensor;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::report::TensorReport;
use super::{err, ConvertError};
use crate::bnb::{BnbData, BnbQuant, BnbTensor};

pub(super) fn display(p: &Path) -> String {
    p.display().to_string()
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, ConvertError> {
    lora_io::read_regular_file(path)
        .map_err(|e| ConvertError(format!("cannot read {}: {e}", display(path))))
}

pub(super) fn parse_st<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, ConvertError> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        ConvertError(format!(
            "{}: not a valid safetensors file (truncated or corrupt?): {e}",
            display(path)
        ))
    })
}

/// The `__metadata__` of the input file, carried over to the output.
pub(super) fn input_metadata(bytes: &[u8]) -> HashMap<String, String> {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}

pub(super) fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// The values of a floating tensor as f32 (F16 and BF16 widened exactly, F64 rounded to
/// nearest); `None` for any other dtype.
pub(super) fn to_f32(t: &TensorView<'_>) -> Option<Vec<f32>> {
    match t.dtype() {
        Dtype::F64 => Some(
            t.data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
        _ => lora_io::f32_values(t),
    }
}

/// `*` matches any run of characters; everything else literally.
pub(super) fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// A tensor written through unchanged (1-D tensors, and tensors not selected by `--tensors`):
/// its report row and its output entry.
pub(super) fn copy_unchanged(
    name: &str,
    t: &TensorView<'_>,
    reports: &mut Vec<TensorReport>,
    out: &mut Vec<(String, StTensor)>,
) {
    reports.push(TensorReport {
        name: name.to_string(),
        shape: t.shape().to_vec(),
        layout: "copied".into(),
        bytes_before: t.data().len(),
        bytes_after: t.data().len(),
        bits_per_param: None,
        error: None,
    });
    out.push((
        name.to_string(),
        StTensor {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            bytes: t.data().to_vec(),
        },
    ));
}

/// A bitsandbytes state-dict entry as a safetensors tensor.
pub(super) fn bnb_to_st(t: BnbTensor) -> StTensor {
    let (dtype, bytes) = match t.data {
        BnbData::U8(v) => (Dtype::U8, v),
        BnbData::I8(v) => (Dtype::I8, v.into_iter().map(|x| x as u8).collect()),
        BnbData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    StTensor {
        dtype,
        shape: t.shape,
        bytes,
    }
}

/// The tensor `k` of `st` as a [`BnbTensor`], `None` when the file has no such key.
///
/// # Errors
/// A dtype bitsandbytes does not store (only U8, I8, F32), naming `path` and `k`.
pub(super) fn st_to_bnb(
    path: &Path,
    st: &SafeTensors<'_>,
    k: &str,
) -> Result<Option<BnbTensor>, ConvertError> {
    let Ok(t) = st.tensor(k) else { return Ok(None) };
    let d = t.data();
    let data = match t.dtype() {
        Dtype::U8 => BnbData::U8(d.to_vec()),
        Dtype::I8 => BnbData::I8(d.iter().map(|&b| b as i8).collect()),
        Dtype::F32 => BnbData::F32(
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        other => {
            return err(format!(
                "{}: `{k}` has dtype {other:?}; bitsandbytes stores U8, I8 or F32 there",
                display(path)
            ))
        }
    };
    Ok(Some(BnbTensor {
        shape: t.shape().to_vec(),
        data,
    }))
}

/// The report name of a layout.
pub(super) fn layout_name(q: BnbQuant) -> &'static str {
    match q {
        BnbQuant::Nf4 {
            double_quant: true, ..
        } => "nf4-dq",
        BnbQuant::Nf4 { .. } => "nf4",
        BnbQuant::Int8 => "int8",
    }
}

/// Writes `tensors` to `path` atomically with the input's metadata (`format` defaults to `pt`);
/// returns the file's size in bytes.
pub(super) fn write_out(
    path: &Path,
    tensors: &[(String, StTensor)],
    mut metadata: HashMap<String, String>,
) -> Result<usize, ConvertError> {
    metadata
        .entry("format".into())
        .or_insert_with(|| "pt".into());
    let bytes = lora_io::serialize_safetensors(tensors, Some(metadata))
        .map_err(|e| ConvertError(format!("{}: cannot serialize: {e}", display(path))))?;
    lora_io::atomic_write(path, &bytes).map_err(|e| {
        let e = lora_io::without_path_prefix(path, e);
        ConvertError(format!("cannot write {}: {e}", display(path)))
    })?;
    Ok(bytes.len())
}
