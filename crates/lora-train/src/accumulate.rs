//! Gradient accumulation over the micro-batches of one optimizer step.

use crate::error::TrainError;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// Gradients of one optimizer step, accumulated over micro-batches.
#[derive(Debug)]
pub struct AccumulatedGrads {
    /// Gradients of `mean_i loss_i` (each micro-batch loss scaled by `1/n` before backward, as
    /// transformers does), keyed by parameter id, on the inner backend.
    pub grads: GradientsParams,
    /// Mean of the micro-batch losses.
    pub loss: f64,
    /// Tokens reported by the loss function, summed.
    pub tokens: usize,
}

/// Runs `loss_fn` on `micro_batches` batches from `next_batch(0..micro_batches)` and
/// accumulates the gradients of `loss_i / micro_batches`. `loss_fn` returns the scalar loss
/// (`[1]` tensor, a mean over the micro-batch) and the number of tokens it processed. `step` is
/// only used in error messages (1-based).
///
/// Errors: [`TrainError::Loss`] if `loss_fn` fails, [`TrainError::NonFiniteLoss`] naming the
/// step and micro-batch.
pub fn accumulate_grads<B, M, T, N, F>(
    model: &M,
    micro_batches: usize,
    mut next_batch: N,
    loss_fn: &F,
    step: usize,
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
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss { step, micro, value });
        }
        loss_sum += value;
        tokens += tok;
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
    })
}
