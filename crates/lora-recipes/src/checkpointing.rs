//! What a fine-tuning run hands the training loop for checkpoints, resume, the non-finite
//! guard and f16 loss scaling.

use lora_core::Precision;
use lora_train::{LossScaleConfig, TrainConfig};
use std::collections::BTreeMap;
use std::path::Path;

use crate::options::FinetuneOptions;
use crate::AnyError;

/// Flags that do not change what training computes, left out of the fingerprint: where the
/// run writes, how often it checkpoints or evaluates, and the resume flag itself.
const NOT_FINGERPRINTED: &[&str] = &[
    // The model is fingerprinted by its file (below), not by how its path was spelled.
    "model_path",
    "data_path",
    "resume",
    "output_dir",
    "checkpoint_every",
    "save_total_limit",
    "max_bad_steps",
    "eval_every",
    "eval_batch_size",
    "no_eval_before",
    "dump_data",
    // The same model and data on more or fewer devices, and the same loss computed another
    // way: a run may continue with either changed (and older checkpoints have neither key).
    "devices",
    "lm_loss",
];

/// The run's identity for checkpoints: every flag that changes training (as `--flag` →
/// value) and the model file (`model` → its file or folder name and size in bytes, so that
/// the same model reached by another path still matches). A checkpoint written with a
/// different fingerprint is refused on `--resume`, naming the first flag that differs.
///
/// # Errors
/// Only if the options cannot be serialized (not expected).
pub fn run_fingerprint(
    opts: &FinetuneOptions,
    model_path: &Path,
) -> Result<BTreeMap<String, String>, AnyError> {
    // Paths only matter through the files they name (below); a path that is not UTF-8 must
    // not stop the run.
    let mut plain = opts.clone();
    plain.model_path = None;
    plain.data_path = None;
    plain.resume = None;
    plain.dump_data = None;
    plain.output_dir = Default::default();
    let value = serde_json::to_value(&plain)?;
    let mut f = BTreeMap::new();
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            if NOT_FINGERPRINTED.contains(&k.as_str()) {
                continue;
            }
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "(unset)".to_string(),
                other => other.to_string(),
            };
            f.insert(format!("--{}", k.replace('_', "-")), v);
        }
    }
    // The file behind the path: a different model at the same path is refused too.
    let file = if model_path.is_dir() {
        model_path.join("config.json")
    } else {
        model_path.to_path_buf()
    };
    let name = model_path.file_name().map_or_else(
        || model_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    f.insert("model".to_string(), identity(name, &file));
    if let Some(d) = &opts.data_path {
        let name = d
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        f.insert("data".to_string(), identity(name, d));
    }
    Ok(f)
}

/// `"<name> (<size of file> bytes)"`: an input as the fingerprint knows it (0 bytes when the
/// file cannot be read; loading it fails later with its own message).
fn identity(name: String, file: &Path) -> String {
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    format!("{name} ({size} bytes)")
}

/// Sets the loop's checkpoint, resume, guard and loss-scaling fields from the options:
/// checkpoints under `--output-dir`, `--save-total-limit`, `--resume`, `--max-bad-steps`,
/// and `torch.amp.GradScaler`'s defaults when `precision` is f16 (bf16 has f32's range and
/// needs no scaling, as in PyTorch).
///
/// # Errors
/// [`run_fingerprint`]'s.
pub fn configure_checkpoints(
    train: &mut TrainConfig,
    opts: &FinetuneOptions,
    model_path: &Path,
    precision: Precision,
) -> Result<(), AnyError> {
    train.output_dir = Some(opts.output_dir.clone());
    train.save_total_limit = (opts.save_total_limit > 0).then_some(opts.save_total_limit);
    train.resume_from = opts.resume.clone();
    train.max_bad_steps = opts.max_bad_steps;
    train.loss_scale = (precision == Precision::F16).then(LossScaleConfig::default);
    train.fingerprint = run_fingerprint(opts, model_path)?;
    Ok(())
}

/// The checks of the checkpoint flags that need no model: `--max-bad-steps` ≥ 1, and a
/// `--resume` directory that holds a trainer state.
///
/// # Errors
/// A message naming the flag and its value (for `--resume`, the file it lacks).
pub fn check_checkpoint_flags(opts: &FinetuneOptions) -> Result<(), AnyError> {
    crate::checks::at_least_one("--max-bad-steps", opts.max_bad_steps)?;
    if let Some(dir) = &opts.resume {
        let state = dir.join(lora_train::TRAINER_STATE_FILE);
        if !state.is_file() {
            return Err(format!(
                "--resume {}: not a checkpoint (no {}); checkpoints are the \
                 <output-dir>/checkpoint-<step> folders written with --checkpoint-every",
                dir.display(),
                lora_train::TRAINER_STATE_FILE
            )
            .into());
        }
    }
    Ok(())
}

/// An exclusive lock on `<output-dir>/.lock` for the whole run, so that two runs never write
/// the same adapter and checkpoints (released when dropped, or by the system if the process
/// dies).
#[derive(Debug)]
pub struct OutputLock {
    _lock: lora_io::FileLock,
}

/// Takes [`OutputLock`] on `--output-dir` (created if missing).
///
/// # Errors
/// Another run holds it (naming the directory), or the lock file cannot be created.
pub fn lock_output_dir(opts: &FinetuneOptions) -> Result<OutputLock, AnyError> {
    let dir = &opts.output_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("--output-dir {}: {e}", dir.display()))?;
    let path = dir.join(".lock");
    match lora_io::FileLock::try_lock(&path).map_err(|e| format!("{}: {e}", path.display()))? {
        Some(lock) => Ok(OutputLock { _lock: lock }),
        None => Err(format!(
            "--output-dir {}: another run is writing to it (it holds {}); wait for it or choose \
             another directory",
            dir.display(),
            path.display()
        )
        .into()),
    }
}
