//! The hyper-parameters of the loop and their range checks.

use crate::error::TrainError;
use crate::scaler::LossScaleConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Hyper-parameters of [`train`](fn@crate::train). Defaults follow `torch.optim.AdamW` (betas (0.9, 0.999),
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
    /// Linear warmup length in optimizer steps (see [`linear_warmup_lr`](crate::linear_warmup_lr)).
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
    /// Write `<output_dir>/checkpoint-<step>/` every this many optimizer steps (needs
    /// `output_dir`); see [`crate::checkpoint_path`].
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints are written.
    pub output_dir: Option<PathBuf>,
    /// Keep at most this many checkpoints, removing the oldest (transformers'
    /// `save_total_limit`); `None` keeps all.
    pub save_total_limit: Option<usize>,
    /// A checkpoint directory to continue from (same config and model), or `None`.
    pub resume_from: Option<PathBuf>,
    /// Stop with [`TrainError::TooManyBadSteps`] after this many consecutive steps skipped
    /// for a non-finite loss or gradient norm (≥ 1).
    pub max_bad_steps: usize,
    /// Dynamic loss scaling (for f16 training), or `None`.
    pub loss_scale: Option<LossScaleConfig>,
    /// The caller's description of the run (flags, model): saved in each checkpoint and
    /// compared on resume, with the loop's own hyper-parameters.
    pub fingerprint: BTreeMap<String, String>,
    /// Seed of the backend's random stream (dropout masks): step s reseeds it with
    /// [`step_seed`](crate::step_seed)`(seed, s)`, so a resumed run draws the same masks.
    pub seed: u64,
    /// Show the progress bar / periodic log lines on stderr.
    pub progress: bool,
    /// Wall-clock budget of the training steps in seconds (eval and checkpoint callbacks not
    /// counted), or `None`. With a budget, training stops at `steps` or when the budget is spent,
    /// whichever comes first, and the decay after warmup follows whichever is further along:
    /// see [`budget_lr`](crate::budget_lr). Lets a run fit a fixed wall-clock allowance without
    /// knowing the step time in advance.
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
            output_dir: None,
            save_total_limit: None,
            resume_from: None,
            max_bad_steps: 10,
            loss_scale: None,
            fingerprint: BTreeMap::new(),
            seed: 42,
            progress: true,
            time_budget_secs: None,
        }
    }
}

impl TrainConfig {
    /// Checks ranges: steps, grad_accum ≥ 1; lr, weight_decay finite ≥ 0; β in [0, 1);
    /// eps > 0; max_grad_norm > 0; eval/checkpoint intervals ≥ 1; `output_dir` with
    /// checkpoints; `max_bad_steps` ≥ 1; a loss scale with a positive finite start and factors.
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
        if self.checkpoint_every.is_some() && self.output_dir.is_none() {
            return bad("checkpoint_every needs an output_dir to write checkpoints to".into());
        }
        if self.max_bad_steps == 0 {
            return bad("max_bad_steps must be at least 1, got 0".into());
        }
        if let Some(ls) = &self.loss_scale {
            let ok = ls.init_scale.is_finite()
                && ls.init_scale > 0.0
                && ls.growth_factor > 1.0
                && ls.backoff_factor > 0.0
                && ls.backoff_factor < 1.0
                && ls.growth_interval > 0;
            if !ok {
                return bad(format!(
                    "loss_scale needs init_scale > 0, growth_factor > 1, backoff_factor in \
                     (0, 1) and growth_interval >= 1, got {ls:?}"
                ));
            }
        }
        Ok(())
    }

    /// The loop's own hyper-parameters as checkpoint fingerprint fields (`train.<name>`), with
    /// the caller's [`TrainConfig::fingerprint`]: what must match for a resume to be exact.
    pub fn full_fingerprint(&self) -> BTreeMap<String, String> {
        let mut f = self.fingerprint.clone();
        let mut put = |k: &str, v: String| {
            f.insert(format!("train.{k}"), v);
        };
        put("steps", self.steps.to_string());
        put("grad_accum", self.grad_accum.to_string());
        put("lr", format!("{:?}", self.lr));
        put("warmup_steps", self.warmup_steps.to_string());
        put("weight_decay", format!("{:?}", self.weight_decay));
        put("betas", format!("{:?}", (self.beta1, self.beta2)));
        put("eps", format!("{:?}", self.eps));
        put("max_grad_norm", format!("{:?}", self.max_grad_norm));
        put("seed", self.seed.to_string());
        put("loss_scale", format!("{:?}", self.loss_scale));
        put("time_budget_secs", format!("{:?}", self.time_budget_secs));
        f
    }
}
