//! Dynamic loss scaling for f16 training, as `torch.amp.GradScaler` does it.
//!
//! f16 gradients underflow below 6e-8; scaling the loss by `S` before backward scales every
//! gradient by `S`, and dividing them by `S` before the optimizer step restores them. Too large a
//! `S` overflows instead: then the step is skipped and `S` halves. After `growth_interval`
//! consecutive good steps `S` doubles. Source: PyTorch `torch/amp/grad_scaler.py`
//! (`_unscale_grads_`, `update`) and Micikevicius et al. 2018, §3.2.

use serde::{Deserialize, Serialize};

/// The scaler's hyper-parameters; the defaults are `GradScaler`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaleConfig {
    /// First scale (`init_scale`, 2¹⁶).
    pub init_scale: f64,
    /// Multiplier after `growth_interval` good steps (`growth_factor`, 2).
    pub growth_factor: f64,
    /// Multiplier after an overflow (`backoff_factor`, 0.5).
    pub backoff_factor: f64,
    /// Consecutive good steps before growing (`growth_interval`, 2000).
    pub growth_interval: usize,
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

/// The scaler's state: the current scale and the good steps since the last change
/// (`GradScaler`'s `_scale` and `_growth_tracker`). Saved in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current scale `S`.
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub growth_tracker: usize,
}

impl LossScaler {
    /// A scaler at `cfg.init_scale`.
    pub fn new(cfg: &LossScaleConfig) -> Self {
        Self {
            scale: cfg.init_scale,
            growth_tracker: 0,
        }
    }

    /// Records one step: `overflow` (a non-finite scaled gradient) multiplies the scale by
    /// `backoff_factor` and resets the tracker; otherwise the tracker counts up and at
    /// `growth_interval` the scale is multiplied by `growth_factor`.
    pub fn update(&mut self, cfg: &LossScaleConfig, overflow: bool) {
        if overflow {
            self.scale *= cfg.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker >= cfg.growth_interval {
                self.scale *= cfg.growth_factor;
                self.growth_tracker = 0;
            }
        }
    }
}
