//! The loop: schedule, accumulation, clipping, AdamW step, non-finite guard, loss scaling,
//! progress, eval, checkpoints and resume.

use crate::checkpoint::tensors::collect;
use crate::checkpoint::{
    check_output_dir, finite_or_none, write_checkpoint, TrainerState, TRAINER_STATE_FORMAT,
};
use crate::config::TrainConfig;
use crate::engine::{Single, Stepper};
use crate::error::TrainError;
use crate::metrics::{EvalRecord, Evaluation, StepRecord, TrainObserver};
use crate::optim::{adamw_optimizer, AdamWOptimizer};
use crate::progress::Progress;
use crate::resume::{fresh_start, resume, Start};
use crate::rng::step_seed;
use crate::schedule::budget_lr;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use std::path::Path;
use std::time::Instant;

/// How many of the last steps [`TrainStats::running_loss`] averages (the progress line's
/// "mean of last 20").
pub const RUNNING_LOSS_STEPS: usize = 20;

/// Summary of a [`train`] run (a resumed run includes the steps before the checkpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainStats {
    /// Optimizer steps taken (skipped ones included).
    pub steps: usize,
    /// Loss of the last step (mean over its micro-batches).
    pub final_loss: f64,
    /// Mean finite loss of the last (up to) [`RUNNING_LOSS_STEPS`] steps.
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
    pub(crate) fn running(&self) -> f64 {
        let tail: Vec<f64> = self
            .losses
            .iter()
            .rev()
            .take(RUNNING_LOSS_STEPS)
            .copied()
            .filter(|l| l.is_finite())
            .collect();
        tail.iter().sum::<f64>() / tail.len().max(1) as f64
    }
}

/// Trains `model` for `cfg.steps` AdamW steps and returns it with [`TrainStats`].
///
/// Per step s (1-based): the backend is reseeded with [`step_seed`]`(cfg.seed, s)`;
/// lr = [`linear_warmup_lr`](crate::linear_warmup_lr)`(cfg.lr, s−1, cfg.warmup_steps, cfg.steps)`;
/// gradients are accumulated over `cfg.grad_accum` micro-batches ([`accumulate_grads`](crate::accumulate_grads)),
/// micro-batch `k` of step `s` being `next_batch((s−1)·grad_accum + k)`, times the loss scale
/// when `cfg.loss_scale` is set (then divided out again); global-norm clipping
/// ([`clip_grad_norm`](crate::clip_grad_norm)) when `cfg.max_grad_norm` is set; one AdamW step ([`adamw_optimizer`]).
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
    next_batch: N,
    loss_fn: F,
    eval_fn: E,
    checkpoint_fn: C,
    observer: O,
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
    let single = |model, optim| {
        Ok(Single {
            model,
            optim,
            max_norm: cfg.max_grad_norm,
        })
    };
    run_loop(
        model,
        cfg,
        std::slice::from_ref(device),
        single,
        next_batch,
        loss_fn,
        eval_fn,
        checkpoint_fn,
        observer,
    )
}

/// [`train_observed`] on several devices of one machine: one replica per device
/// ([`DataParallel`](crate::DataParallel): the frozen base once per device, only trainable
/// gradients all-reduced), each micro-batch `next_batch(i)` split by `split(&batch, n)` into
/// one shard per device. The schedule, accumulation, loss scaling, clipping, non-finite guard,
/// checkpoints, resume and observer are [`train_observed`]'s; `eval_fn` and `checkpoint_fn` see
/// replica 0's model. The step's loss is the mean of the shards' losses, as gradient
/// accumulation over the same shards would compute (and PyTorch's DDP does), so with shards of
/// equal weight a step equals one step on the whole batch. With one device, exactly
/// [`train_observed`].
///
/// Errors: [`train_observed`]'s; [`TrainError::InvalidConfig`] for an empty `devices` or one
/// that cannot take the model; [`TrainError::Loss`] when `split` fails or returns another
/// number of shards; [`TrainError::Collective`].
#[cfg(feature = "parallel")]
#[allow(clippy::too_many_arguments)] // train_observed's arguments, the devices and the split
pub fn train_data_parallel<B, M, T, N, S, F, E, R, C, O>(
    model: M,
    cfg: &TrainConfig,
    devices: &[B::Device],
    next_batch: N,
    split: S,
    loss_fn: F,
    eval_fn: E,
    checkpoint_fn: C,
    observer: O,
) -> Result<(M, TrainStats), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Send,
    AdamWOptimizer<B, M>: Send,
    T: Sync,
    N: FnMut(usize) -> T,
    S: Fn(&T, usize) -> Result<Vec<T>, String>,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String> + Sync,
    E: FnMut(&M, usize) -> R,
    R: Into<Evaluation>,
    C: FnMut(&M, usize, &Path) -> Result<(), String>,
    O: TrainObserver,
{
    if devices.len() < 2 {
        let device = devices.first().ok_or_else(|| {
            TrainError::InvalidConfig("training needs at least one device".into())
        })?;
        return train_observed(
            model,
            cfg,
            device,
            next_batch,
            loss_fn,
            eval_fn,
            checkpoint_fn,
            observer,
        );
    }
    let parallel = |model, optim: AdamWOptimizer<B, M>| {
        Ok(crate::engine::Parallel {
            dp: crate::DataParallel::with_optimizer(model, &optim, devices, cfg)?,
            split: &split,
        })
    };
    run_loop(
        model,
        cfg,
        devices,
        parallel,
        next_batch,
        loss_fn,
        eval_fn,
        checkpoint_fn,
        observer,
    )
}

