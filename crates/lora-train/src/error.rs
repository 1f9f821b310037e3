//! The error type of the training loop.

/// Errors of the training loop. Steps are 1-based optimizer steps.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A [`TrainConfig`](crate::TrainConfig) field is out of range.
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
    /// A micro-batch loss was NaN or infinite.
    #[error("non-finite loss {value} at step {step} (micro-batch {micro})")]
    NonFiniteLoss {
        /// 1-based optimizer step.
        step: usize,
        /// 0-based micro-batch within the step.
        micro: usize,
        /// The loss value.
        value: f64,
    },
    /// The global gradient norm was NaN or infinite.
    #[error("non-finite gradient norm {value} at step {step}")]
    NonFiniteGradNorm {
        /// 1-based optimizer step.
        step: usize,
        /// The norm.
        value: f64,
    },
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
    /// The checkpoint callback returned an error.
    #[error("checkpoint failed at step {step}: {message}")]
    Checkpoint {
        /// 1-based optimizer step.
        step: usize,
        /// Its message.
        message: String,
    },
}
