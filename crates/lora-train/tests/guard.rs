//! The non-finite guard and dynamic loss scaling, against hand AdamW in f64.

mod common;

use common::{quiet, tiny, vals, RefAdamW, Tiny, AD};
use lora_train::{linear_warmup_lr, train, LossScaleConfig, TrainConfig, TrainError};

/// `loss = Σ c·a` on batch `i` (times `bad` when `bad_at(i)`): the gradient of `a` is `c`.
fn run(
    cfg: &TrainConfig,
    c: f32,
    bad: f32,
    bad_at: impl Fn(usize) -> bool,
) -> Result<(Vec<f64>, lora_train::TrainStats), TrainError> {
    let (m, stats) = train(
        tiny(&[0.5, -1.0, 2.0], [[0.0; 2]; 2]),
        cfg,
        &Default::default(),
        |i| i,
        |m: &Tiny<AD>, &i: &usize| {
            let l = m.a.val().sum().mul_scalar(c) + m.b.val().sum().mul_scalar(0.0);
            Ok((if bad_at(i) { l.mul_scalar(bad) } else { l }, 1))
        },
        |_, _| String::new(),
        |_, _, _| Ok(()),
    )?;
    Ok((vals(m.a.val().inner()), stats))
}

/// `a` after hand AdamW updates with gradient `c` at the 1-based steps `updated` of a run of
/// `cfg.steps` steps.
fn expected(cfg: &TrainConfig, c: f64, updated: &[usize]) -> Vec<f64> {
    let mut p = vec![0.5, -1.0, 2.0];
    let mut opt = RefAdamW::new(3);
    for &s in updated {
        let lr = linear_warmup_lr(cfg.lr, s - 1, cfg.warmup_steps, cfg.steps);
        opt.step(&mut p, &[c; 3], lr, cfg);
    }
    p
}

fn assert_close(got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn a_nan_batch_is_skipped_and_the_run_goes_on() {
    let cfg = TrainConfig {
        lr: 0.1,
        max_grad_norm: None,
        ..quiet(5)
    };
    for bad in [f32::NAN, f32::INFINITY] {
        let (a, stats) = run(&cfg, 0.5, bad, |i| i == 2).unwrap();
        assert_eq!(stats.skipped_steps, 1);
        assert!(!stats.losses[2].is_finite(), "{:?}", stats.losses);
        assert_eq!(stats.steps, 5);
        // Step 3 changed nothing: AdamW ran at steps 1, 2, 4, 5 with t = 1..4.
        assert_close(&a, &expected(&cfg, 0.5, &[1, 2, 4, 5]));
    }
}

#[test]
fn too_many_bad_steps_stop_the_run_naming_the_last_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        max_bad_steps: 3,
        checkpoint_every: Some(1),
        save_total_limit: Some(1),
        output_dir: Some(out.path().to_path_buf()),
        ..quiet(10)
    };
    let err = run(&cfg, 1.0, f32::NAN, |i| i >= 2).unwrap_err();
    let want_ckpt = out.path().join("checkpoint-2");
    match &err {
        TrainError::TooManyBadSteps {
            step: 5,
            count: 3,
            last_checkpoint: Some(p),
        } => assert_eq!(p, &want_ckpt),
        e => panic!("{e:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("step 5") && msg.contains("checkpoint-2"),
        "{msg}"
    );
}

#[test]
fn loss_scaling_backs_off_on_overflow_and_grows_after_good_steps() {
    // Gradient 1e15 per element: scaled by 2^79 it overflows f32 (6.0e38 > 3.4e38), by 2^78
    // it does not (3.0e38). With growth_interval 2: step 1 overflows (scale → 2^78), steps 2
    // and 3 are good (scale → 2^79 after step 3), step 4 overflows (→ 2^78), step 5 is good.
    // (f16 gradients overflow at 65504 the same way; NdArray has no f16.)
    let cfg = TrainConfig {
        lr: 0.1,
        max_grad_norm: None,
        loss_scale: Some(LossScaleConfig {
            init_scale: 2f64.powi(79),
            growth_interval: 2,
            ..LossScaleConfig::default()
        }),
        ..quiet(5)
    };
    let (a, stats) = run(&cfg, 1e15, 1.0, |_| false).unwrap();
    assert_eq!(stats.skipped_steps, 2, "{:?}", stats.grad_norms);
    assert!(stats.grad_norms[0].is_infinite() && stats.grad_norms[3].is_infinite());
    // Unscaled gradient norm: 1e15·√3 (f32 gradients).
    let want_norm = (1e15f32 as f64) * 3f64.sqrt();
    assert!((stats.grad_norms[1] / want_norm - 1.0).abs() < 1e-6);
    assert_eq!(stats.loss_scale, Some(2f64.powi(78)));
    assert_close(&a, &expected(&cfg, 1e15f32 as f64, &[2, 3, 5]));

    // Without loss scaling the same gradients are finite: every step updates.
    let plain = TrainConfig {
        loss_scale: None,
        ..cfg.clone()
    };
    let (_, stats) = run(&plain, 1e15, 1.0, |_| false).unwrap();
    assert_eq!(stats.skipped_steps, 0);
    assert_eq!(stats.loss_scale, None);
}
