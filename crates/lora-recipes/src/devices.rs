//! The devices of a data-parallel run (`--devices`) and the split of a batch across them.

use burn::tensor::backend::{Backend, Device, DeviceId, DeviceOps};
use lora_data::imdb::Batch;

use crate::AnyError;

/// `n` devices of `first`'s kind, indices `first`'s index onward (GPU backends: devices
/// 0 to n−1 from the default device; the CPU backend has one device, repeated `n` times).
pub fn train_devices<B: Backend>(first: &B::Device, n: usize) -> Vec<B::Device> {
    let id = first.id();
    (0..n)
        .map(|k| {
            let index = id.index_id as usize + k;
            B::Device::from_id(DeviceId::new(
                id.type_id,
                index.min(u16::MAX as usize) as u16,
            ))
        })
        .collect()
}

/// Checks that every training batch has a row for each of `devices` devices (the last batch
/// of a data set may be smaller than `--batch-size`).
///
/// # Errors
/// Naming the smallest batch, `--devices` and the number of training reviews.
pub fn check_shardable(batches: &[Batch], devices: usize, reviews: usize) -> Result<(), AnyError> {
    match batches.iter().map(|b| b.batch).min() {
        Some(rows) if rows < devices => Err(format!(
            "a training batch of {rows} rows (the last of {reviews} training reviews) cannot be \
             split across --devices {devices}: train on a multiple of --batch-size reviews"
        )
        .into()),
        _ => Ok(()),
    }
}

/// [`Batch::split_rows`] with its error as text, for the training loop.
pub fn split_batch(b: &Batch, n: usize) -> Result<Vec<Batch>, String> {
    b.split_rows(n).map_err(|e| e.to_string())
}
