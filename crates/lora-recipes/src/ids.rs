//! Token ids given in a file (the `logits` example's `--input-ids`), checked against a model.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use lora_models::st::StFile;
use std::path::Path;

use crate::AnyError;

/// Token ids read from a safetensors file.
#[derive(Debug, Clone, PartialEq)]
pub struct InputIds {
    /// Row-major ids, `[batch * seq]`.
    pub ids: Vec<i64>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq: usize,
}

impl InputIds {
    /// Reads the integer tensor `input_ids` (I64 or I32) `[batch, seq]` of `path`.
    ///
    /// # Errors
    /// The file's read errors; a message naming the file when the shape is not `[batch, seq]`
    /// with both ≥ 1.
    pub fn read(path: &Path) -> Result<Self, AnyError> {
        let st = StFile::open(path)?;
        let (ids, shape) = st.i64("input_ids")?;
        if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
            return Err(format!(
                "{}: `input_ids` has shape {shape:?}, expected [batch, seq] with both ≥ 1",
                path.display()
            )
            .into());
        }
        Ok(Self {
            ids,
            batch: shape[0],
            seq: shape[1],
        })
    }

    /// Checks every id against the vocabulary size `vocab`, and the length against
    /// `max_positions` when the model has one (GPT-2's `n_positions`); `path` names the file
    /// in the errors.
    ///
    /// # Errors
    /// A message naming the file and the first id outside `[0, vocab)`, or the length.
    pub fn check(
        &self,
        path: &Path,
        vocab: usize,
        max_positions: Option<usize>,
    ) -> Result<(), AnyError> {
        if let Some(bad) = self.ids.iter().find(|&&i| i < 0 || i as usize >= vocab) {
            return Err(format!(
                "{}: `input_ids` holds {bad}, outside the vocabulary [0, {vocab})",
                path.display()
            )
            .into());
        }
        if let Some(n) = max_positions.filter(|&n| self.seq > n) {
            return Err(format!(
                "{}: `input_ids` has {} positions, more than this GPT-2's n_positions = {n}",
                path.display(),
                self.seq
            )
            .into());
        }
        Ok(())
    }

    /// The ids as an Int tensor `[batch, seq]` on `device`.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(
            TensorData::new(self.ids.clone(), [self.batch, self.seq]),
            device,
        )
    }
}
