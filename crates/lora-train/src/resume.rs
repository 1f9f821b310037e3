//! Where a run starts: step 1, or the step after a checkpoint, with the model, AdamW moments
//! and loop state restored from it.

use crate::checkpoint::tensors::apply;
use crate::checkpoint::{fingerprint_difference, none_as_nan, read_checkpoint};
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::optim::AdamWOptimizer;
use crate::run::TrainStats;
use crate::scaler::LossScaler;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use std::path::{Path, PathBuf};

/// Where a resumed run starts: the restored stats, scaler, train seconds and checkpoint.
pub(crate) struct Start {
    pub step: usize,
    pub stats: TrainStats,
    pub scaler: Option<LossScaler>,
    pub train_secs: f64,
    pub consecutive_bad: usize,
    pub checkpoint: Option<PathBuf>,
}

/// The start of a run from step 1.
pub(crate) fn fresh_start(cfg: &TrainConfig) -> Start {
    Start {
        step: 1,
        stats: TrainStats {
            steps: 0,
            final_loss: f64::NAN,
            running_loss: f64::NAN,
            losses: Vec::with_capacity(cfg.steps),
            grad_norms: Vec::with_capacity(cfg.steps),
            lrs: Vec::with_capacity(cfg.steps),
            skipped_steps: 0,
            loss_scale: None,
            first_step: 1,
            tokens: 0,
            wall_secs: 0.0,
            tokens_per_sec: 0.0,
        },
        scaler: cfg.loss_scale.as_ref().map(LossScaler::new),
        train_secs: 0.0,
        consecutive_bad: 0,
        checkpoint: None,
    }
}

/// Restores the model's trainable parameters, `optim`'s moments and the loop's state from the
/// checkpoint `dir`, after checking that it was written by the same run.
pub(crate) fn resume<B, M>(
    model: M,
    optim: AdamWOptimizer<B, M>,
    cfg: &TrainConfig,
    dir: &Path,
) -> Result<(M, AdamWOptimizer<B, M>, Start), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let fail = |message: String| TrainError::Resume {
        path: dir.to_path_buf(),
        message,
    };
    let (state, bytes) = read_checkpoint(dir).map_err(fail)?;
    if let Some((field, saved, now)) =
        fingerprint_difference(&state.fingerprint, &cfg.full_fingerprint())
    {
        return Err(fail(format!(
            "it was written with {field} = {saved}, this run has {field} = {now}"
        )));
    }
    let n = state.global_step;
    if n > cfg.steps || state.losses.len() != n || state.lrs.len() != n {
        return Err(fail(format!(
            "its step {n} and its {} losses do not fit a run of {} steps",
            state.losses.len(),
            cfg.steps
        )));
    }
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("{}: {e}", crate::checkpoint::TRAINING_STATE_FILE)))?;
    let (model, records) = apply::<B, M>(model, &file).map_err(fail)?;
    let mut record = optim.to_record();
    record.clear();
    record.extend(records);
    let optim = optim.load_record(record);
    let mut fresh = fresh_start(cfg);
    let stats = &mut fresh.stats;
    stats.steps = n;
    stats.losses = none_as_nan(&state.losses);
    stats.grad_norms = none_as_nan(&state.grad_norms);
    stats.lrs = state.lrs;
    stats.skipped_steps = state.skipped_steps;
    stats.first_step = n + 1;
    stats.final_loss = stats.losses.last().copied().unwrap_or(f64::NAN);
    stats.running_loss = stats.running();
    fresh.step = n + 1;
    fresh.scaler = if cfg.loss_scale.is_some() {
        state.loss_scaler.or(fresh.scaler)
    } else {
        None
    };
    fresh.train_secs = state.train_secs;
    fresh.consecutive_bad = state.consecutive_bad_steps;
    fresh.checkpoint = Some(dir.to_path_buf());
    Ok((model, optim, fresh))
}
