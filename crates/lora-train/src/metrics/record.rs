//! The records of `metrics.jsonl`: one training step, one evaluation; their JSON lines.

use serde_json::{Map, Value};

/// One optimizer step, as the loop reports it to a [`TrainObserver`](crate::TrainObserver).
/// Field names follow transformers' `Trainer.state.log_history` where one exists.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// 1-based optimizer step.
    pub step: usize,
    /// The step's loss (mean over its micro-batches); NaN or infinite for a skipped step.
    pub loss: f64,
    /// Learning rate the step used.
    pub learning_rate: f64,
    /// Pre-clip global L2 gradient norm; NaN when the loss was already non-finite.
    pub grad_norm: f64,
    /// Tokens of the step, as the loss function reported them.
    pub num_tokens: usize,
    /// `num_tokens` over the step's wall time (forward, backward, optimizer; not the callbacks).
    pub tokens_per_second: f64,
    /// The step was skipped for a non-finite loss or gradient norm (weights unchanged).
    pub skipped: bool,
    /// The loss scale after the step, when f16 loss scaling is on.
    pub loss_scale: Option<f64>,
    /// Training seconds since the start of the run (wall clock without the evaluation and
    /// checkpoint callbacks; a resumed run continues the checkpoint's count).
    pub elapsed_seconds: f64,
}

/// One evaluation: at step 0 (before training), after a step (the loop's periodic one), or
/// at the last step (after training).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRecord {
    /// The optimizer step it followed (0 before training).
    pub step: usize,
    /// Named metrics, transformers' style (`eval_accuracy`, `eval_loss`, `eval_perplexity`);
    /// NaN when not finite.
    pub metrics: Vec<(String, f64)>,
    /// Seconds the evaluation took (transformers' `eval_runtime`).
    pub eval_runtime: f64,
}

/// What an evaluation callback of [`train`](fn@crate::train) returns: the summary line the
/// loop prints, and the metrics it passes on to the observer as an [`EvalRecord`]. A plain
/// `String` converts into one without metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// The line printed after `eval @ step N: `.
    pub summary: String,
    /// Named metrics (`eval_accuracy`, ...).
    pub metrics: Vec<(String, f64)>,
}

impl Evaluation {
    /// An evaluation with the summary line `summary` and no metric yet.
    pub fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            metrics: Vec::new(),
        }
    }

    /// Adds the metric `name` (for example `eval_accuracy`) with `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.push((name.into(), value));
        self
    }
}

impl From<String> for Evaluation {
    fn from(summary: String) -> Self {
        Self::new(summary)
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsRecord {
    /// A training step (the line has `loss`).
    Train(StepRecord),
    /// An evaluation (no `loss`; `eval_*` fields).
    Eval(EvalRecord),
}

/// A number as JSON: `null` when not finite (JSON has no NaN).
fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

impl MetricsRecord {
    /// The step the record belongs to.
    pub fn step(&self) -> usize {
        match self {
            Self::Train(r) => r.step,
            Self::Eval(r) => r.step,
        }
    }

    /// The record as one JSON object (no newline), `step` first: a training step as
    /// `{"step", "loss", "learning_rate", "grad_norm", "num_tokens", "tokens_per_second",
    /// "skipped", ["loss_scale",] "elapsed_seconds"}`, an evaluation as `{"step", <its metrics>,
    /// "eval_runtime"}`; non-finite numbers as `null`.
    pub fn to_json_line(&self) -> String {
        let mut fields: Vec<(String, Value)> = Vec::new();
        match self {
            Self::Train(r) => {
                fields.push(("step".into(), r.step.into()));
                fields.push(("loss".into(), num(r.loss)));
                fields.push(("learning_rate".into(), num(r.learning_rate)));
                fields.push(("grad_norm".into(), num(r.grad_norm)));
                fields.push(("num_tokens".into(), r.num_tokens.into()));
                fields.push(("tokens_per_second".into(), num(r.tokens_per_second)));
                fields.push(("skipped".into(), r.skipped.into()));
                if let Some(s) = r.loss_scale {
                    fields.push(("loss_scale".into(), num(s)));
                }
                fields.push(("elapsed_seconds".into(), num(r.elapsed_seconds)));
            }
            Self::Eval(r) => {
                fields.push(("step".into(), r.step.into()));
                for (k, v) in &r.metrics {
                    fields.push((k.clone(), num(*v)));
                }
                fields.push(("eval_runtime".into(), num(r.eval_runtime)));
            }
        }
        // Written by hand to keep the field order (serde_json's map sorts its keys).
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Parses one line written by [`to_json_line`](Self::to_json_line) (or by hand: missing
    /// numbers read as NaN, a missing `skipped` as false). A line with `loss` is a training
    /// step; any other is an evaluation, whose metrics are its `eval_*` fields but
    /// `eval_runtime`.
    ///
    /// # Errors
    /// Not a JSON object, or no non-negative integer `step`: a message naming what is wrong.
    pub fn from_json_line(line: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("not a JSON object".into());
        };
        let step = map
            .get("step")
            .and_then(Value::as_u64)
            .ok_or("no non-negative integer \"step\"")? as usize;
        let f =
            |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        if map.contains_key("loss") {
            return Ok(Self::Train(StepRecord {
                step,
                loss: f(&map, "loss"),
                learning_rate: f(&map, "learning_rate"),
                grad_norm: f(&map, "grad_norm"),
                num_tokens: map.get("num_tokens").and_then(Value::as_u64).unwrap_or(0) as usize,
                tokens_per_second: f(&map, "tokens_per_second"),
                skipped: map.get("skipped").and_then(Value::as_bool).unwrap_or(false),
                loss_scale: map.get("loss_scale").and_then(Value::as_f64),
                elapsed_seconds: f(&map, "elapsed_seconds"),
            }));
        }
        let metrics = map
            .iter()
            .filter(|(k, _)| k.starts_with("eval_") && k.as_str() != "eval_runtime")
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
            .collect();
        Ok(Self::Eval(EvalRecord {
            step,
            metrics,
            eval_runtime: f(&map, "eval_runtime"),
        }))
    }
}
