//! Reading float tensors from a `.safetensors` file (the `safetensors` crate) into burn.
use crate::ModelError;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// A safetensors file held in memory, read through the `safetensors` crate.
pub struct StFile {
    /// Where it came from (for error messages).
    pub path: PathBuf,
    bytes: Vec<u8>,
}

impl StFile {
    /// Reads the whole file.
    ///
    /// # Errors
    /// [`ModelError::Io`] if unreadable; [`ModelError::Format`] if the header does not parse
    /// (truncated or not safetensors).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref().to_path_buf();
        let bytes = lora_io::read_regular_file(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Takes safetensors bytes already in memory; `path` only names them in errors.
    ///
    /// # Errors
    /// [`ModelError::Format`] if the header does not parse (truncated or not safetensors).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let path = path.into();
        SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::format(&path, format!("not a valid safetensors file: {e}")))?;
        Ok(Self { path, bytes })
    }

    fn st(&self) -> SafeTensors<'_> {
        // Validated in `open`.
        SafeTensors::deserialize(&self.bytes).expect("validated at open")
    }

    /// Names of all tensors in the file.
    pub fn names(&self) -> Vec<String> {
        self.st()
            .names()
            .into_iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.st().tensor(key).is_ok()
    }

    /// Tensor `key` as f32 values (F32, F16 and BF16 are converted) with its shape.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`], [`ModelError::Dtype`].
    pub fn f32(&self, key: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let st = self.st();
        let view = st.tensor(key).map_err(|_| ModelError::MissingKey {
            path: self.path.clone(),
            key: key.into(),
        })?;
        let vals = lora_io::f32_values(&view).ok_or_else(|| ModelError::Dtype {
            path: self.path.clone(),
            key: key.into(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        Ok((vals, view.shape().to_vec()))
    }

    /// Tensor `key` as a burn f32 tensor of rank `D`, checking that its shape is `expected`.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`], [`ModelError::Dtype`], [`ModelError::Shape`].
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        key: &str,
        expected: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        let (vals, shape) = self.f32(key)?;
        if shape != expected {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                key: key.into(),
                expected: expected.to_vec(),
                got: shape,
            });
        }
        Ok(Tensor::from_data(TensorData::new(vals, expected), device))
    }

    /// Tensor `key` as I64 values with its shape (I64 and I32 accepted).
    ///
    /// # Errors
    /// [`ModelError::MissingKey`], [`ModelError::Dtype`].
    pub fn i64(&self, key: &str) -> Result<(Vec<i64>, Vec<usize>), ModelError> {
        let st = self.st();
        let view = st.tensor(key).map_err(|_| ModelError::MissingKey {
            path: self.path.clone(),
            key: key.into(),
        })?;
        let data = view.data();
        let vals = match view.dtype() {
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            other => {
                return Err(ModelError::Dtype {
                    path: self.path.clone(),
                    key: key.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok((vals, view.shape().to_vec()))
    }
}
