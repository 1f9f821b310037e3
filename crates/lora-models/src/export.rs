//! Writing Hugging Face checkpoints: tensors gathered as F32 and written through `lora-io`
//! (the workspace's one atomic writer and one safetensors writer), plus the row-major transpose
//! between PyTorch's `[out, in]` and [`lora_core::LoraLinear`]'s `[in, out]`.
use crate::ModelError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_io::{IoError, StTensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Tensors to be written into a safetensors file: (name, F32 tensor). The writer orders them.
pub(crate) type StTensors = Vec<(String, StTensor)>;

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub(crate) fn transpose_vec(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// A tensor's values as f32 (any float dtype is converted) with its shape.
///
/// # Errors
/// [`ModelError::Format`] naming `path` (the destination) if the values cannot be read back.
pub(crate) fn tensor_values<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    path: &Path,
) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
    let shape = t.dims().to_vec();
    let vals = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::format(path, format!("cannot read tensor values: {e:?}")))?;
    Ok((vals, shape))
}

/// Adds tensor `x` under `key` to `t` as F32 (`path` names the destination in errors).
pub(crate) fn put_tensor<B: Backend, const D: usize>(
    t: &mut StTensors,
    key: &str,
    x: Tensor<B, D>,
    path: &Path,
) -> Result<(), ModelError> {
    let (v, s) = tensor_values(x, path)?;
    t.push((key.to_string(), StTensor::f32(s, &v)));
    Ok(())
}

/// A write error as [`ModelError::Write`], naming `path` once.
fn write_error(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Write {
        path: path.to_path_buf(),
        source: lora_io::without_path_prefix(path, source),
    }
}

/// `lora-io`'s error as a [`ModelError`] naming `path`.
fn io_error(path: &Path, e: IoError) -> ModelError {
    match e {
        IoError::Io(source) => write_error(path, source),
        IoError::SafeTensors { message, .. } => ModelError::format(path, message),
    }
}

/// Writes F32 tensors to a safetensors file atomically, with metadata `{"format": "pt"}` (what
/// transformers' `save_pretrained` writes).
///
/// # Errors
/// [`ModelError::Write`] if the file cannot be written, [`ModelError::Format`] if a shape does not
/// match its values.
pub(crate) fn save_safetensors(path: &Path, tensors: &StTensors) -> Result<(), ModelError> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    lora_io::write_safetensors(path, tensors, Some(meta)).map_err(|e| io_error(path, e))
}

/// Writes `config` as pretty JSON to `path` atomically.
///
/// # Errors
/// [`ModelError::Write`], or [`ModelError::Format`] if the value cannot be serialized.
pub(crate) fn save_json(path: &Path, config: &Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(config)
        .map_err(|e| ModelError::format(path, format!("cannot serialize JSON: {e}")))?;
    lora_io::atomic_write(path, text.as_bytes()).map_err(|source| write_error(path, source))
}

/// Creates `dir` (and parents) if needed.
///
/// # Errors
/// [`ModelError::Write`] naming `dir`.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| write_error(dir, source))
}

/// Writes one F32 tensor `name` (any float dtype is converted) to the safetensors file `path`
/// with metadata `{"format":"pt"}`, atomically (used to hand logits to transformers-side checks).
///
/// # Errors
/// [`ModelError::Write`] or [`ModelError::Format`] naming `path`.
pub fn write_f32_safetensors<B: Backend, const D: usize>(
    path: &Path,
    name: &str,
    t: Tensor<B, D>,
) -> Result<(), ModelError> {
    let mut tensors = StTensors::new();
    put_tensor(&mut tensors, name, t, path)?;
    save_safetensors(path, &tensors)
}
