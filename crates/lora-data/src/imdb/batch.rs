//! Padded batches of token sequences, their tensors, and length bucketing.

use super::error::DataError;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One padded batch of token sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids, `[batch * seq]`, row-major (`input_ids[b * seq + t]`), right-padded with
    /// `pad_id`.
    pub input_ids: Vec<i64>,
    /// Number of real (non-pad) tokens of each row, `[batch]`, each in `1..=seq`.
    pub lengths: Vec<usize>,
    /// Class labels, `[batch]`.
    pub labels: Vec<i64>,
    /// Rows.
    pub batch: usize,
    /// Columns: the longest (truncated) sequence of this batch.
    pub seq: usize,
}

impl Batch {
    /// Total number of real tokens (sum of `lengths`).
    pub fn num_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// The batch as burn tensors on `device`: `input_ids` `[batch, seq]` Int and `labels`
    /// `[batch]` Int (converted to the backend's int dtype).
    pub fn to_tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 1, Int>) {
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(self.input_ids.clone(), [self.batch, self.seq]),
            device,
        );
        let labels = Tensor::<B, 1, Int>::from_data(
            TensorData::new(self.labels.clone(), [self.batch]),
            device,
        );
        (ids, labels)
    }

    /// The rows split into `parts` consecutive shards of `⌈batch / parts⌉` or `⌊batch / parts⌋`
    /// rows (the larger ones first), each keeping this batch's `seq` columns: one shard per
    /// device of a data-parallel step.
    ///
    /// Errors: [`DataError::Batch`] when `parts` is 0 or exceeds the rows.
    pub fn split_rows(&self, parts: usize) -> Result<Vec<Batch>, DataError> {
        if parts == 0 || parts > self.batch {
            return Err(DataError::Batch(format!(
                "a batch of {} rows cannot be split into {parts} shards (one per device)",
                self.batch
            )));
        }
        let (base, extra) = (self.batch / parts, self.batch % parts);
        let mut start = 0;
        Ok((0..parts)
            .map(|k| {
                let rows = base + usize::from(k < extra);
                let r = start..start + rows;
                start += rows;
                Batch {
                    input_ids: self.input_ids[r.start * self.seq..r.end * self.seq].to_vec(),
                    lengths: self.lengths[r.clone()].to_vec(),
                    labels: self.labels[r].to_vec(),
                    batch: rows,
                    seq: self.seq,
                }
            })
            .collect())
    }

    /// Real-token lengths as a `[batch]` Int tensor on `device` (e.g. to gather the last token).
    pub fn lengths_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        let l: Vec<i64> = self.lengths.iter().map(|&x| x as i64).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(l, [self.batch]), device)
    }
}

