//! Data parallelism on the CPU: two replicas (two peers of burn's collective on the ndarray
//! device), each on half of the batch, take the same AdamW steps as one model on the whole
//! batch, within 1e-5 for the trainable weights and both AdamW moments. The frozen weight gets
//! no gradient and is not all-reduced. One test function: the collective is process-global.
#![cfg(feature = "parallel")]

mod common;

use burn::optim::Optimizer;
use common::tiny_lora::{
    batch, halves, loss, max_diff, model, moments, within_a_minute, Batch, Lora,
};
use common::{quiet, vals, AD};
use lora_train::{adamw_optimizer, DataParallel, TrainConfig};

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
