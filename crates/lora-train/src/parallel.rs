//! Data parallelism over several devices of one machine, through burn's collective all-reduce
//! (`burn::collective`, burn-collective 0.21: peers are threads of this process).
//!
//! Each device holds one replica of the model (`Module::fork`: the frozen base once per device,
//! parameter ids kept) and one AdamW. A step runs the replicas' forward and backward passes on
//! their shards of the global batch in parallel threads, averages the gradients of the trainable
//! parameters only (the frozen base has none: `GradientsParams::from_grads` keeps only tensors
//! with a gradient) with one all-reduce per tensor, clips them by their global norm, and applies
//! the same AdamW update on every replica, so the replicas stay equal. The average of the
//! shards' mean losses is what gradient accumulation over the same shards computes (PyTorch's
//! DDP does the same); with equal shards it equals one step on the concatenated batch.
//!
//! Every peer takes part in every collective call, whatever happens to it: a shard whose loss
//! fails or is not finite still sends its flag, and then every replica skips the step together.
//! A peer that stopped early would leave the others waiting forever (the collective has no
//! timeouts).

use crate::clip::{clip_grad_norm, grad_norm};
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::optim::{adamw_optimizer, AdamWOptimizer};
use burn::collective::{
    all_reduce, finish_collective, register, reset_collective, CollectiveConfig, PeerId,
    ReduceOperation,
};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};

/// One device's copy of the model and its optimizer.
struct Replica<B: AutodiffBackend, M: AutodiffModule<B>> {
    device: B::Device,
    model: Option<M>,
    optim: AdamWOptimizer<B, M>,
}

/// What one data-parallel step did, the same on every replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelStep {
    /// Mean of the shards' losses (unscaled); NaN or infinite when the step was skipped.
    pub loss: f64,
    /// Global norm of the averaged gradients before clipping; NaN when skipped.
    pub grad_norm: f64,
    /// Tokens of all shards, as the loss function reported them.
    pub tokens: usize,
    /// Whether the update was skipped (a non-finite loss or gradient norm on any shard).
    pub skipped: bool,
}

/// Replicas of one model on several devices, trained in lockstep (module docs).
pub struct DataParallel<B: AutodiffBackend, M: AutodiffModule<B>> {
    replicas: Vec<Replica<B, M>>,
    max_grad_norm: Option<f64>,
    registered: bool,
}

impl<B, M> DataParallel<B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Send,
    AdamWOptimizer<B, M>: Send,
{
    /// Forks `model` onto each of `devices` (the same device may repeat: several peers on one
    /// device, as on the CPU backend) with a fresh AdamW from `cfg` each, and resets this
    /// process's collective for the inner backend (one data-parallel group at a time).
    ///
    /// Errors: [`TrainError::InvalidConfig`] if `devices` is empty or `cfg` is invalid.
    pub fn new(model: M, devices: &[B::Device], cfg: &TrainConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        if devices.is_empty() {
            return Err(TrainError::InvalidConfig(
                "data parallelism needs at least one device".into(),
            ));
        }
        reset_collective::<B::InnerBackend>();
        let replicas = devices
            .iter()
            .map(|d| Replica {
                device: d.clone(),
                model: Some(model.clone().fork(d)),
                optim: adamw_optimizer::<B, M>(cfg),
            })
            .collect();
        Ok(Self {
            replicas,
            max_grad_norm: cfg.max_grad_norm,
            registered: false,
        })
    }

    /// Number of replicas (devices).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Always false: a group has at least one replica.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replica `k`'s model (all replicas are equal after every step).
    ///
    /// # Panics
    /// If `k ≥ len()`.
    pub fn model(&self, k: usize) -> &M {
        self.replicas[k]
            .model
            .as_ref()
            .expect("replica model present between steps")
    }

    /// Replica `k`'s optimizer.
    ///
    /// # Panics
    /// If `k ≥ len()`.
    pub fn optimizer(&self, k: usize) -> &AdamWOptimizer<B, M> {
        &self.replicas[k].optim
    }

    /// One optimizer step at learning rate `lr`: replica `k` runs `loss_fn` on `shards[k]`
    /// (which returns the shard's mean loss as a `[1]` tensor and its token count); the
    /// gradients are averaged over the replicas, clipped to `max_grad_norm` of the config, and
    /// applied by every replica's AdamW.
    ///
    /// Errors: [`TrainError::InvalidConfig`] if `shards.len() != len()`; [`TrainError::Loss`]
    /// (after every replica skipped the step) if `loss_fn` failed on a shard;
    /// [`TrainError::Collective`] if burn's collective failed. `step` (1-based) only names the
    /// step in errors.
    pub fn step<T, F>(
        &mut self,
        shards: &[T],
        loss_fn: &F,
        lr: f64,
        step: usize,
    ) -> Result<ParallelStep, TrainError>
    where
        T: Sync,
        F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String> + Sync,
    {
        let n = self.replicas.len();
        if shards.len() != n {
            return Err(TrainError::InvalidConfig(format!(
                "{} shards for {n} devices: give one shard per device",
                shards.len()
            )));
        }
        let register_first = !self.registered;
        let max_norm = self.max_grad_norm;
        let results: Vec<Result<ParallelStep, TrainError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .replicas
                .iter_mut()
                .zip(shards)
                .enumerate()
                .map(|(k, (rep, shard))| {
                    s.spawn(move || {
                        replica_step(
                            rep,
                            k,
                            n,
                            register_first,
                            shard,
                            loss_fn,
                            lr,
                            max_norm,
                            step,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(TrainError::Collective(format!(
                            "step {step}: a replica's thread panicked"
                        )))
                    })
                })
                .collect()
        });
        self.registered = true;
        let mut first = None;
        for r in results {
            let r = r?;
            first.get_or_insert(r);
        }
        Ok(first.expect("at least one replica"))
    }

    /// Leaves the collective and returns replica 0's model.
    ///
    /// Errors: [`TrainError::Collective`] if burn's collective failed.
    pub fn finish(mut self) -> Result<M, TrainError> {
        if self.registered {
            let n = self.replicas.len();
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .map(|k| s.spawn(move || finish_collective::<B::InnerBackend>(PeerId::from(k))))
                    .collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            for r in results {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(TrainError::Collective(format!("{e:?}"))),
                    Err(_) => return Err(TrainError::Collective("finish panicked".into())),
                }
            }
        }
        Ok(self.replicas.swap_remove(0).model.expect("replica model"))
    }
}

