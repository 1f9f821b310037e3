//! The error type of the training loop.

/// Errors of the training loop. Steps are 1-based optimizer steps.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A [`TrainConfig`](crate::TrainConfig) field is out of range.
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
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
    /// Too many consecutive steps were skipped for a non-finite loss or gradient norm.
    #[error(
        "{count} steps in a row up to step {step} had a non-finite loss or gradient norm and were \
         skipped; stopping. Last good checkpoint: {}",
        last_checkpoint.as_ref().map_or("none".to_string(), |p| p.display().to_string())
    )]
    TooManyBadSteps {
        /// 1-based optimizer step of the last bad one.
        step: usize,
        /// Consecutive bad steps.
        count: usize,
        /// The last checkpoint written or resumed from.
        last_checkpoint: Option<std::path::PathBuf>,
    },
    /// The checkpoint to resume from cannot be used.
    #[error("cannot resume from {}: {message}", path.display())]
    Resume {
        /// The checkpoint directory.
        path: std::path::PathBuf,
        /// What is wrong (the differing field, the missing tensor, the unreadable file).
        message: String,
    },
    /// The checkpoint callback returned an error.
    #[error("checkpoint failed at step {step}: {message}")]
    Checkpoint {
        /// 1-based optimizer step.
        step: usize,
        /// Its message.
        message: String,
    },
    /// burn's collective (the data-parallel all-reduce) failed, or a replica's thread panicked.
    #[error("data-parallel collective failed: {0}")]
    Collective(String),
    /// The metrics file or figure cannot be read or written.
    #[error("{}: {message}", path.display())]
    Metrics {
        /// `metrics.jsonl` or `loss.png`.
        path: std::path::PathBuf,
        /// What failed (the system's error, the line that is not a record).
        message: String,
    },
}