/// The loop of [`train_observed`] and [`train_data_parallel`].
#[allow(clippy::too_many_arguments)]
fn run_loop<B, M, T, X, N, F, E, R, C, O>(
    model: M,
    cfg: &TrainConfig,
    devices: &[B::Device],
    make: impl FnOnce(M, AdamWOptimizer<B, M>) -> Result<X, TrainError>,
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
    X: Stepper<B, M, T, F>,
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
    let (model, optim, start) = match &cfg.resume_from {
        Some(dir) => resume(model, optim, cfg, dir)?,
        None => (model, optim, fresh_start(cfg)),
    };
    let mut engine = make(model, optim)?;
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
        for device in devices {
            <B as Backend>::seed(device, step_seed(cfg.seed, step));
        }
        let lr = budget_lr(
            cfg.lr,
            step - 1,
            cfg.warmup_steps,
            cfg.steps,
            elapsed,
            cfg.time_budget_secs,
        );
        let scale = scaler.map_or(1.0, |s| s.scale);
        let batches = |k| next_batch((step - 1) * ga + k);
        let (next, done) = engine.step(ga, batches, &loss_fn, lr, scale, step)?;
        engine = next;
        let (norm, bad) = (done.norm, done.bad);
        if let (Some(s), Some(ls)) = (scaler.as_mut(), cfg.loss_scale.as_ref()) {
            s.update(ls, bad.is_some());
        }
        stats.steps = step;
        stats.losses.push(done.loss);
        stats.grad_norms.push(norm);
        stats.lrs.push(lr);
        stats.tokens += done.tokens;
        stats.final_loss = done.loss;
        stats.running_loss = stats.running();
        let step_secs = step_start.elapsed().as_secs_f64();
        observer.on_step(&StepRecord {
            step,
            loss: done.loss,
            learning_rate: lr,
            grad_norm: norm,
            num_tokens: done.tokens,
            tokens_per_second: done.tokens as f64 / step_secs.max(1e-9),
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
        // transformers' warmup starts at lr 0, so step 1 shows 0: say why.
        let warming = if step <= cfg.warmup_steps {
            " (warmup)"
        } else {
            ""
        };
        let msg = format!(
            "loss (mean of last {RUNNING_LOSS_STEPS}) {:.4} lr {lr:.2e}{warming} gnorm {norm:.3} \
             {tps:.0} tok/s",
            stats.running_loss
        );
        pb.set_message(msg);
        pb.set_position(step);
        let t_cb = Instant::now();
        if cfg.eval_every.is_some_and(|e| step % e == 0) {
            let eval: Evaluation = pb.suspend(|| eval_fn(engine.model(), step)).into();
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
                let records = engine.optimizer().to_record();
                let tensors = collect::<B, M>(engine.model(), &|id| records.get(&id).cloned());
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
                    |dir| checkpoint_fn(engine.model(), step, dir),
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
            "trained {which} in {:.1}s: final loss {:.4} (mean of the last {} steps {:.4}), \
             {:.0} tok/s{skipped}",
            stats.wall_secs,
            stats.final_loss,
            stats.losses.len().clamp(1, RUNNING_LOSS_STEPS),
            stats.running_loss,
            stats.tokens_per_sec
        );
    }
    Ok((engine.finish()?, stats))
}
