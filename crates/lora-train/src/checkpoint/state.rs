//! `trainer_state.json`: where a run stood when its checkpoint was written.

use crate::scaler::LossScaler;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` value of every `trainer_state.json` this crate writes.
pub const TRAINER_STATE_FORMAT: &str = "lora-burn-trainer-state";

/// The loop's state after `global_step` optimizer steps (transformers' `trainer_state.json`
/// plays the same part): enough, with the weights and AdamW moments beside it, to continue the
/// run exactly. The learning-rate schedule and the data order are functions of the step and
/// the random stream is reseeded per step from `seed`, so none of them needs more than
/// `global_step`. Losses of skipped (non-finite) steps are stored as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Always [`TRAINER_STATE_FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Optimizer steps taken (the checkpoint is `checkpoint-<global_step>`).
    pub global_step: usize,
    /// What the run was: the loop's hyper-parameters and the caller's fields (flags, model).
    /// A resumed run must have the same.
    pub fingerprint: BTreeMap<String, String>,
    /// Per-step loss (`null` for a non-finite one).
    pub losses: Vec<Option<f64>>,
    /// Per-step pre-clip gradient norm (`null` when non-finite).
    pub grad_norms: Vec<Option<f64>>,
    /// Per-step learning rate.
    pub lrs: Vec<f64>,
    /// Tokens processed so far.
    pub tokens: usize,
    /// Steps skipped for a non-finite loss or gradient, in total.
    pub skipped_steps: usize,
    /// Skipped steps in a row at the end (the run stops at `max_bad_steps`).
    pub consecutive_bad_steps: usize,
    /// Training seconds spent (callbacks excluded), for a time budget.
    pub train_secs: f64,
    /// The loss scaler, when f16 loss scaling is on.
    pub loss_scaler: Option<LossScaler>,
}

/// Non-finite values as `None` (JSON has no NaN).
pub(crate) fn finite_or_none(v: &[f64]) -> Vec<Option<f64>> {
    v.iter().map(|x| x.is_finite().then_some(*x)).collect()
}

/// `None` back to NaN.
pub(crate) fn none_as_nan(v: &[Option<f64>]) -> Vec<f64> {
    v.iter().map(|x| x.unwrap_or(f64::NAN)).collect()
}

/// The first field whose value differs between the checkpoint's fingerprint `saved` and this
/// run's `now`, as `(field, saved value, value now)`; a field missing on one side reads as
/// `"(unset)"`.
pub fn fingerprint_difference(
    saved: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Option<(String, String, String)> {
    let unset = || "(unset)".to_string();
    let keys: std::collections::BTreeSet<&String> = saved.keys().chain(now.keys()).collect();
    keys.into_iter().find_map(|k| {
        let (a, b) = (saved.get(k), now.get(k));
        (a != b).then(|| {
            (
                k.clone(),
                a.cloned().unwrap_or_else(unset),
                b.cloned().unwrap_or_else(unset),
            )
        })
    })
}
