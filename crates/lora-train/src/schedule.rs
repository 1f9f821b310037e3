//! Learning-rate schedules: transformers' linear warmup/decay, and its wall-clock-budget variant.

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