/// Groups tokenized examples into padded batches.
///
/// Order: example order, or a `ChaCha8Rng::seed_from_u64(seed)` shuffle when `shuffle_seed` is
/// `Some`. Consecutive groups of `batch_size` examples form a batch (the last one may be
/// smaller). Each sequence keeps its first `max_len` tokens and is right-padded with `pad_id`
/// to the longest sequence *of its batch* (not to `max_len`).
///
/// Errors: [`DataError::Batch`] if `token_ids` and `labels` differ in length, `batch_size` or
/// `max_len` is 0, or an example has no tokens (naming its index); [`DataError::Empty`] if
/// there are no examples.
pub fn make_batches(
    token_ids: &[Vec<u32>],
    labels: &[u8],
    batch_size: usize,
    max_len: usize,
    pad_id: u32,
    shuffle_seed: Option<u64>,
) -> Result<Vec<Batch>, DataError> {
    check_batch_args(token_ids, labels, batch_size, max_len)?;
    let mut order: Vec<usize> = (0..token_ids.len()).collect();
    if let Some(seed) = shuffle_seed {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    Ok(order
        .chunks(batch_size)
        .map(|idx| build_batch(idx, token_ids, labels, max_len, pad_id))
        .collect())
}

fn check_batch_args(
    token_ids: &[Vec<u32>],
    labels: &[u8],
    batch_size: usize,
    max_len: usize,
) -> Result<(), DataError> {
    if token_ids.len() != labels.len() {
        return Err(DataError::Batch(format!(
            "{} token sequences but {} labels",
            token_ids.len(),
            labels.len()
        )));
    }
    if batch_size == 0 || max_len == 0 {
        return Err(DataError::Batch(format!(
            "batch_size ({batch_size}) and max_len ({max_len}) must be at least 1"
        )));
    }
    if token_ids.is_empty() {
        return Err(DataError::Empty {
            what: "make_batches input".into(),
        });
    }
    if let Some(i) = token_ids.iter().position(|t| t.is_empty()) {
        return Err(DataError::Batch(format!("example {i} has no tokens")));
    }
    Ok(())
}

/// One batch of the examples `idx` (non-empty), truncated to `max_len`, right-padded to the
/// longest of them.
fn build_batch(
    idx: &[usize],
    token_ids: &[Vec<u32>],
    labels: &[u8],
    max_len: usize,
    pad_id: u32,
) -> Batch {
    let lengths: Vec<usize> = idx
        .iter()
        .map(|&i| token_ids[i].len().min(max_len))
        .collect();
    let seq = lengths.iter().copied().max().unwrap_or(0);
    let mut input_ids = vec![pad_id as i64; idx.len() * seq];
    for (row, (&i, &len)) in idx.iter().zip(&lengths).enumerate() {
        for (t, &tok) in token_ids[i][..len].iter().enumerate() {
            input_ids[row * seq + t] = tok as i64;
        }
    }
    Batch {
        input_ids,
        lengths,
        labels: idx.iter().map(|&i| labels[i] as i64).collect(),
        batch: idx.len(),
        seq,
    }
}

/// Like [`make_batches`] with a seeded shuffle, but groups examples of similar length to cut
/// padding: the shuffled examples are cut into pools of `batch_size · pool_batches`, each pool
/// is sorted by (truncated) length and cut into batches, and the order of all batches is
/// shuffled again (`ChaCha8Rng::seed_from_u64(seed)`). Every example appears exactly once;
/// at most one batch per pool is smaller than `batch_size`. `pool_batches = 1` is plain
/// shuffled batching.
///
/// Errors: as [`make_batches`], plus [`DataError::Batch`] if `pool_batches` is 0.
pub fn make_bucketed_batches(
    token_ids: &[Vec<u32>],
    labels: &[u8],
    batch_size: usize,
    max_len: usize,
    pad_id: u32,
    seed: u64,
    pool_batches: usize,
) -> Result<Vec<Batch>, DataError> {
    check_batch_args(token_ids, labels, batch_size, max_len)?;
    if pool_batches == 0 {
        return Err(DataError::Batch("pool_batches must be at least 1".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..token_ids.len()).collect();
    order.shuffle(&mut rng);
    let mut batches: Vec<Batch> = Vec::new();
    for pool in order.chunks(batch_size * pool_batches) {
        let mut pool = pool.to_vec();
        // stable sort: ties keep their shuffled order
        pool.sort_by_key(|&i| token_ids[i].len().min(max_len));
        batches.extend(
            pool.chunks(batch_size)
                .map(|idx| build_batch(idx, token_ids, labels, max_len, pad_id)),
        );
    }
    batches.shuffle(&mut rng);
    Ok(batches)
}

/// Right-pads every batch with `pad_id` to a multiple of `multiple` columns, at most
/// `max(max_len, seq)`, so that a run meets only a few distinct shapes (each new shape compiles and
/// autotunes kernels on the GPU backends). `multiple ≤ 1` leaves the batches unchanged; lengths,
/// labels and real tokens are never changed.
pub fn pad_batches_to_multiple(
    batches: &mut [Batch],
    multiple: usize,
    max_len: usize,
    pad_id: u32,
) {
    if multiple <= 1 {
        return;
    }
    for b in batches {
        let seq = (b.seq.div_ceil(multiple) * multiple).min(max_len.max(b.seq));
        if seq == b.seq {
            continue;
        }
        let mut ids = Vec::with_capacity(b.batch * seq);
        for row in b.input_ids.chunks(b.seq) {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(i64::from(pad_id), seq - b.seq));
        }
        b.input_ids = ids;
        b.seq = seq;
    }
}
