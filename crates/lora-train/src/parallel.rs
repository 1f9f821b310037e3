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
//! fails, panics or is not finite still sends its flag, and then every replica skips the step
//! together; a trainable parameter the shard's loss did not reach gets a zero gradient, so every
//! peer all-reduces the same tensors in the same order. A peer that stopped early would leave
//! the others waiting forever (the collective has no timeouts).
//!
//! Sources: the averaging of PyTorch's `DistributedDataParallel` (gradients averaged over the
//! ranks before the optimizer step); burn-train 0.21's DDP worker (`strategies/ddp`), which also
//! forks one learner per device and steps each optimizer with the synchronised gradients.

use crate::accumulate::accumulate_grads;
use crate::clip::unscale_and_clip;
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::optim::{adamw_optimizer, AdamWOptimizer};
use burn::collective::{
    all_reduce, finish_collective, register, reset_collective, CollectiveConfig, PeerId,
    ReduceOperation,
};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

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
    /// device, as on the CPU backend) with a fresh AdamW from `cfg` each (its β1, β2, eps,
    /// weight decay and `max_grad_norm`; the schedule, accumulation and loss scaling stay with
    /// the caller), and resets this process's collective for the inner backend: one group per
    /// process at a time, so a second `DataParallel` ends the first one's group. Lazily
    /// initialised parameters are initialised once before the copies are made.
    ///
    /// Errors: [`TrainError::InvalidConfig`] if `devices` is empty, `cfg` is invalid, or a
    /// device cannot take the model (a GPU index the machine does not have), naming it.
    pub fn new(model: M, devices: &[B::Device], cfg: &TrainConfig) -> Result<Self, TrainError> {
        let optim = adamw_optimizer::<B, M>(cfg);
        Self::with_optimizer(model, &optim, devices, cfg)
    }

    /// [`DataParallel::new`] with every replica's AdamW state loaded from `optim` (a run
    /// resumed from a checkpoint): the moments are moved to each replica's device by the
    /// optimizer's first step.
    ///
    /// Errors: those of [`DataParallel::new`].
    pub fn with_optimizer(
        model: M,
        optim: &AdamWOptimizer<B, M>,
        devices: &[B::Device],
        cfg: &TrainConfig,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        if devices.is_empty() {
            return Err(TrainError::InvalidConfig(
                "data parallelism needs at least one device".into(),
            ));
        }
        reset_collective::<B::InnerBackend>();
        model.visit(&mut Materialize);
        let record = optim.to_record();
        let mut replicas = Vec::with_capacity(devices.len());
        for d in devices {
            // Opening a device the machine lacks panics inside the backend.
            let copy =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.clone().fork(d)))
                    .map_err(|p| {
                        TrainError::InvalidConfig(format!(
                            "device {d:?} cannot take the model (does this machine have it?): {}",
                            panic_text(p.as_ref())
                        ))
                    })?;
            replicas.push(Replica {
                device: d.clone(),
                model: Some(copy),
                optim: adamw_optimizer::<B, M>(cfg).load_record(record.clone()),
            });
        }
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
        let micro: Vec<&[T]> = shards.iter().map(std::slice::from_ref).collect();
        self.step_micro(&micro, loss_fn, lr, 1.0, step)
    }

    /// [`DataParallel::step`] with gradient accumulation and loss scaling: replica `k`
    /// accumulates the gradients of its micro-batches `shards[k]` (each loss times
    /// `loss_scale / shards[k].len()`, as [`accumulate_grads`](crate::accumulate_grads) does),
    /// the averaged gradients are divided by `loss_scale` before clipping. Every replica must
    /// have the same number of micro-batches; the reported loss is the mean over all of them.
    ///
    /// Errors: those of [`DataParallel::step`]; [`TrainError::InvalidConfig`] also when the
    /// replicas' micro-batch counts differ or are 0.
    pub fn step_micro<T, F>(
        &mut self,
        shards: &[&[T]],
        loss_fn: &F,
        lr: f64,
        loss_scale: f64,
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
        let micro = shards[0].len();
        if micro == 0 || shards.iter().any(|s| s.len() != micro) {
            let counts: Vec<usize> = shards.iter().map(|s| s.len()).collect();
            return Err(TrainError::InvalidConfig(format!(
                "micro-batches per device {counts:?}: every device needs the same number, ≥ 1"
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
                            Settings {
                                lr,
                                loss_scale,
                                max_norm,
                                step,
                            },
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
                    Ok(Err(e)) => return Err(collective_error("leaving the collective", e)),
                    Err(_) => {
                        return Err(TrainError::Collective(
                            "a replica's thread panicked while leaving the collective".into(),
                        ))
                    }
                }
            }
        }
        Ok(self.replicas.swap_remove(0).model.expect("replica model"))
    }
}

/// A `[len]` tensor summed over the peers, as host values.
fn sum_values<B: AutodiffBackend>(
    id: PeerId,
    values: &[f32],
    device: &B::Device,
) -> Result<Vec<f64>, TrainError> {
    let t = Tensor::<B::InnerBackend, 1>::from_data(TensorData::from(values), device);
    let reduced =
        all_reduce::<B::InnerBackend>(id, t.into_primitive().tensor(), ReduceOperation::Sum)
            .map_err(|e| collective_error("the loss all-reduce", e))?;
    Ok(
        Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced))
            .into_data()
            .iter::<f64>()
            .collect(),
    )
}

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the backend panicked".into())
}