/// A `[len]` f32 tensor averaged (`Mean`) or summed over the peers, as host values.
fn reduce_values<B: AutodiffBackend>(
    id: PeerId,
    values: &[f32],
    device: &B::Device,
    op: ReduceOperation,
) -> Result<Vec<f32>, TrainError> {
    let t = Tensor::<B::InnerBackend, 1>::from_floats(values, device);
    let reduced = all_reduce::<B::InnerBackend>(id, t.into_primitive().tensor(), op)
        .map_err(|e| TrainError::Collective(format!("{e:?}")))?;
    Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced))
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| TrainError::Collective(format!("{e:?}")))
}

/// One replica's part of a step (runs on its own thread; see [`DataParallel::step`]).
#[allow(clippy::too_many_arguments)]
fn replica_step<B, M, T, F>(
    rep: &mut Replica<B, M>,
    k: usize,
    n: usize,
    register_first: bool,
    shard: &T,
    loss_fn: &F,
    lr: f64,
    max_norm: Option<f64>,
    step: usize,
) -> Result<ParallelStep, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
{
    let id = PeerId::from(k);
    if register_first {
        let cfg = CollectiveConfig::default().with_num_devices(n);
        register::<B::InnerBackend>(id, rep.device.clone(), cfg)
            .map_err(|e| TrainError::Collective(format!("{e:?}")))?;
    }
    let model = rep
        .model
        .take()
        .expect("replica model present between steps");
    let outcome = loss_fn(&model, shard);
    let (value, tokens, failed) = match &outcome {
        Ok((loss, tokens)) => {
            let v: f64 = loss.clone().into_scalar().elem();
            (v, *tokens, !v.is_finite())
        }
        Err(_) => (f64::NAN, 0, true),
    };
    // One collective for the loss, the tokens and the failure flags of every shard.
    let totals = reduce_values::<B>(
        id,
        &[value as f32, tokens as f32, failed as u8 as f32],
        &rep.device,
        ReduceOperation::Sum,
    )?;
    let loss = totals[0] as f64 / n as f64;
    let tokens = totals[1].round() as usize;
    if totals[2] > 0.0 {
        rep.model = Some(model);
        if let Err(message) = outcome {
            return Err(TrainError::Loss { step, message });
        }
        return Ok(ParallelStep {
            loss,
            grad_norm: f64::NAN,
            tokens,
            skipped: true,
        });
    }
    let (shard_loss, _) = outcome.map_err(|message| TrainError::Loss { step, message })?;
    let grads = GradientsParams::from_grads(shard_loss.backward(), &model)
        .all_reduce::<B::InnerBackend>(id, ReduceOperation::Mean)
        .map_err(|e| TrainError::Collective(format!("{e:?}")))?;
    let mut grads = grads;
    let norm = match max_norm {
        Some(max) => clip_grad_norm::<B, M>(&model, &mut grads, max),
        None => grad_norm::<B, M>(&model, &grads),
    };
    if !norm.is_finite() {
        rep.model = Some(model);
        return Ok(ParallelStep {
            loss,
            grad_norm: norm,
            tokens,
            skipped: true,
        });
    }
    rep.model = Some(rep.optim.step(lr, model, grads));
    Ok(ParallelStep {
        loss,
        grad_norm: norm,
        tokens,
        skipped: false,
    })
}
