//! The hyper-parameters of the loop and their range checks.

use crate::error::TrainError;

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
    /// Call `checkpoint_fn` every this many optimizer steps.
    pub checkpoint_every: Option<usize>,
    /// Seed passed to `B::seed` at the start (dropout masks, random init on the backend).
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
