//! The loop: schedule, accumulation, clipping, AdamW step, non-finite guard, loss scaling,
//! progress, eval, checkpoints and resume.

use crate::accumulate::accumulate_grads;
use crate::checkpoint::tensors::{apply, collect};
use crate::checkpoint::{
    check_output_dir, fingerprint_difference, finite_or_none, none_as_nan, read_checkpoint,
    write_checkpoint, TrainerState, TRAINER_STATE_FORMAT,
};
use crate::clip::{clip_grad_norm, grad_norm, scale_grads};
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::metrics::{EvalRecord, Evaluation, StepRecord, TrainObserver};
use crate::optim::{adamw_optimizer, AdamWOptimizer};
use crate::progress::Progress;
use crate::rng::step_seed;
use crate::scaler::LossScaler;
use crate::schedule::budget_lr;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Summary of a [`train`] run (a resumed run includes the steps before the checkpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainStats {
    /// Optimizer steps taken (skipped ones included).
    pub steps: usize,
    /// Loss of the last step (mean over its micro-batches).
    pub final_loss: f64,
    /// Mean finite loss of the last (up to) 20 steps.
    pub running_loss: f64,
    /// Per-step loss (NaN or infinite for a skipped step).
    pub losses: Vec<f64>,
    /// Per-step pre-clip global gradient norm (NaN for a step skipped for its loss).
    pub grad_norms: Vec<f64>,
    /// Per-step learning rate used.
    pub lrs: Vec<f64>,
    /// Steps skipped for a non-finite loss or gradient norm (weights and optimizer unchanged).
    pub skipped_steps: usize,
    /// The loss scale at the end, when loss scaling is on.
    pub loss_scale: Option<f64>,
    /// The first step this call ran (1, or the resumed checkpoint's step + 1).
    pub first_step: usize,
    /// Tokens processed (as reported by the loss function), by this call.
    pub tokens: usize,
    /// Wall time of this call's loop in seconds (eval and checkpoint callbacks included).
    pub wall_secs: f64,
    /// `tokens / wall_secs`.
    pub tokens_per_sec: f64,
}

impl TrainStats {
    fn running(&self) -> f64 {
        let tail: Vec<f64> = self
            .losses
            .iter()
            .rev()
            .take(20)
            .copied()
            .filter(|l| l.is_finite())
            .collect();
        tail.iter().sum::<f64>() / tail.len().max(1) as f64
    }
}

/// Where a resumed run starts: the restored stats, scaler, train seconds and checkpoint.
struct Start {
    step: usize,
    stats: TrainStats,
    scaler: Option<LossScaler>,
    train_secs: f64,
    consecutive_bad: usize,
    checkpoint: Option<PathBuf>,
}

/// Trains `model` for `cfg.steps` AdamW steps and returns it with [`TrainStats`].
///
/// Per step s (1-based): the backend is reseeded with [`step_seed`]`(cfg.seed, s)`;
/// lr = [`linear_warmup_lr`](crate::linear_warmup_lr)`(cfg.lr, s−1, cfg.warmup_steps, cfg.steps)`;
/// gradients are accumulated over `cfg.grad_accum` micro-batches ([`accumulate_grads`]),
/// micro-batch `k` of step `s` being `next_batch((s−1)·grad_accum + k)`, times the loss scale
/// when `cfg.loss_scale` is set (then divided out again); global-norm clipping
/// ([`clip_grad_norm`]) when `cfg.max_grad_norm` is set; one AdamW step ([`adamw_optimizer`]).
///
/// A step whose loss or gradient norm is NaN or infinite is skipped: weights and AdamW state
/// stay as they were, the schedule and data move on (as `GradScaler.step` skips), the loss
/// scale halves; after `cfg.max_bad_steps` such steps in a row the run stops.
///
/// After step s, `eval_fn(&model, s)` runs when `s % eval_every == 0` (its summary is printed);
/// when `s % checkpoint_every == 0`, `<output_dir>/checkpoint-<s>/` is written (layout:
/// [`crate::checkpoint_path`]): `checkpoint_fn(&model, s, dir)` writes the caller's files
/// into `dir`, then the loop adds the trainable parameters, AdamW moments and
/// [`TrainerState`]. With `cfg.resume_from`, the loop first restores all of that from the
/// checkpoint (refusing one whose fingerprint, parameters or shapes differ) and continues at
/// its step + 1: on a deterministic backend the result is bit-identical to an uninterrupted
/// run (with a time budget, the schedule follows the saved training seconds).
///
/// `eval_fn` returns the summary line to print, or an [`Evaluation`] that also carries named
/// metrics for an observer ([`train_observed`]).
///
/// Progress: an indicatif bar on stderr with step, running-mean loss, lr, grad norm, tokens/s;
/// when stderr is not a terminal, about 20 log lines instead. An evaluation runs with the bar
/// cleared, so that it may show its own.
///
/// Errors: [`TrainError::InvalidConfig`], [`TrainError::Resume`], [`TrainError::Loss`],
/// [`TrainError::TooManyBadSteps`], [`TrainError::NoGradients`], [`TrainError::Checkpoint`],
/// each naming the step or checkpoint.
pub fn train<B, M, T, N, F, E, R, C>(
    model: M,
    cfg: &TrainConfig,
    device: &B::Device,
    next_batch: N,
    loss_fn: F,
    eval_fn: E,
    checkpoint_fn: C,
) -> Result<(M, TrainStats), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    N: FnMut(usize) -> T,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
    E: FnMut(&M, usize) -> R,
    R: Into<Evaluation>,
    C: FnMut(&M, usize, &Path) -> Result<(), String>,
{
    train_observed(
        model,
        cfg,
        device,
        next_batch,
        loss_fn,
        eval_fn,
        checkpoint_fn,
        &mut (),
    )
}

/// [`train`], reporting to `observer`: [`TrainObserver::on_start`] with the first step,
/// [`TrainObserver::on_step`] with a [`StepRecord`] after every step (the values pushed to
/// [`TrainStats`]), [`TrainObserver::on_eval`] with an [`EvalRecord`] (the metrics of
/// `eval_fn`'s [`Evaluation`] and its seconds) after every evaluation, and
/// [`TrainObserver::on_checkpoint`] after every checkpoint. A
/// [`MetricsLog`](crate::MetricsLog) observer writes `metrics.jsonl` and `loss.png`.
///
/// Errors: [`train`]'s, and the observer's.
#[allow(clippy::too_many_arguments)] // train's callbacks and the observer, each one concern
pub fn train_observed<B, M, T, N, F, E, R, C, O>(
    model: M,
    cfg: &TrainConfig,
    device: &B::Device,
    mut next_batch: N,
    loss_fn: F,
    mut eval_fn: E,
    mut checkpoint_fn: C,
    mut observer: O,
) -> Result<(M, TrainStats), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    N: FnMut(usize) -> T,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
    E: FnMut(&M, usize) -> R,
    R: Into<Evaluation>,
    C: FnMut(&M, usize, &Path) -> Result<(), String>,
    O: TrainObserver,
{
    cfg.validate()?;
    if let (Some(_), Some(out)) = (cfg.checkpoint_every, &cfg.output_dir) {
        check_output_dir(out).map_err(TrainError::InvalidConfig)?;
    }
    let optim = adamw_optimizer::<B, M>(cfg);
    let (mut model, mut optim, start) = match &cfg.resume_from {
        Some(dir) => resume(model, optim, cfg, dir)?,
        None => (model, optim, fresh_start(cfg)),
    };
    let Start {
        step: first,
        mut stats,
        mut scaler,
        train_secs: prior_secs,
        mut consecutive_bad,
        checkpoint: mut last_checkpoint,
    } = start;
    observer.on_start(first)?;
    let mut pb = Progress::steps(cfg.steps, cfg.progress);
    pb.start_at(first - 1);
    let say = |pb: &Progress, line: String| pb.println(&line);
    if first > cfg.steps {
        say(
            &pb,
            format!(
                "the checkpoint is at the last step ({}): nothing left to train",
                cfg.steps
            ),
        );
    } else if first > 1 {
        say(&pb, format!("resumed at step {first} of {}", cfg.steps));
    }

    let start_time = Instant::now();
    let ga = cfg.grad_accum;
    // Training time, without the eval / checkpoint callbacks (for the time budget).
    let mut callback_secs = 0.0f64;
    let train_secs = |cb: f64| prior_secs + start_time.elapsed().as_secs_f64() - cb;
    for step in first..=cfg.steps {
        let elapsed = train_secs(callback_secs);
        if cfg.time_budget_secs.is_some_and(|b| elapsed >= b) {
            say(
                &pb,
                format!(
                    "time budget of {:.0}s spent after {} steps: stopping",
                    cfg.time_budget_secs.unwrap_or(0.0),
                    step - 1
                ),
            );
            break;
        }
        let step_start = Instant::now();
        <B as Backend>::seed(device, step_seed(cfg.seed, step));
        let lr = budget_lr(
            cfg.lr,
            step - 1,
            cfg.warmup_steps,
            cfg.steps,
            elapsed,
            cfg.time_budget_secs,
        );
        let scale = scaler.map_or(1.0, |s| s.scale);
        let acc = accumulate_grads(
            &model,
            ga,
            |k| next_batch((step - 1) * ga + k),
            &loss_fn,
            step,
            scale,
        )?;
        let mut norm = f64::NAN;
        let bad = match acc.bad_loss {
            Some((micro, value)) => Some(format!("loss {value} (micro-batch {micro})")),
            None => {
                let mut grads = acc.grads;
                if grads.is_empty() {
                    return Err(TrainError::NoGradients { step });
                }
                if scale != 1.0 {
                    scale_grads::<B, M>(&model, &mut grads, 1.0 / scale);
                }
                norm = match cfg.max_grad_norm {
                    Some(max) => clip_grad_norm::<B, M>(&model, &mut grads, max),
                    None => grad_norm::<B, M>(&model, &grads),
                };
                if norm.is_finite() {
                    model = optim.step(lr, model, grads);
                    None
                } else {
                    Some(format!("gradient norm {norm}"))
                }
            }
        };
        if let (Some(s), Some(ls)) = (scaler.as_mut(), cfg.loss_scale.as_ref()) {
            s.update(ls, bad.is_some());
        }
        stats.steps = step;
        stats.losses.push(acc.loss);
        stats.grad_norms.push(norm);
        stats.lrs.push(lr);
        stats.tokens += acc.tokens;
        stats.final_loss = acc.loss;
        stats.running_loss = stats.running();
        let step_secs = step_start.elapsed().as_secs_f64();
        observer.on_step(&StepRecord {
            step,
            loss: acc.loss,
            learning_rate: lr,
            grad_norm: norm,
            num_tokens: acc.tokens,
            tokens_per_second: acc.tokens as f64 / step_secs.max(1e-9),
            skipped: bad.is_some(),
            loss_scale: scaler.map(|s| s.scale),
            elapsed_seconds: train_secs(callback_secs),
        })?;
        if let Some(what) = bad {
            stats.skipped_steps += 1;
            consecutive_bad += 1;
            let scale_note =
                scaler.map_or(String::new(), |s| format!(", loss scale now {}", s.scale));
            say(
                &pb,
                format!(
                    "step {step}: non-finite {what}: skipped, weights and optimizer state \
                     unchanged ({consecutive_bad} in a row, {} in all{scale_note})",
                    stats.skipped_steps
                ),
            );
            if consecutive_bad >= cfg.max_bad_steps {
                pb.finish();
                return Err(TrainError::TooManyBadSteps {
                    step,
                    count: consecutive_bad,
                    last_checkpoint,
                });
            }
        } else {
            consecutive_bad = 0;
        }
        let tps = stats.tokens as f64 / start_time.elapsed().as_secs_f64().max(1e-9);
        let msg = format!(
            "loss (mean of last 20) {:.4} lr {lr:.2e} gnorm {norm:.3} {tps:.0} tok/s",
            stats.running_loss
        );
        pb.set_message(msg);
        pb.set_position(step);
        let t_cb = Instant::now();
        if cfg.eval_every.is_some_and(|e| step % e == 0) {
            let eval: Evaluation = pb.suspend(|| eval_fn(&model, step)).into();
            say(&pb, format!("eval @ step {step}: {}", eval.summary));
            observer.on_eval(&EvalRecord {
                step,
                metrics: eval.metrics,
                eval_runtime: t_cb.elapsed().as_secs_f64(),
            })?;
        }
        if let (Some(every), Some(out)) = (cfg.checkpoint_every, &cfg.output_dir) {
            if step % every == 0 {
                let state = TrainerState {
                    format: TRAINER_STATE_FORMAT.to_string(),
                    version: 1,
                    global_step: step,
                    fingerprint: cfg.full_fingerprint(),
                    losses: finite_or_none(&stats.losses),
                    grad_norms: finite_or_none(&stats.grad_norms),
                    lrs: stats.lrs.clone(),
                    tokens: stats.tokens,
                    skipped_steps: stats.skipped_steps,
                    consecutive_bad_steps: consecutive_bad,
                    train_secs: train_secs(callback_secs + t_cb.elapsed().as_secs_f64()),
                    loss_scaler: scaler,
                };
                let records = optim.to_record();
                let tensors = collect::<B, M>(&model, &|id| records.get(&id).cloned());
                let dir = write_checkpoint(
                    out,
                    step,
                    &tensors,
                    &state,
                    cfg.save_total_limit,
                    // Only while bad steps are pending is the last good checkpoint older than
                    // the one being written; then the rotation keeps it too.
                    if consecutive_bad > 0 {
                        last_checkpoint.as_deref()
                    } else {
                        None
                    },
                    |dir| checkpoint_fn(&model, step, dir),
                )
                .map_err(|message| TrainError::Checkpoint { step, message })?;
                // After skipped steps the weights are those of the last good step, but the
                // checkpoint to name on failure is one written with no bad step pending.
                observer.on_checkpoint(step, &dir)?;
                if consecutive_bad == 0 {
                    last_checkpoint = Some(dir);
                }
            }
        }
        callback_secs += t_cb.elapsed().as_secs_f64();
    }
    pb.finish();
    stats.loss_scale = scaler.map(|s| s.scale);
    stats.wall_secs = start_time.elapsed().as_secs_f64();
    stats.tokens_per_sec = stats.tokens as f64 / stats.wall_secs.max(1e-9);
    if cfg.progress {
        let skipped = if stats.skipped_steps > 0 {
            format!(", {} non-finite steps skipped", stats.skipped_steps)
        } else {
            String::new()
        };
        let which = if stats.first_step > 1 {
            format!("steps {}-{} (resumed)", stats.first_step, stats.steps)
        } else {
            format!("{} steps", stats.steps)
        };
        eprintln!(
            "trained {which} in {:.1}s: final loss {:.4} (running {:.4}), {:.0} tok/s{skipped}",
            stats.wall_secs, stats.final_loss, stats.running_loss, stats.tokens_per_sec
        );
    }
    Ok((model, stats))
}

/// The start of a run from step 1.
fn fresh_start(cfg: &TrainConfig) -> Start {
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
fn resume<B, M>(
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
