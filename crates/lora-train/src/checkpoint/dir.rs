//! Checkpoint directories: `checkpoint-<step>/` written whole or not at all, the oldest
//! removed beyond a limit, and read back.
//!
//! Layout (transformers' Trainer writes the same kind of folder): the caller's files (the
//! adapter in its library's format), `training_state.safetensors` (the trainable parameters
//! and their AdamW moments, [`super::tensors`]) and `trainer_state.json` ([`TrainerState`]).
//! Everything is written into `.checkpoint-<step>.partial/` (each file fsynced), which is then
//! renamed to `checkpoint-<step>` and the parent directory fsynced: a kill at any moment leaves
//! either the complete checkpoint or none under that name.

use super::state::{TrainerState, TRAINER_STATE_FORMAT};
use lora_io::{atomic_write, write_safetensors, StTensor};
use std::fs;
use std::path::{Path, PathBuf};

/// File name of the trainable parameters and AdamW moments in a checkpoint.
pub const TRAINING_STATE_FILE: &str = "training_state.safetensors";
/// File name of the [`TrainerState`] in a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// `<output_dir>/checkpoint-<step>`.
pub fn checkpoint_path(output_dir: &Path, step: usize) -> PathBuf {
    output_dir.join(format!("checkpoint-{step}"))
}

/// The step of a folder named `checkpoint-<step>`, or `None` for any other name.
fn checkpoint_step(name: &std::ffi::OsStr) -> Option<usize> {
    name.to_str()?.strip_prefix("checkpoint-")?.parse().ok()
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Refuses an `output_dir` holding a `checkpoint-<n>` entry that is not a checkpoint (a file,
/// or a folder without `trainer_state.json`): writing checkpoint n would replace it.
///
/// # Errors
/// A message naming the entry.
pub(crate) fn check_output_dir(output_dir: &Path) -> Result<(), String> {
    let Ok(rd) = fs::read_dir(output_dir) else {
        return Ok(()); // created on the first checkpoint
    };
    for entry in rd.flatten() {
        let is_ckpt_name = checkpoint_step(&entry.file_name()).is_some();
        if is_ckpt_name && !entry.path().join(TRAINER_STATE_FILE).is_file() {
            return Err(format!(
                "{} is not a checkpoint (no {TRAINER_STATE_FILE}) but has a checkpoint's name: \
                 move it away or choose another output directory",
                entry.path().display()
            ));
        }
    }
    Ok(())
}

/// Writes `checkpoint-<step>` under `output_dir` (module docs): `caller_files(dir)` first, then
/// `tensors` and `state`; then removes the oldest `checkpoint-*` beyond `keep`, never `protect`
/// (the last good checkpoint). Returns the checkpoint's path. The caller has run
/// [`check_output_dir`] once before the first one.
pub(crate) fn write_checkpoint(
    output_dir: &Path,
    step: usize,
    tensors: &[(String, StTensor)],
    state: &TrainerState,
    keep: Option<usize>,
    protect: Option<&Path>,
    caller_files: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let done = checkpoint_path(output_dir, step);
    let partial = output_dir.join(format!(".checkpoint-{step}.partial"));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(|e| io_err(&partial, e))?;
    }
    fs::create_dir_all(&partial).map_err(|e| io_err(&partial, e))?;
    caller_files(&partial)?;
    write_safetensors(partial.join(TRAINING_STATE_FILE), tensors, None)
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    atomic_write(partial.join(TRAINER_STATE_FILE), &json).map_err(|e| e.to_string())?;
    if done.exists() {
        // Written again (a run resumed from an earlier checkpoint): swap, then drop the old one.
        let old = output_dir.join(format!(".checkpoint-{step}.old"));
        let _ = fs::remove_dir_all(&old);
        fs::rename(&done, &old).map_err(|e| io_err(&done, e))?;
        fs::rename(&partial, &done).map_err(|e| io_err(&done, e))?;
        fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    } else {
        fs::rename(&partial, &done).map_err(|e| io_err(&done, e))?;
    }
    if let Ok(d) = fs::File::open(output_dir) {
        let _ = d.sync_all();
    }
    if let Some(keep) = keep {
        let mut all = list_checkpoints(output_dir)?;
        all.retain(|(s, p)| *s != step && Some(p.as_path()) != protect);
        let excess = (all.len() + 1).saturating_sub(keep.max(1));
        for (_, p) in all.into_iter().take(excess) {
            fs::remove_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
    }
    Ok(done)
}

/// The complete checkpoints under `output_dir`, `(step, path)` by increasing step; partial
/// ones (`.checkpoint-*.partial`) are not listed.
///
/// # Errors
/// `output_dir` cannot be listed (a missing directory is an empty list).
pub fn list_checkpoints(output_dir: &Path) -> Result<Vec<(usize, PathBuf)>, String> {
    let rd = match fs::read_dir(output_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(output_dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err(output_dir, e))?;
        if let Some(step) = checkpoint_step(&entry.file_name()) {
            if entry.path().join(TRAINER_STATE_FILE).is_file() {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `dir`'s [`TrainerState`] and the bytes of its `training_state.safetensors`.
///
/// # Errors
/// A missing or unreadable file, JSON that is not a trainer state of this format and
/// version, or one that contradicts itself (a step other than the folder's
/// `checkpoint-<step>`, per-step lists of another length, negative or non-finite seconds):
/// each names the file.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<(TrainerState, Vec<u8>), String> {
    let sp = dir.join(TRAINER_STATE_FILE);
    let text = lora_io::read_regular_file(&sp).map_err(|e| io_err(&sp, e))?;
    let state: TrainerState = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{}: not a trainer state written by `finetune --checkpoint-every` ({e})",
            sp.display()
        )
    })?;
    if state.format != TRAINER_STATE_FORMAT || state.version != 1 {
        return Err(format!(
            "{}: format {:?} version {}, expected {TRAINER_STATE_FORMAT:?} version 1",
            sp.display(),
            state.format,
            state.version
        ));
    }
    let n = state.global_step;
    let folder_step = dir.file_name().and_then(checkpoint_step);
    let bad = if folder_step.is_some_and(|f| f != n) {
        Some(format!("global_step {n} does not match the folder's name"))
    } else if [state.losses.len(), state.grad_norms.len(), state.lrs.len()] != [n, n, n] {
        Some(format!(
            "{} losses, {} gradient norms and {} learning rates for global_step {n}",
            state.losses.len(),
            state.grad_norms.len(),
            state.lrs.len()
        ))
    } else if !(state.train_secs.is_finite() && state.train_secs >= 0.0) {
        Some(format!("train_secs {} is not a duration", state.train_secs))
    } else if state.skipped_steps > n || state.consecutive_bad_steps > state.skipped_steps {
        Some("skipped step counts exceed the steps".to_string())
    } else {
        None
    };
    if let Some(why) = bad {
        return Err(format!("{}: {why}", sp.display()));
    }
    let tp = dir.join(TRAINING_STATE_FILE);
    let bytes = lora_io::read_regular_file(&tp).map_err(|e| io_err(&tp, e))?;
    Ok((state, bytes))
}
