//! A small, generic training loop: AdamW (PyTorch semantics), transformers' linear warmup/decay
//! schedule, global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`), gradient
//! accumulation, progress bar, periodic evaluation and checkpoints.
//!
//! ## AdamW
//! burn 0.21's `AdamW` (`burn-optim-0.21.0/src/optim/adamw.rs`) computes, per step t,
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`,
//! `p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + eps)`: the same update as `torch.optim.AdamW`
//! (decoupled weight decay applied to the pre-update parameter, eps outside the square root,
//! both moments bias-corrected; `amsgrad=False`). Only its defaults differ (eps 1e-5, weight
//! decay 1e-4), so [`adamw_optimizer`] sets every hyper-parameter explicitly from
//! [`TrainConfig`]. `tests/train.rs` checks two steps against that formula computed in f64.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;

use std::time::Instant;

/// Errors of the training loop. Steps are 1-based optimizer steps.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A [`TrainConfig`] field is out of range.
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
    /// A micro-batch loss was NaN or infinite.
    #[error("non-finite loss {value} at step {step} (micro-batch {micro})")]
    NonFiniteLoss {
        /// 1-based optimizer step.
        step: usize,
        /// 0-based micro-batch within the step.
        micro: usize,
        /// The loss value.
        value: f64,
    },
    /// The global gradient norm was NaN or infinite.
    #[error("non-finite gradient norm {value} at step {step}")]
    NonFiniteGradNorm {
        /// 1-based optimizer step.
        step: usize,
        /// The norm.
        value: f64,
    },
    /// The loss function returned an error.
    #[error("loss function failed at step {step}: {message}")]
    Loss {
        /// 1-based optimizer step.
        step: usize,
        /// Its message.
        message: String,
    },
    /// No parameter of the model received a gradient (everything frozen, or the loss does not
    /// depend on any trainable parameter): training would silently do nothing.
    #[error("no trainable parameter received a gradient at step {step}")]
    NoGradients {
        /// 1-based optimizer step.
        step: usize,
    },
    /// The checkpoint callback returned an error.
    #[error("checkpoint failed at step {step}: {message}")]
    Checkpoint {
        /// 1-based optimizer step.
        step: usize,
        /// Its message.
        message: String,
    },
}

/// Hyper-parameters of [`train`]. Defaults follow `torch.optim.AdamW` (betas (0.9, 0.999),
/// eps 1e-8, weight_decay 0.01) and transformers' `max_grad_norm = 1.0`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Number of optimizer steps (≥ 1).
    pub steps: usize,
    /// Examples per micro-batch. The loop does not read it (batches come from the caller's
    /// `next_batch`); it is here so callers keep one config.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (≥ 1); the step's loss is their mean.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup length in optimizer steps (see [`linear_warmup_lr`]).
    pub warmup_steps: usize,
    /// Decoupled weight decay (PyTorch AdamW default 0.01).
    pub weight_decay: f64,
    /// Adam β1 (0.9).
    pub beta1: f64,
    /// Adam β2 (0.999).
    pub beta2: f64,
    /// Adam ε, added to √v̂ (1e-8).
    pub eps: f64,
    /// Global L2 gradient-norm clip (`Some(1.0)`); `None` disables clipping (the norm is still
    /// computed and logged).
    pub max_grad_norm: Option<f64>,
    /// Call `eval_fn` every this many optimizer steps.
    pub eval_every: Option<usize>,
    /// Call `checkpoint_fn` every this many optimizer steps.
    pub checkpoint_every: Option<usize>,
    /// Seed passed to `B::seed` at the start (dropout masks, random init on the backend).
    pub seed: u64,
    /// Show the progress bar / periodic log lines on stderr.
    pub progress: bool,
    /// Wall-clock budget of the training steps in seconds (eval and checkpoint callbacks not
    /// counted), or `None`. With a budget, training stops at `steps` or when the budget is spent,
    /// whichever comes first, and the decay after warmup follows whichever is further along:
    /// see [`budget_lr`]. Used to fit a run into a fixed device window without knowing the
    /// step time in advance.
    pub time_budget_secs: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 8,
            grad_accum: 1,
            lr: 2e-4,
            warmup_steps: 0,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: Some(1.0),
            eval_every: None,
            checkpoint_every: None,
            seed: 42,
            progress: true,
            time_budget_secs: None,
        }
    }
}

impl TrainConfig {
    /// Checks ranges: steps, grad_accum ≥ 1; lr, weight_decay finite ≥ 0; β in [0, 1);
    /// eps > 0; max_grad_norm > 0; eval/checkpoint intervals ≥ 1.
    ///
    /// Errors: [`TrainError::InvalidConfig`] naming the field and value.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::InvalidConfig(m));
        if self.steps == 0 {
            return bad("steps must be at least 1, got 0".into());
        }
        if self.grad_accum == 0 {
            return bad("grad_accum must be at least 1, got 0".into());
        }
        for (name, v) in [("lr", self.lr), ("weight_decay", self.weight_decay)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be finite and >= 0, got {v}"));
            }
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1), got {v}"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps must be finite and > 0, got {}", self.eps));
        }
        if let Some(m) = self.max_grad_norm {
            if !(m.is_finite() && m > 0.0) {
                return bad(format!("max_grad_norm must be finite and > 0, got {m}"));
            }
        }
        if let Some(b) = self.time_budget_secs {
            if !(b.is_finite() && b > 0.0) {
                return bad(format!("time_budget_secs must be finite and > 0, got {b}"));
            }
        }
        for (name, v) in [
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if v == Some(0) {
                return bad(format!("{name} must be at least 1 when set, got 0"));
            }
        }
        Ok(())
    }
}

/// Learning rate of transformers' `get_linear_schedule_with_warmup` (wrapped in torch's
/// `LambdaLR`) after `step` optimizer steps (0-based: the first update uses `step = 0`):
/// `base_lr · step / max(1, warmup)` while `step < warmup`, then
/// `base_lr · max(0, (total − step) / max(1, total − warmup))`. With warmup > 0 the very first
/// update therefore uses lr 0, exactly as in transformers.
pub fn linear_warmup_lr(base_lr: f64, step: usize, warmup_steps: usize, total_steps: usize) -> f64 {
    if step < warmup_steps {
        return base_lr * step as f64 / warmup_steps.max(1) as f64;
    }
    let rem = total_steps.saturating_sub(step) as f64;
    base_lr * (rem / total_steps.saturating_sub(warmup_steps).max(1) as f64).max(0.0)
}

/// Learning rate under a wall-clock budget: [`linear_warmup_lr`] during warmup, then
/// `base_lr · max(0, min((total − step) / (total − warmup), 1 − elapsed / budget))`, i.e. the
/// linear decay reaches 0 at the step limit or at the end of the budget, whichever comes first.
/// `elapsed_secs` is the training time spent before this step. Without a budget this equals
/// [`linear_warmup_lr`].
pub fn budget_lr(
    base_lr: f64,
    step: usize,
    warmup_steps: usize,
    total_steps: usize,
    elapsed_secs: f64,
    budget_secs: Option<f64>,
) -> f64 {
    let by_steps = linear_warmup_lr(base_lr, step, warmup_steps, total_steps);
    match budget_secs {
        Some(b) if step >= warmup_steps => {
            by_steps.min(base_lr * (1.0 - elapsed_secs / b).max(0.0))
        }
        _ => by_steps,
    }
}

/// burn's AdamW with every hyper-parameter taken from `cfg` (β1, β2, eps, weight_decay), no
/// per-tensor clipping, no AMSGrad. Its update equals `torch.optim.AdamW`'s (module docs).
pub fn adamw_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    cfg: &TrainConfig,
) -> OptimizerAdaptor<AdamW, M, B> {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(cfg.weight_decay as f32)
        .with_cautious_weight_decay(false)
        .with_amsgrad(false)
        .init()
}

struct SquaredNorms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(g.square().sum());
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Global L2 norm `sqrt(Σ_p ‖g_p‖²)` over the gradients in `grads` of all float parameters of
/// `module` (parameters without a gradient, e.g. frozen ones, are skipped). One device sync.
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut v = SquaredNorms::<B> {
        grads,
        sums: Vec::new(),
    };
    module.visit(&mut v);
    if v.sums.is_empty() {
        return 0.0;
    }
    Tensor::cat(v.sums, 0)
        .into_data()
        .iter::<f64>()
        .sum::<f64>()
        .sqrt()
}

/// Global-norm clipping like `torch.nn.utils.clip_grad_norm_(params, max_norm)`: computes the
/// total norm over all parameter gradients ([`grad_norm`]), and when
/// `max_norm / (total + 1e-6) < 1` multiplies every gradient by that coefficient (direction
/// unchanged, new norm ≈ `max_norm`). Returns the pre-clip total norm. A non-finite norm is
/// returned as is and nothing is scaled (the loop reports it as an error).
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let total = grad_norm::<B, M>(module, grads);
    let coef = max_norm / (total + 1e-6);
    if total.is_finite() && coef < 1.0 {
        let mut v = ScaleGrads {
            grads,
            factor: coef,
        };
        module.visit(&mut v);
    }
    total
}

/// Gradients of one optimizer step, accumulated over micro-batches.
#[derive(Debug)]
pub struct AccumulatedGrads {
    /// Gradients of `mean_i loss_i` (each micro-batch loss scaled by `1/n` before backward, as
    /// transformers does), keyed by parameter id, on the inner backend.
    pub grads: GradientsParams,
    /// Mean of the micro-batch losses.
    pub loss: f64,
    /// Tokens reported by the loss function, summed.
    pub tokens: usize,
}

/// Runs `loss_fn` on `micro_batches` batches from `next_batch(0..micro_batches)` and
/// accumulates the gradients of `loss_i / micro_batches`. `loss_fn` returns the scalar loss
/// (`[1]` tensor, a mean over the micro-batch) and the number of tokens it processed. `step` is
/// only used in error messages (1-based).
///
/// Errors: [`TrainError::Loss`] if `loss_fn` fails, [`TrainError::NonFiniteLoss`] naming the
/// step and micro-batch.
pub fn accumulate_grads<B, M, T, N, F>(
    model: &M,
    micro_batches: usize,
    mut next_batch: N,
    loss_fn: &F,
    step: usize,
) -> Result<AccumulatedGrads, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    N: FnMut(usize) -> T,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
{
    let n = micro_batches.max(1);
    let mut acc = GradientsAccumulator::<M>::new();
    let mut loss_sum = 0.0;
    let mut tokens = 0;
    for micro in 0..n {
        let batch = next_batch(micro);
        let (loss, tok) =
            loss_fn(model, &batch).map_err(|message| TrainError::Loss { step, message })?;
        let value: f64 = loss.clone().into_scalar().elem();
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss { step, micro, value });
        }
        loss_sum += value;
        tokens += tok;
        let grads = if n == 1 {
            loss.backward()
        } else {
            loss.div_scalar(n as f64).backward()
        };
        acc.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    Ok(AccumulatedGrads {
        grads: acc.grads(),
        loss: loss_sum / n as f64,
        tokens,
    })
}

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
/// Per step s (1-based): lr = [`linear_warmup_lr`]`(cfg.lr, s−1, cfg.warmup_steps, cfg.steps)`;
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
    let pb = if cfg.progress {
        let pb = ProgressBar::new(cfg.steps as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
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

pub use lora_core::atomic_write;
