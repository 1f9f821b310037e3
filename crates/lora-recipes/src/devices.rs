//! The devices of a data-parallel run (`--devices`) and the split of a batch across them.

use burn::tensor::backend::{Backend, Device, DeviceId, DeviceOps};
use lora_data::imdb::Batch;

use crate::AnyError;

/// `n` devices of `first`'s kind, indices `first`'s index onward (CUDA: devices 0 to n−1 from
/// the default device). The CPU backend has one device: it is repeated `n` times (one replica
/// per thread).
///
/// # Errors
/// Another backend whose device ids do not give `n` distinct devices (wgpu's default device is
/// one adapter whatever the index), naming `--devices`.
pub fn train_devices<B: Backend>(first: &B::Device, n: usize) -> Result<Vec<B::Device>, AnyError> {
    let id = first.id();
    let devices: Vec<B::Device> = (0..n)
        .map(|k| {
            let index = id.index_id as usize + k;
            B::Device::from_id(DeviceId::new(
                id.type_id,
                index.min(u16::MAX as usize) as u16,
            ))
        })
        .collect();
    let distinct = devices
        .iter()
        .enumerate()
        .all(|(i, d)| devices[..i].iter().all(|e| e != d));
    if !distinct && !B::name(first).contains("ndarray") {
        return Err(format!(
            "--devices {n}: the {} backend gives the same device {first:?} for every index, so \
             the replicas would share one device; use the CUDA backend for several GPUs",
            B::name(first)
        )
        .into());
    }
    Ok(devices)
}

/// Checks that every training batch splits into `devices` shards of equal rows (so that each
/// shard's mean loss weighs the same); the last batch of a data set may be smaller than
/// `--batch-size`.
///
/// # Errors
/// Naming the batch's rows, `--devices` and the flags that set the number of training reviews.
pub fn check_shardable(batches: &[Batch], devices: usize) -> Result<(), AnyError> {
    match batches
        .iter()
        .map(|b| b.batch)
        .find(|rows| rows % devices != 0)
    {
        Some(rows) => Err(format!(
            "a training batch of {rows} rows (the last, short one) does not split evenly across \
             --devices {devices}: train on a multiple of --batch-size × --devices reviews \
             (--steps × --batch-size × --grad-accum, or all of --data-path when it has fewer)"
        )
        .into()),
        None => Ok(()),
    }
}

/// [`Batch::split_rows`] with its error as text, for the training loop.
pub fn split_batch(b: &Batch, n: usize) -> Result<Vec<Batch>, String> {
    b.split_rows(n).map_err(|e| e.to_string())
}
