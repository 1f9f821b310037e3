//! A LoRA layer in miniature and its data, shared by the data-parallel tests.
#![allow(dead_code)] // each test binary uses a subset

use super::{vals, AD};
use burn::module::{Module, Param};
use burn::optim::Optimizer;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_train::AdamWOptimizer;
use std::collections::HashMap;

/// `y = x·w + (x·a)·b` with `w` frozen: a LoRA layer in miniature.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    pub w: Param<Tensor<B, 2>>,
    pub a: Param<Tensor<B, 2>>,
    pub b: Param<Tensor<B, 2>>,
}

pub fn model() -> Lora<AD> {
    let dev = Default::default();
    let w = [
        [0.2f32, -0.1, 0.4],
        [0.0, 0.3, -0.2],
        [0.5, 0.1, 0.0],
        [-0.3, 0.2, 0.1],
    ];
    let a = [[0.1f32, -0.2], [0.3, 0.05], [-0.1, 0.2], [0.0, 0.4]];
    let b = [[0.2f32, 0.1, -0.3], [-0.1, 0.25, 0.15]];
    Lora {
        w: Param::from_tensor(Tensor::from_floats(w, &dev)).set_require_grad(false),
        a: Param::from_tensor(Tensor::from_floats(a, &dev)),
        b: Param::from_tensor(Tensor::from_floats(b, &dev)),
    }
}

/// `(x [rows, 4], target [rows, 3])`.
pub type Batch = (Vec<[f32; 4]>, Vec<[f32; 3]>);

pub fn batch(step: usize) -> Batch {
    let s = step as f32;
    let x = (0..4)
        .map(|r| {
            let r = r as f32;
            [
                0.5 - 0.1 * r + 0.05 * s,
                0.2 * r,
                -0.3 + 0.07 * s,
                1.0 - 0.2 * r,
            ]
        })
        .collect();
    let t = (0..4)
        .map(|r| {
            let r = r as f32;
            [0.1 * r - 0.2 * s, 0.3, -0.1 * r]
        })
        .collect();
    (x, t)
}

pub fn halves(b: &Batch) -> [Batch; 2] {
    [
        (b.0[..2].to_vec(), b.1[..2].to_vec()),
        (b.0[2..].to_vec(), b.1[2..].to_vec()),
    ]
}

/// Mean squared error over the batch's rows and outputs, and its row count.
pub fn loss(m: &Lora<AD>, b: &Batch) -> Result<(Tensor<AD, 1>, usize), String> {
    let dev = Default::default();
    let x = Tensor::<AD, 1>::from_floats(b.0.concat().as_slice(), &dev).reshape([b.0.len(), 4]);
    let t = Tensor::<AD, 1>::from_floats(b.1.concat().as_slice(), &dev).reshape([b.1.len(), 3]);
    let y = x.clone().matmul(m.w.val()) + x.matmul(m.a.val()).matmul(m.b.val());
    Ok(((y - t).powi_scalar(2).mean().reshape([1]), b.0.len()))
}

/// AdamW's first and second moments of `a` and `b`, keyed "a.m1", "a.m2", "b.m1", "b.m2".
pub fn moments(optim: &AdamWOptimizer<AD, Lora<AD>>, m: &Lora<AD>) -> HashMap<String, Vec<f64>> {
    let mut record = optim.to_record();
    let mut out = HashMap::new();
    for (name, id) in [("a", m.a.id), ("b", m.b.id)] {
        let state = record.remove(&id).expect("AdamW state").into_state::<2>();
        out.insert(format!("{name}.m1"), vals(state.momentum.moment_1));
        out.insert(format!("{name}.m2"), vals(state.momentum.moment_2));
    }
    out
}

pub fn max_diff(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// Runs `body` on its own thread and fails if it takes longer than a minute: a collective
/// that waits for a peer forever must fail the test, not hang the test run.
pub fn within_a_minute(body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
        Err(e) => panic!("data-parallel test hung: {e}"),
    }
}
