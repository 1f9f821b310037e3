//! Helpers shared by lora-train's test files: a tiny module with a frozen parameter, a quiet
//! config, and tensor-to-f64 conversion.
#![allow(dead_code)] // each test binary uses a subset

pub mod tiny_lora;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use lora_train::TrainConfig;

/// The inner (non-autodiff) backend.
pub type Inner = NdArray<f32>;
/// The autodiff backend the tests train on.
pub type AD = Autodiff<Inner>;

/// Three parameters: `a` `[n]`, `b` `[2, 2]`, and `frozen` `[2]` (no gradient).
#[derive(Module, Debug)]
pub struct Tiny<B: Backend> {
    pub a: Param<Tensor<B, 1>>,
    pub b: Param<Tensor<B, 2>>,
    pub frozen: Param<Tensor<B, 1>>,
}

/// A [`Tiny`] with `a`, `b` as given and `frozen = [1, 2]`.
pub fn tiny(a: &[f32], b: [[f32; 2]; 2]) -> Tiny<AD> {
    let dev = Default::default();
    Tiny {
        a: Param::from_tensor(Tensor::from_floats(a, &dev)),
        b: Param::from_tensor(Tensor::from_floats(b, &dev)),
        frozen: Param::from_tensor(Tensor::from_floats([1.0, 2.0], &dev)).set_require_grad(false),
    }
}

/// A tensor's values as f64.
pub fn vals<const D: usize>(t: Tensor<Inner, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

/// The default config with `steps` steps and no progress output.
pub fn quiet(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        progress: false,
        ..TrainConfig::default()
    }
}

/// Hand AdamW (torch.optim.AdamW, amsgrad=False) in f64 for one tensor.
pub struct RefAdamW {
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    pub t: i32,
}

impl RefAdamW {
    /// Zero moments for `n` values.
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    pub fn step(&mut self, p: &mut [f64], g: &[f64], lr: f64, cfg: &TrainConfig) {
        self.t += 1;
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        for i in 0..p.len() {
            p[i] *= 1.0 - lr * cfg.weight_decay;
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let mhat = self.m[i] / (1.0 - b1.powi(self.t));
            let vhat = self.v[i] / (1.0 - b2.powi(self.t));
            p[i] -= lr * mhat / (vhat.sqrt() + cfg.eps);
        }
    }
}

/// A run of [`tiny`] on a loss with dropout-like random masks (so the random stream matters),
/// `sleep_ms` per micro-batch; returns the final `a` and `b` as f32 bits and the stats.
pub fn noisy_run(
    cfg: &TrainConfig,
    sleep_ms: u64,
) -> Result<(Vec<u32>, lora_train::TrainStats), lora_train::TrainError> {
    use burn::tensor::Distribution;
    let dev = Default::default();
    let (m, stats) = lora_train::train(
        tiny(&[0.5, -1.0, 2.0], [[0.1, 0.2], [0.3, 0.4]]),
        cfg,
        &dev,
        |i| i as f32,
        |m: &Tiny<AD>, &i: &f32| {
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
            let mask = Tensor::<AD, 1>::random([3], Distribution::Bernoulli(0.8), &dev);
            let fit = (m.a.val() * mask - i.sin()).powi_scalar(2).sum();
            Ok((fit + m.b.val().powi_scalar(2).sum().mul_scalar(0.1), 3))
        },
        |_, _| String::new(),
        |_, step, dir: &std::path::Path| {
            std::fs::write(dir.join("step.txt"), step.to_string()).map_err(|e| e.to_string())
        },
    )?;
    let bits = |v: Vec<f64>| {
        v.into_iter()
            .map(|x| (x as f32).to_bits())
            .collect::<Vec<_>>()
    };
    let mut out = bits(vals(m.a.val().inner()));
    out.extend(bits(vals(m.b.val().inner())));
    Ok((out, stats))
}

/// The resumable config of [`noisy_run`]: `steps` steps, warmup, accumulation, weight decay,
/// a checkpoint every step into `out`.
pub fn resumable(steps: usize, out: &std::path::Path) -> TrainConfig {
    TrainConfig {
        lr: 0.05,
        warmup_steps: 2,
        grad_accum: 2,
        checkpoint_every: Some(1),
        output_dir: Some(out.to_path_buf()),
        ..quiet(steps)
    }
}
