//! What a run records besides its checkpoints: a [`StepRecord`] per optimizer step and an
//! [`EvalRecord`] per evaluation, handed to a [`TrainObserver`]; [`MetricsLog`] writes them
//! to `metrics.jsonl` (transformers' `log_history` field names, one JSON object per line) and
//! draws `loss.png` from them ([`plot_metrics`], feature `plot`), with the loss smoothed as
//! TensorBoard does ([`ema`]).

mod log;
mod observer;
#[cfg(feature = "plot")]
mod plot;
mod record;
mod smooth;

pub use log::{MetricsLog, LOSS_PLOT_FILE, METRICS_FILE};
pub use observer::TrainObserver;
#[cfg(feature = "plot")]
pub use plot::{plot_metrics, LOSS_PLOT_SIZE};
pub use record::{EvalRecord, Evaluation, MetricsRecord, StepRecord};
pub use smooth::{ema, LOSS_SMOOTHING};
