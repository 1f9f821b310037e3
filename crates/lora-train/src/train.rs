//! The loop's items under their module path `lora_train::train::*`, as imported by existing
//! callers; they are the same items as at the crate root.

pub use crate::accumulate::{accumulate_grads, AccumulatedGrads};
pub use crate::atomic_write;
pub use crate::clip::{clip_grad_norm, grad_norm};
pub use crate::config::TrainConfig;
pub use crate::error::TrainError;
pub use crate::optim::adamw_optimizer;
pub use crate::run::{train, TrainStats};
pub use crate::schedule::{budget_lr, linear_warmup_lr};
