//! safetensors: one writer and one float reader for the workspace.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::IoError;

/// One tensor to write: dtype, shape and little-endian bytes (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct StTensor {
    /// safetensors dtype of `bytes`.
    pub dtype: Dtype,
    /// Shape; its product times the dtype's size must equal `bytes.len()`.
    pub shape: Vec<usize>,
    /// The data.
    pub bytes: Vec<u8>,
}

impl StTensor {
    /// An F32 tensor from `values` (row-major) and `shape`.
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The safetensors bytes of `tensors` (written in key order, as safetensors sorts them) with
/// optional `__metadata__` (`{"format": "pt"}` is what PyTorch's `save_file` writes and what
/// transformers and PEFT expect).
///
/// # Errors
/// [`IoError::SafeTensors`] when a shape does not match its byte count.
pub fn serialize_safetensors(
    tensors: &[(String, StTensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, IoError> {
    serialize(tensors, metadata, "<memory>")
}

fn serialize(
    tensors: &[(String, StTensor)],
    metadata: Option<HashMap<String, String>>,
    path: &str,
) -> Result<Vec<u8>, IoError> {
    let err = |e: safetensors::SafeTensorError| IoError::SafeTensors {
        path: path.to_string(),
        message: e.to_string(),
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map_err(|e| {
            IoError::SafeTensors {
                path: path.to_string(),
                message: format!("tensor `{name}`: {e}"),
            }
        })?;
        views.push((name.as_str(), view));
    }
    safetensors::serialize(views, metadata).map_err(err)
}

/// Writes `tensors` to the safetensors file `path` atomically ([`crate::atomic_write`]).
///
/// # Errors
/// [`IoError::SafeTensors`] (a shape that does not match its bytes), [`IoError::Io`].
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(String, StTensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), IoError> {
    let path = path.as_ref();
    let bytes = serialize(tensors, metadata, &path.display().to_string())?;
    crate::atomic_write(path, &bytes)?;
    Ok(())
}

/// The values of a safetensors tensor as f32: F32 as is, F16 and BF16 widened exactly.
/// `None` for any other dtype (the caller names the file and key in its error).
pub fn f32_values(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_widening() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let bf = half::bf16::from_f32(1.5).to_le_bytes().to_vec();
        let tensors = vec![
            ("a".to_string(), StTensor::f32(vec![2], &[0.25, -3.0])),
            (
                "b".to_string(),
                StTensor {
                    dtype: Dtype::BF16,
                    shape: vec![1],
                    bytes: bf,
                },
            ),
        ];
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(&p, &tensors, Some(meta)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(f32_values(&st.tensor("a").unwrap()).unwrap(), vec![0.25, -3.0]);
        assert_eq!(f32_values(&st.tensor("b").unwrap()).unwrap(), vec![1.5]);
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(md.metadata().as_ref().unwrap()["format"], "pt");
    }

    #[test]
    fn bad_shape_names_file_and_tensor() {
        let t = vec![("w".to_string(), StTensor::f32(vec![3], &[1.0]))];
        let e = write_safetensors("/tmp/x-lora-io.safetensors", &t, None).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("x-lora-io.safetensors") && m.contains("`w`"), "{m}");
    }
}
