//! Gradient accumulation over the micro-batches of one optimizer step.

use crate::error::TrainError;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// Gradients of one optimizer step, accumulated over micro-batches.
#[derive(Debug)]
pub struct AccumulatedGrads {
    /// Gradients of `loss_scale · mean_i loss_i` (each micro-batch loss scaled by
    /// `loss_scale / n` before backward, as transformers and `GradScaler` do), keyed by
    /// parameter id, on the inner backend. Empty when `bad_loss` is set.
    pub grads: GradientsParams,
    /// Mean of the micro-batch losses (unscaled), or the first non-finite one.
    pub loss: f64,
    /// Tokens reported by the loss function, summed.
    pub tokens: usize,
    /// The first micro-batch whose loss was NaN or infinite, `(micro, value)`: the step must be
    /// skipped (no further micro-batch was run).
    pub bad_loss: Option<(usize, f64)>,
}

/// Runs `loss_fn` on `micro_batches` batches from `next_batch(0..micro_batches)` and
/// accumulates the gradients of `loss_i · loss_scale / micro_batches`. `loss_fn` returns the
/// scalar loss (`[1]` tensor, a mean over the micro-batch) and the number of tokens it
/// processed. A non-finite loss stops the accumulation and is reported in
/// [`AccumulatedGrads::bad_loss`]. `step` is only used in error messages (1-based).
///
/// Errors: [`TrainError::Loss`] if `loss_fn` fails.
pub fn accumulate_grads<B, M, T, N, F>(
    model: &M,
    micro_batches: usize,
    mut next_batch: N,
    loss_fn: &F,
    step: usize,
    loss_scale: f64,
) -> Result<AccumulatedGrads, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    N: FnMut(usize) -> T,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
{
    let n = micro_batches.max(1);
    let mut acc = GradientsAccumulator::<M>::new();
    let mut loss_sum = 0.0;
    let mut tokens = 0;
    for micro in 0..n {
        let batch = next_batch(micro);
        let (loss, tok) =
            loss_fn(model, &batch).map_err(|message| TrainError::Loss { step, message })?;
        let value: f64 = loss.clone().into_scalar().elem();
        tokens += tok;
        if !value.is_finite() {
            return Ok(AccumulatedGrads {
                grads: GradientsParams::new(),
                loss: value,
                tokens,
                bad_loss: Some((micro, value)),
            });
        }
        loss_sum += value;
        let loss = if loss_scale == 1.0 {
            loss
        } else {
            loss.mul_scalar(loss_scale)
        };
        let grads = if n == 1 {
            loss.backward()
        } else {
            loss.div_scalar(n as f64).backward()
        };
        acc.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    Ok(AccumulatedGrads {
        grads: acc.grads(),
        loss: loss_sum / n as f64,
        tokens,
        bad_loss: None,
    })
}
