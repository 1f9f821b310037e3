//! The seam through which the loop reports what happens, for logs, files and plots.

use super::record::{EvalRecord, StepRecord};
use crate::error::TrainError;
use std::path::Path;

/// Receives the loop's events (burn-train's metric loggers and transformers'
/// `TrainerCallback.on_log` play the same part). Every method defaults to doing nothing; an
/// error stops the run with that error. [`MetricsLog`](crate::MetricsLog) is the one that
/// writes `metrics.jsonl` and `loss.png`; `()` observes nothing.
pub trait TrainObserver {
    /// Before the first step: `first_step` is 1, or the resumed checkpoint's step + 1.
    ///
    /// # Errors
    /// The observer's own (for example a file it cannot write).
    fn on_start(&mut self, first_step: usize) -> Result<(), TrainError> {
        let _ = first_step;
        Ok(())
    }

    /// After each optimizer step, skipped ones included.
    ///
    /// # Errors
    /// The observer's own.
    fn on_step(&mut self, record: &StepRecord) -> Result<(), TrainError> {
        let _ = record;
        Ok(())
    }

    /// After each periodic evaluation (`eval_every`), with the metrics the evaluation
    /// callback returned and the seconds it took.
    ///
    /// # Errors
    /// The observer's own.
    fn on_eval(&mut self, record: &EvalRecord) -> Result<(), TrainError> {
        let _ = record;
        Ok(())
    }

    /// After the checkpoint of `step` was written to `dir`.
    ///
    /// # Errors
    /// The observer's own.
    fn on_checkpoint(&mut self, step: usize, dir: &Path) -> Result<(), TrainError> {
        let _ = (step, dir);
        Ok(())
    }
}

impl TrainObserver for () {}

impl<T: TrainObserver + ?Sized> TrainObserver for &mut T {
    fn on_start(&mut self, first_step: usize) -> Result<(), TrainError> {
        (**self).on_start(first_step)
    }
    fn on_step(&mut self, record: &StepRecord) -> Result<(), TrainError> {
        (**self).on_step(record)
    }
    fn on_eval(&mut self, record: &EvalRecord) -> Result<(), TrainError> {
        (**self).on_eval(record)
    }
    fn on_checkpoint(&mut self, step: usize, dir: &Path) -> Result<(), TrainError> {
        (**self).on_checkpoint(step, dir)
    }
}
