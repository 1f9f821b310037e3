//! The files and summary line a run writes besides the adapter: held-out logits for the PEFT
//! comparison, the exact examples for the PEFT side-by-side run, the training summary, and
//! the run's metrics (`metrics.jsonl`, `loss.png`).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_io::{write_safetensors, StTensor};
use safetensors::Dtype;
// The IMDB pipeline's batch type (one import site; the crate that holds it may change).
use lora_data::imdb::Batch;
use lora_train::{EvalRecord, MetricsLog, TrainStats, RUNNING_LOSS_STEPS};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::options::FinetuneOptions;

use crate::AnyError;

/// An integer tensor (I64 or I32) from its little-endian bytes.
fn int_tensor(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> StTensor {
    StTensor {
        dtype,
        shape,
        bytes,
    }
}

/// Writes `input_ids` (I64 `[batch, seq]`), `attention_mask` (I64, 1 on real tokens) and our
/// `logits` (F32 `[batch, num_labels]`) of one batch to the safetensors file `path`, atomically
/// (no metadata). Read by `tests/fixtures/check_smollm2_adapter.py` to compare with PEFT.
///
/// # Errors
/// The tensor-to-host conversion error; [`lora_io::IoError`] naming the file.
pub fn write_heldout<B: Backend>(
    path: &Path,
    b: &Batch,
    logits: Tensor<B, 2>,
) -> Result<(), AnyError> {
    let ids: Vec<u8> = b.input_ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mask: Vec<u8> = (0..b.batch)
        .flat_map(|i| (0..b.seq).map(move |t| i64::from(t < b.lengths[i])))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let shape = logits.dims().to_vec();
    let l: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| format!("{e:?}"))?;
    let tensors = vec![
        (
            "input_ids".to_string(),
            int_tensor(Dtype::I64, vec![b.batch, b.seq], ids),
        ),
        (
            "attention_mask".to_string(),
            int_tensor(Dtype::I64, vec![b.batch, b.seq], mask),
        ),
        ("logits".to_string(), StTensor::f32(shape, &l)),
    ];
    write_safetensors(path, &tensors, None)?;
    Ok(())
}

/// What [`dump_data`] records of the run besides the examples (metadata, decimal strings).
#[derive(Debug, Clone, Copy)]
pub struct DumpMeta {
    /// Padding token id.
    pub pad: u32,
    /// Verbalizer token ids `(negative, positive)`.
    pub neg_pos: (u32, u32),
    /// Columns of the id tensors (`--max-length`).
    pub max_length: usize,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--seed`.
    pub seed: u64,
}

/// Writes the examples of a run for the PEFT side-by-side script (`benches/peft_imdb.py`):
/// `train_ids` / `test_ids` I32 `[n, max_length]` right-padded with `pad` (longer rows cut),
/// `*_len` and `*_labels` I32 `[n]`; metadata `pad_id`, `neg_id`, `pos_id`, `max_length`,
/// `batch_size`, `seed` (decimal strings). Atomic; says where on stderr.
///
/// # Errors
/// [`lora_io::IoError`] naming the file.
pub fn dump_data(
    path: &Path,
    train: (&[Vec<u32>], &[u8]),
    test: (&[Vec<u32>], &[u8]),
    meta: &DumpMeta,
) -> Result<(), AnyError> {
    let (ml, pad) = (meta.max_length, meta.pad);
    let i32s = |shape: Vec<usize>, v: Vec<i32>| {
        int_tensor(
            Dtype::I32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    };
    let enc = |ids: &[Vec<u32>], labels: &[u8]| -> [StTensor; 3] {
        let m: Vec<i32> = ids
            .iter()
            .flat_map(|row| (0..ml).map(|t| row.get(t).copied().unwrap_or(pad) as i32))
            .collect();
        let len: Vec<i32> = ids.iter().map(|r| r.len().min(ml) as i32).collect();
        let lab: Vec<i32> = labels.iter().map(|&l| i32::from(l)).collect();
        let n = ids.len();
        [i32s(vec![n, ml], m), i32s(vec![n], len), i32s(vec![n], lab)]
    };
    let [a, b, c] = enc(train.0, train.1);
    let [d, e, f] = enc(test.0, test.1);
    let tensors: Vec<(String, StTensor)> = [
        ("train_ids", a),
        ("train_len", b),
        ("train_labels", c),
        ("test_ids", d),
        ("test_len", e),
        ("test_labels", f),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_string(), t))
    .collect();
    let metadata: HashMap<String, String> = [
        ("pad_id", pad.to_string()),
        ("neg_id", meta.neg_pos.0.to_string()),
        ("pos_id", meta.neg_pos.1.to_string()),
        ("max_length", ml.to_string()),
        ("batch_size", meta.batch_size.to_string()),
        ("seed", meta.seed.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_safetensors(path, &tensors, Some(metadata))?;
    eprintln!("data for the PEFT run written to {}", path.display());
    Ok(())
}

/// The closing summary of a training run (the running loss is the mean over the last ≤
/// [`RUNNING_LOSS_STEPS`] steps, `lora_train::train`'s window).
pub fn training_line(stats: &TrainStats) -> String {
    format!(
        "training: {} steps, {:.0} tok/s, {:.1}s, mean loss of the last {} steps {:.4}{}",
        stats.steps,
        stats.tokens_per_sec,
        stats.wall_secs,
        stats.steps.min(RUNNING_LOSS_STEPS),
        stats.running_loss,
        if stats.skipped_steps > 0 {
            format!(
                " ({} steps skipped for a non-finite loss or gradient)",
                stats.skipped_steps
            )
        } else {
            String::new()
        }
    )
}

/// The run's metrics log in `--output-dir` ([`MetricsLog::in_dir`]): `metrics.jsonl` started
/// anew, or with `--resume` continued after the checkpoint's step; `loss.png` beside it.
///
/// # Errors
/// The file cannot be written, or (resuming) read back: [`lora_train::TrainError::Metrics`]
/// naming it.
pub fn open_metrics(opts: &FinetuneOptions) -> Result<MetricsLog, AnyError> {
    Ok(MetricsLog::in_dir(&opts.output_dir, opts.resume.is_some())?)
}

/// The record of an evaluation after `step` (0: before training) that started at `since`,
/// with `metrics` named as transformers names them (`eval_accuracy`, `eval_loss`, ...).
pub fn eval_record(step: usize, metrics: &[(&str, f64)], since: Instant) -> EvalRecord {
    EvalRecord {
        step,
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        eval_runtime: since.elapsed().as_secs_f64(),
    }
}

/// Draws the run's final `loss.png` and says on stdout where the metrics are.
///
/// # Errors
/// [`lora_train::TrainError::Metrics`] naming the figure that cannot be written.
pub fn finish_metrics(log: &MetricsLog) -> Result<(), AnyError> {
    log.write_plot()?;
    match log.plot_path() {
        Some(plot) => println!(
            "metrics written to {} and {}",
            log.path().display(),
            plot.display()
        ),
        None => println!("metrics written to {}", log.path().display()),
    }
    Ok(())
}
