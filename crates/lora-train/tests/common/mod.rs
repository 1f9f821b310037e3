//! Helpers shared by lora-train's test files: a tiny module with a frozen parameter, a quiet
//! config, and tensor-to-f64 conversion.
#![allow(dead_code)] // each test binary uses a subset

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
