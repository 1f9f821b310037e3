//! Data parallelism on the CPU: two replicas (two peers of burn's collective on the ndarray
//! device), each on half of the batch, take the same AdamW steps as one model on the whole
//! batch, within 1e-5 for the trainable weights and both AdamW moments. The frozen weight gets
//! no gradient and is not all-reduced. One test function: the collective is process-global.
#![cfg(feature = "parallel")]

mod common;

use burn::module::{Module, Param};
use burn::optim::Optimizer;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::{quiet, vals, AD};
use lora_train::{adamw_optimizer, AdamWOptimizer, DataParallel, TrainConfig};
use std::collections::HashMap;

/// `y = x·w + (x·a)·b` with `w` frozen: a LoRA layer in miniature.
#[derive(Module, Debug)]
struct Lora<B: Backend> {
    w: Param<Tensor<B, 2>>,
    a: Param<Tensor<B, 2>>,
    b: Param<Tensor<B, 2>>,
}

fn model() -> Lora<AD> {
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
type Batch = (Vec<[f32; 4]>, Vec<[f32; 3]>);

fn batch(step: usize) -> Batch {
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

fn halves(b: &Batch) -> [Batch; 2] {
    [
        (b.0[..2].to_vec(), b.1[..2].to_vec()),
        (b.0[2..].to_vec(), b.1[2..].to_vec()),
    ]
}

/// Mean squared error over the batch's rows and outputs, and its row count.
fn loss(m: &Lora<AD>, b: &Batch) -> Result<(Tensor<AD, 1>, usize), String> {
    let dev = Default::default();
    let x = Tensor::<AD, 1>::from_floats(b.0.concat().as_slice(), &dev).reshape([b.0.len(), 4]);
    let t = Tensor::<AD, 1>::from_floats(b.1.concat().as_slice(), &dev).reshape([b.1.len(), 3]);
    let y = x.clone().matmul(m.w.val()) + x.matmul(m.a.val()).matmul(m.b.val());
    Ok(((y - t).powi_scalar(2).mean().reshape([1]), b.0.len()))
}

/// AdamW's first and second moments of `a` and `b`, keyed "a.m1", "a.m2", "b.m1", "b.m2".
fn moments(optim: &AdamWOptimizer<AD, Lora<AD>>, m: &Lora<AD>) -> HashMap<String, Vec<f64>> {
    let mut record = optim.to_record();
    let mut out = HashMap::new();
    for (name, id) in [("a", m.a.id), ("b", m.b.id)] {
        let state = record.remove(&id).expect("AdamW state").into_state::<2>();
        out.insert(format!("{name}.m1"), vals(state.momentum.moment_1));
        out.insert(format!("{name}.m2"), vals(state.momentum.moment_2));
    }
    out
}

fn max_diff(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// Runs `body` on its own thread and fails if it takes longer than a minute: a collective
/// that waits for a peer forever must fail the test, not hang the test run.
fn within_a_minute(body: impl FnOnce() + Send + 'static) {
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

#[test]
fn two_replicas_equal_one_model_on_the_whole_batch() {
    within_a_minute(check_two_replicas);
}

fn check_two_replicas() {
    // The clipping threshold is below step 1's gradient norm (0.0996), so clipping acts.
    let max_norm = 0.08;
    let cfg = TrainConfig {
        lr: 0.05,
        weight_decay: 0.01,
        max_grad_norm: Some(max_norm),
        ..quiet(2)
    };
    let lr = cfg.lr;

    // One model, the whole batch.
    let mut single = model();
    let mut optim = adamw_optimizer::<AD, Lora<AD>>(&cfg);
    let mut single_steps = Vec::new();
    for step in 1..=2 {
        let (l, _) = loss(&single, &batch(step)).unwrap();
        let value: f64 = l.clone().into_scalar() as f64;
        let mut grads = burn::optim::GradientsParams::from_grads(l.backward(), &single);
        let norm = lora_train::clip_grad_norm::<AD, _>(&single, &mut grads, max_norm);
        single_steps.push((value, norm));
        single = optim.step(lr, single, grads);
    }
    assert!(single_steps[0].1 > max_norm, "clipping must act in step 1");

    // Two replicas, half the batch each.
    let dev = burn::backend::ndarray::NdArrayDevice::Cpu;
    let mut dp = DataParallel::new(model(), &[dev, dev], &cfg).unwrap();
    for step in 1..=2 {
        let r = dp.step(&halves(&batch(step)), &loss, lr, step).unwrap();
        assert!(!r.skipped, "step {step}: {r:?}");
        assert_eq!(r.tokens, 4);
        let (want_loss, want_norm) = single_steps[step - 1];
        assert!(
            (r.loss - want_loss).abs() <= 1e-6,
            "step {step} loss {} vs {want_loss}",
            r.loss
        );
        assert!(
            (r.grad_norm - want_norm).abs() <= 1e-6,
            "step {step} norm {} vs {want_norm}",
            r.grad_norm
        );
    }

    for k in 0..2 {
        let m = dp.model(k);
        for (name, got, want) in [
            ("a", m.a.val().inner(), single.a.val().inner()),
            ("b", m.b.val().inner(), single.b.val().inner()),
        ] {
            let d = max_diff(&vals(got), &vals(want));
            println!("replica {k}: {name} vs one model, max abs diff {d:.2e}");
            assert!(d <= 1e-5, "replica {k}: {name} off by {d}");
        }
        assert_eq!(
            vals(m.w.val().inner()),
            vals(single.w.val().inner()),
            "the frozen weight never moves"
        );
        let got = moments(dp.optimizer(k), m);
        let want = moments(&optim, &single);
        for key in ["a.m1", "a.m2", "b.m1", "b.m2"] {
            let d = max_diff(&got[key], &want[key]);
            println!("replica {k}: AdamW {key} vs one model, max abs diff {d:.2e}");
            assert!(d <= 1e-5, "replica {k}: {key} off by {d}");
        }
    }
    let r0 = vals(dp.model(0).a.val().inner());
    assert_eq!(r0, vals(dp.model(1).a.val().inner()), "replicas stay equal");
    // A wrong shard count is refused before any collective call.
    let one = [batch(3)];
    assert!(dp.step(&one, &loss, lr, 3).is_err());

    // A non-finite loss on one shard: every replica skips, nothing moves.
    let before = vals(dp.model(0).a.val().inner());
    let nan_on_second = |m: &Lora<AD>, b: &Batch| {
        let (l, n) = loss(m, b)?;
        Ok(if b.0[0][1] > 0.3 {
            (l * f32::NAN, n)
        } else {
            (l, n)
        })
    };
    let r = dp.step(&halves(&batch(3)), &nan_on_second, lr, 3).unwrap();
    assert!(r.skipped && r.loss.is_nan(), "{r:?}");
    for k in 0..2 {
        assert_eq!(
            vals(dp.model(k).a.val().inner()),
            before,
            "replica {k} moved on a skipped step"
        );
    }
    // A failing loss on one shard: the step fails with its message, the replicas stay usable.
    let fail_on_first = |m: &Lora<AD>, b: &Batch| {
        if b.0[0][1] == 0.0 {
            Err("no such shard".to_string())
        } else {
            loss(m, b)
        }
    };
    let e = dp
        .step(&halves(&batch(3)), &fail_on_first, lr, 3)
        .unwrap_err();
    assert!(e.to_string().contains("no such shard"), "{e}");
    let r = dp.step(&halves(&batch(3)), &loss, lr, 3).unwrap();
    assert!(!r.skipped);
    assert_eq!(
        vals(dp.model(0).a.val().inner()),
        vals(dp.model(1).a.val().inner())
    );
    dp.finish().unwrap();
}
