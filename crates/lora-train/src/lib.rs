//! # lora-train — a small, generic training loop
//!
//! AdamW with PyTorch semantics ([`adamw_optimizer`]), transformers' linear warmup/decay
//! schedule ([`linear_warmup_lr`], [`budget_lr`]), global-norm gradient clipping
//! ([`clip_grad_norm`], as `torch.nn.utils.clip_grad_norm_`), gradient accumulation
//! ([`accumulate_grads`]), a progress bar, periodic evaluation and checkpoint callbacks
//! ([`train()`]). It knows nothing of the data or the model: batches come from the caller's
//! `next_batch`, the loss from its `loss_fn`.

#![warn(missing_docs)]

mod accumulate;
mod clip;
mod config;
mod error;
mod optim;
mod progress;
mod run;
mod schedule;

pub use accumulate::{accumulate_grads, AccumulatedGrads};
pub use clip::{clip_grad_norm, grad_norm};
pub use config::TrainConfig;
pub use error::TrainError;
pub use optim::adamw_optimizer;
pub use run::{train, TrainStats};
pub use schedule::{budget_lr, linear_warmup_lr};