/// A collective error, naming the call that failed.
fn collective_error(what: &str, e: impl core::fmt::Debug) -> TrainError {
    TrainError::Collective(format!("{what} failed: {e:?}"))
}

/// Collects a zero gradient for every trainable parameter the backward pass did not reach, so
/// that every replica all-reduces the same set of tensors in the same order.
struct FillMissing<'a> {
    grads: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for FillMissing<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if value.is_require_grad() && self.grads.get::<B::InnerBackend, D>(param.id).is_none() {
            let zeros = Tensor::<B::InnerBackend, D>::zeros(value.shape(), &value.device());
            self.grads.register::<B::InnerBackend, D>(param.id, zeros);
        }
    }
}

/// Reads every float parameter once, so that lazily initialised ones take their value before
/// the model is cloned (each clone would otherwise draw its own).
struct Materialize;

impl<B: AutodiffBackend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// What a replica's shard gave before any collective call.
enum Local {
    /// A finite loss and its gradients, one for every trainable parameter.
    Grads(GradientsParams),
    /// The loss was NaN or infinite: the step is skipped, not an error.
    NonFinite,
    /// `loss_fn` failed or panicked, with its message.
    Failed(String),
}

/// The local half of a replica's step: the mean loss of its micro-batches, their tokens and
/// [`Local`] (gradients of `loss_scale ·` that mean). Never panics: a panic in `loss_fn` or
/// the backward pass is a [`Local::Failed`].
fn local_grads<B, M, T, F>(
    model: &M,
    shard: &[T],
    loss_fn: &F,
    loss_scale: f64,
) -> (f64, usize, Local)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M, &T) -> Result<(Tensor<B, 1>, usize), String>,
{
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let acc = accumulate_grads(
            model,
            shard.len(),
            |k| &shard[k],
            &|m: &M, b: &&T| loss_fn(m, b),
            0,
            loss_scale,
        )?;
        if acc.bad_loss.is_some() {
            return Ok((acc.loss, acc.tokens, Local::NonFinite));
        }
        let mut grads = acc.grads;
        model.visit(&mut FillMissing { grads: &mut grads });
        Ok((acc.loss, acc.tokens, Local::Grads(grads)))
    }));
    match run {
        Ok(Ok(done)) => done,
        Ok(Err(TrainError::Loss { message, .. })) => (f64::NAN, 0, Local::Failed(message)),
        Ok(Err(e)) => (f64::NAN, 0, Local::Failed(e.to_string())),
        Err(_) => (
            f64::NAN,
            0,
            Local::Failed("the loss or its backward pass panicked".into()),
        ),
    }
}

/// The step-wide settings every replica applies.
#[derive(Clone, Copy)]
struct Settings {
    lr: f64,
    loss_scale: f64,
    max_norm: Option<f64>,
    /// 1-based, for errors.
    step: usize,
}

/// One replica's part of a step (runs on its own thread; see [`DataParallel::step_micro`]).
/// Every replica makes the same collective calls whatever happens locally: one for the losses
/// and failure flags, then, unless a shard failed, one per trainable tensor.
fn replica_step<B, M, T, F>(
    rep: &mut Replica<B, M>,
    k: usize,
    n: usize,
    register_first: bool,
    shard: &[T],
    loss_fn: &F,
    set: Settings,
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
            .map_err(|e| collective_error("registering the replica", e))?;
    }
    let model = rep
        .model
        .as_ref()
        .expect("replica model present between steps");
    let step = set.step;
    let (value, tokens, local) = local_grads(model, shard, loss_fn, set.loss_scale);
    let bad = !matches!(local, Local::Grads(_));
    // The token count travels as two 16-bit halves: each sum stays an integer below 2²⁴, exact
    // in f32 for up to 256 peers, whatever the count (f32 alone is exact only below 2²⁴).
    let totals = sum_values::<B>(
        id,
        &[
            value as f32,
            (tokens >> 16) as f32,
            (tokens & 0xffff) as f32,
            bad as u8 as f32,
        ],
        &rep.device,
    )?;
    let loss = totals[0] / n as f64;
    let tokens = ((totals[1].round() as usize) << 16) + totals[2].round() as usize;
    let skipped = |grad_norm| ParallelStep {
        loss,
        grad_norm,
        tokens,
        skipped: true,
    };
    let grads = match local {
        Local::Failed(message) => return Err(TrainError::Loss { step, message }),
        Local::Grads(grads) if totals[3] == 0.0 => grads,
        // This shard's loss was not finite, or another shard failed: every replica skips.
        _ => return Ok(skipped(f64::NAN)),
    };
    let mut grads = grads
        .all_reduce::<B::InnerBackend>(id, ReduceOperation::Mean)
        .map_err(|e| collective_error("the gradient all-reduce", e))?;
    if grads.is_empty() {
        return Err(TrainError::NoGradients { step });
    }
    let norm = unscale_and_clip::<B, M>(model, &mut grads, set.loss_scale, set.max_norm);
    if !norm.is_finite() {
        return Ok(skipped(norm));
    }
    let model = rep
        .model
        .take()
        .expect("replica model present between steps");
    rep.model = Some(rep.optim.step(set.lr, model, grads));
    Ok(ParallelStep {
        loss,
        grad_norm: norm,
        tokens,
        skipped: false,
    })
}
