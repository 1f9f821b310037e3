#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! AdamW with PyTorch semantics ([`adamw_optimizer`]), transformers' linear warmup/decay
//! schedule ([`linear_warmup_lr`], [`budget_lr`]), global-norm gradient clipping
//! ([`clip_grad_norm`], as `torch.nn.utils.clip_grad_norm_`), gradient accumulation
//! ([`accumulate_grads`]), a progress bar, periodic evaluation and checkpoint callbacks
//! ([`train()`]), a guard that skips steps with a non-finite loss or gradient, dynamic loss
//! scaling for f16 ([`LossScaleConfig`], as `torch.amp.GradScaler`), and checkpoints a run
//! resumes from bit-exactly ([`checkpoint_path`], [`TrainerState`]). It knows nothing of the
//! data or the model: batches come from the caller's `next_batch`, the loss from its
//! `loss_fn`.
//!
//! What happens during a run reaches a [`TrainObserver`] ([`train_observed`]): per-step
//! [`StepRecord`]s and per-evaluation [`EvalRecord`]s, which [`MetricsLog`] appends to
//! `metrics.jsonl` and draws into `loss.png` ([`plot_metrics`], feature `plot`, on by
//! default). [`Progress`] is the one progress display of the workspace: a bar on a terminal,
//! periodic lines in a log.
//!
//! [`DataParallel`] (feature `parallel`, on by default) trains replicas of a model on several
//! devices in lockstep, averaging the trainable parameters' gradients with burn's collective
//! all-reduce; [`train_data_parallel`] is the training loop on it.
//!
//! [`linear_cross_entropy_sum`] is a language model's next-token loss over a large vocabulary
//! computed in row chunks, without the whole `[rows, vocab]` logits.

#![warn(missing_docs)]

mod accumulate;
mod checkpoint;
mod clip;
mod config;
mod engine;
mod error;
mod loss;
mod metrics;
mod optim;
#[cfg(feature = "parallel")]
mod parallel;
mod progress;
mod resume;
mod rng;
mod run;
mod scaler;
mod schedule;

pub use accumulate::{accumulate_grads, AccumulatedGrads};
pub use checkpoint::{
    checkpoint_path, fingerprint_difference, list_checkpoints, TrainerState, TRAINER_STATE_FILE,
    TRAINER_STATE_FORMAT, TRAINING_STATE_FILE,
};
pub use clip::{clip_grad_norm, grad_norm};
pub use config::TrainConfig;
pub use error::TrainError;
pub use loss::{default_chunk_rows, linear_cross_entropy_sum};
pub use metrics::{
    ema, EvalRecord, Evaluation, MetricsLog, MetricsRecord, StepRecord, TrainObserver,
    LOSS_PLOT_FILE, LOSS_SMOOTHING, METRICS_FILE,
};
#[cfg(feature = "plot")]
pub use metrics::{plot_metrics, LOSS_PLOT_SIZE};
pub use optim::{adamw_optimizer, AdamWOptimizer};
#[cfg(feature = "parallel")]
pub use parallel::{DataParallel, ParallelStep};
pub use progress::Progress;
pub use rng::step_seed;
#[cfg(feature = "parallel")]
pub use run::train_data_parallel;
pub use run::{train, train_observed, TrainStats, RUNNING_LOSS_STEPS};
pub use scaler::{LossScaleConfig, LossScaler};
pub use schedule::{budget_lr, linear_warmup_lr};
