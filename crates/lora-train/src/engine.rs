//! What one optimizer step does to the model: on one device (accumulate, unscale, clip, AdamW),
//! or on several through [`DataParallel`](crate::DataParallel).

use crate::accumulate::accumulate_grads;
use crate::clip::unscale_and_clip;
use crate::error::TrainError;
use crate::optim::AdamWOptimizer;
#[cfg(feature = "parallel")]
use crate::parallel::DataParallel;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// What one optimizer step does to a run's model and optimizer state; the loop of
/// [`train_observed`](crate::train_observed) is generic over it.
pub(crate) trait Stepper<B: AutodiffBackend, M: AutodiffModule<B>, T, F>: Sized {
    /// The model (replica 0's on several devices; all replicas are equal between steps).
    fn model(&self) -> &M;
    /// The optimizer (replica 0's).
    fn optimizer(&self) -> &AdamWOptimizer<B, M>;
    /// One optimizer step over `micro` micro-batches from `next_batch(0..micro)`, each loss
    /// times `scale` before the backward pass (divided out again before clipping).
    ///
    /// Errors: [`TrainError::Loss`], [`TrainError::NoGradients`], [`TrainError::Collective`].
    #[allow(clippy::too_many_arguments)] // the step's inputs, each one concern
    fn step<N: FnMut(usize) -> T>(
        self,
        micro: usize,
        next_batch: N,
        loss_fn: &F,
        lr: f64,
        scale: f64,
        step: usize,
    ) -> Result<(Self, Outcome), TrainError>;
    /// The trained model; leaves the collective on several devices.
    ///
    /// Errors: [`TrainError::Collective`].
    fn finish(self) -> Result<M, TrainError>;
}

/// What a step did.
pub(crate) struct Outcome {
    /// Mean loss of the step's micro-batches (unscaled), or the non-finite one.
    pub loss: f64,
    /// Tokens the loss function reported.
    pub tokens: usize,
    /// Global gradient norm before clipping; NaN when the loss was not finite.
    pub norm: f64,
    /// Why the update was skipped (a non-finite loss or gradient norm).
    pub bad: Option<String>,
}

/// One device: accumulate, unscale, clip, AdamW.
pub(crate) struct Single<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub model: M,
    pub optim: AdamWOptimizer<B, M>,
    /// The config's `max_grad_norm`.
    pub max_norm: Option<f64>,
}

impl<B, M, T, F> Stepper<B, M, T, F> for Single<B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
{
    fn model(&self) -> &M {
        &self.model
    }

    fn optimizer(&self) -> &AdamWOptimizer<B, M> {
        &self.optim
    }

    fn step<N: FnMut(usize) -> T>(
        mut self,
        micro: usize,
        next_batch: N,
        loss_fn: &F,
        lr: f64,
        scale: f64,
        step: usize,
    ) -> Result<(Self, Outcome), TrainError> {
        let acc = accumulate_grads(&self.model, micro, next_batch, loss_fn, step, scale)?;
        let mut out = Outcome {
            loss: acc.loss,
            tokens: acc.tokens,
            norm: f64::NAN,
            bad: None,
        };
        if let Some((m, value)) = acc.bad_loss {
            out.bad = Some(format!("loss {value} (micro-batch {m})"));
            return Ok((self, out));
        }
        let mut grads = acc.grads;
        if grads.is_empty() {
            return Err(TrainError::NoGradients { step });
        }
        out.norm = unscale_and_clip::<B, M>(&self.model, &mut grads, scale, self.max_norm);
        if out.norm.is_finite() {
            self.model = self.optim.step(lr, self.model, grads);
        } else {
            out.bad = Some(format!("gradient norm {}", out.norm));
        }
        Ok((self, out))
    }

    fn finish(self) -> Result<M, TrainError> {
        Ok(self.model)
    }
}

/// Splits one batch into `n` shards, one per device.
#[cfg(feature = "parallel")]
pub(crate) type Split<'a, T> = &'a dyn Fn(&T, usize) -> Result<Vec<T>, String>;

/// Several devices: each micro-batch split by `split` into one shard per replica.
#[cfg(feature = "parallel")]
pub(crate) struct Parallel<'a, B: AutodiffBackend, M: AutodiffModule<B>, T> {
    pub dp: DataParallel<B, M>,
    pub split: Split<'a, T>,
}

#[cfg(feature = "parallel")]
impl<B, M, T, F> Stepper<B, M, T, F> for Parallel<'_, B, M, T>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Send,
    AdamWOptimizer<B, M>: Send,
    T: Sync,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String> + Sync,
{
    fn model(&self) -> &M {
        self.dp.model(0)
    }

    fn optimizer(&self) -> &AdamWOptimizer<B, M> {
        self.dp.optimizer(0)
    }

    fn step<N: FnMut(usize) -> T>(
        mut self,
        micro: usize,
        mut next_batch: N,
        loss_fn: &F,
        lr: f64,
        scale: f64,
        step: usize,
    ) -> Result<(Self, Outcome), TrainError> {
        let n = self.dp.len();
        let mut shards: Vec<Vec<T>> = (0..n).map(|_| Vec::with_capacity(micro)).collect();
        for k in 0..micro {
            let parts = (self.split)(&next_batch(k), n)
                .map_err(|message| TrainError::Loss { step, message })?;
            if parts.len() != n {
                let message = format!(
                    "the batch was split into {} shards for {n} devices",
                    parts.len()
                );
                return Err(TrainError::Loss { step, message });
            }
            for (s, p) in shards.iter_mut().zip(parts) {
                s.push(p);
            }
        }
        let views: Vec<&[T]> = shards.iter().map(Vec::as_slice).collect();
        let r = self.dp.step_micro(&views, loss_fn, lr, scale, step)?;
        let bad = r.skipped.then(|| {
            if r.loss.is_finite() {
                format!("gradient norm {}", r.grad_norm)
            } else {
                format!("loss {}", r.loss)
            }
        });
        let out = Outcome {
            loss: r.loss,
            tokens: r.tokens,
            norm: r.grad_norm,
            bad,
        };
        Ok((self, out))
    }

    fn finish(self) -> Result<M, TrainError> {
        self.dp.finish()
    }
}
