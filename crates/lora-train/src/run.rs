//! The loop: schedule, accumulation, clipping, AdamW step, progress, eval and checkpoints.

use crate::accumulate::accumulate_grads;
use crate::clip::{clip_grad_norm, grad_norm};
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::optim::adamw_optimizer;
use crate::progress::progress_bar;
use crate::schedule::budget_lr;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use indicatif::ProgressBar;
use std::collections::VecDeque;
use std::time::Instant;

/// Summary of a [`train`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainStats {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Loss of the last step (mean over its micro-batches).
    pub final_loss: f64,
    /// Mean loss of the last (up to) 20 steps.
    pub running_loss: f64,
    /// Per-step loss.
    pub losses: Vec<f64>,
    /// Per-step pre-clip global gradient norm.
    pub grad_norms: Vec<f64>,
    /// Per-step learning rate used.
    pub lrs: Vec<f64>,
    /// Tokens processed (as reported by the loss function).
    pub tokens: usize,
    /// Wall time of the loop in seconds (eval and checkpoint callbacks included).
    pub wall_secs: f64,
    /// `tokens / wall_secs`.
    pub tokens_per_sec: f64,
}

/// Trains `model` for `cfg.steps` AdamW steps and returns it with [`TrainStats`].
///
/// Per step s (1-based): lr = [`linear_warmup_lr`](crate::linear_warmup_lr)`(cfg.lr, s−1, cfg.warmup_steps, cfg.steps)`;
/// gradients accumulated over `cfg.grad_accum` micro-batches ([`accumulate_grads`]), micro-batch
/// `k` of step `s` being `next_batch((s−1)·grad_accum + k)`; global-norm clipping
/// ([`clip_grad_norm`]) when `cfg.max_grad_norm` is set; one AdamW step
/// ([`adamw_optimizer`]). After step s, `eval_fn(&model, s)` runs when `s % eval_every == 0`
/// (its summary is printed) and `checkpoint_fn(&model, s)` when `s % checkpoint_every == 0`.
/// `B::seed(device, cfg.seed)` is called first so CPU runs repeat.
///
/// Progress: an indicatif bar on stderr with step, running-mean loss, lr, grad norm, tokens/s;
/// when stderr is not a terminal, about 20 log lines instead.
///
/// Errors: [`TrainError::InvalidConfig`], [`TrainError::Loss`],
/// [`TrainError::NonFiniteLoss`], [`TrainError::NonFiniteGradNorm`],
/// [`TrainError::NoGradients`], [`TrainError::Checkpoint`], each naming the step.
pub fn train<B, M, T, N, F, E, C>(
    mut model: M,
    cfg: &TrainConfig,
    device: &B::Device,
    mut next_batch: N,
    loss_fn: F,
    mut eval_fn: E,
    mut checkpoint_fn: C,
) -> Result<(M, TrainStats), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    N: FnMut(usize) -> T,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
    E: FnMut(&M, usize) -> String,
    C: FnMut(&M, usize) -> Result<(), String>,
{
    cfg.validate()?;
    <B as Backend>::seed(device, cfg.seed);
    let mut optim = adamw_optimizer::<B, M>(cfg);
    let pb = progress_bar(cfg.steps, cfg.progress);
    let log_lines = cfg.progress && pb.is_hidden();
    let log_every = (cfg.steps / 20).max(1);
    let say = |pb: &ProgressBar, line: String| {
        if cfg.progress {
            pb.suspend(|| eprintln!("{line}"));
        }
    };

    let start = Instant::now();
    let mut window: VecDeque<f64> = VecDeque::with_capacity(20);
    let mut stats = TrainStats {
        steps: 0,
        final_loss: f64::NAN,
        running_loss: f64::NAN,
        losses: Vec::with_capacity(cfg.steps),
        grad_norms: Vec::with_capacity(cfg.steps),
        lrs: Vec::with_capacity(cfg.steps),
        tokens: 0,
        wall_secs: 0.0,
        tokens_per_sec: 0.0,
    };
    let ga = cfg.grad_accum;
    // Training time so far, without the eval / checkpoint callbacks (for the time budget).
    let mut callback_secs = 0.0f64;
    let mut last_log = Instant::now();
    for step in 1..=cfg.steps {
        let elapsed = start.elapsed().as_secs_f64() - callback_secs;
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
        let lr = budget_lr(
            cfg.lr,
            step - 1,
            cfg.warmup_steps,
            cfg.steps,
            elapsed,
            cfg.time_budget_secs,
        );
        let acc = accumulate_grads(
            &model,
            ga,
            |k| next_batch((step - 1) * ga + k),
            &loss_fn,
            step,
        )?;
        let mut grads = acc.grads;
        if grads.is_empty() {
            return Err(TrainError::NoGradients { step });
        }
        let norm = match cfg.max_grad_norm {
            Some(max) => clip_grad_norm::<B, M>(&model, &mut grads, max),
            None => grad_norm::<B, M>(&model, &grads),
        };
        if !norm.is_finite() {
            return Err(TrainError::NonFiniteGradNorm { step, value: norm });
        }
        model = optim.step(lr, model, grads);

        stats.steps = step;
        stats.losses.push(acc.loss);
        stats.grad_norms.push(norm);
        stats.lrs.push(lr);
        stats.tokens += acc.tokens;
        if window.len() == 20 {
            window.pop_front();
        }
        window.push_back(acc.loss);
        let running = window.iter().sum::<f64>() / window.len() as f64;
        let tps = stats.tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let msg = format!("loss {running:.4} lr {lr:.2e} gnorm {norm:.3} {tps:.0} tok/s");
        pb.set_message(msg.clone());
        pb.set_position(step as u64);
        if log_lines
            && (step == 1
                || step % log_every == 0
                || step == cfg.steps
                || last_log.elapsed().as_secs_f64() >= 30.0)
        {
            last_log = Instant::now();
            say(&pb, format!("step {step}/{}: {msg}", cfg.steps));
        }
        let t_cb = Instant::now();
        if cfg.eval_every.is_some_and(|e| step % e == 0) {
            let summary = eval_fn(&model, step);
            say(&pb, format!("eval @ step {step}: {summary}"));
        }
        if cfg.checkpoint_every.is_some_and(|c| step % c == 0) {
            checkpoint_fn(&model, step)
                .map_err(|message| TrainError::Checkpoint { step, message })?;
        }
        callback_secs += t_cb.elapsed().as_secs_f64();
        stats.final_loss = acc.loss;
        stats.running_loss = running;
    }
    pb.finish_and_clear();
    stats.wall_secs = start.elapsed().as_secs_f64();
    stats.tokens_per_sec = stats.tokens as f64 / stats.wall_secs.max(1e-9);
    if cfg.progress {
        eprintln!(
            "trained {} steps in {:.1}s: final loss {:.4} (running {:.4}), {:.0} tok/s",
            stats.steps,
            stats.wall_secs,
            stats.final_loss,
            stats.running_loss,
            stats.tokens_per_sec
        );
    }
    Ok((model, stats))
}
