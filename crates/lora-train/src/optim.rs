//! The optimizer: burn's AdamW configured to PyTorch's AdamW.
//!
//! ## AdamW
//! burn 0.21's `AdamW` (`burn-optim-0.21.0/src/optim/adamw.rs`) computes, per step t,
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`,
//! `p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + eps)`: the same update as `torch.optim.AdamW`
//! (decoupled weight decay applied to the pre-update parameter, eps outside the square root,
//! both moments bias-corrected; `amsgrad=False`). Only its defaults differ (eps 1e-5, weight
//! decay 1e-4), so [`adamw_optimizer`] sets every hyper-parameter explicitly from
//! [`TrainConfig`]. `tests/optim.rs` checks three steps against that formula computed in f64.

use crate::config::TrainConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;

/// The optimizer of the loop: burn's AdamW adapted to a module `M`.
pub type AdamWOptimizer<B, M> = OptimizerAdaptor<AdamW, M, B>;

/// burn's AdamW with every hyper-parameter taken from `cfg` (β1, β2, eps, weight_decay), no
/// per-tensor clipping, no AMSGrad. Its update equals `torch.optim.AdamW`'s (module docs).
pub fn adamw_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    cfg: &TrainConfig,
) -> AdamWOptimizer<B, M> {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(cfg.weight_decay as f32)
        .with_cautious_weight_decay(false)
        .with_amsgrad(false)
        .init()
}
