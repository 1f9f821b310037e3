//! The loop's error reporting and callbacks.

mod common;

use common::{quiet, tiny, Tiny, AD};
use lora_train::{train, TrainConfig, TrainError};

/// The error of a run whose loss is multiplied by `bad` at batch index `at`.
fn run_with_bad_loss(cfg: &TrainConfig, at: usize, bad: f32) -> TrainError {
    train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        cfg,
        &Default::default(),
        |i| i,
        |m: &Tiny<AD>, &i: &usize| {
            let l = m.a.val().sum();
            Ok((if i == at { l * bad } else { l }, 1))
        },
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap_err()
}

#[test]
fn nonfinite_loss_names_the_step() {
    let err = run_with_bad_loss(&quiet(5), 2, f32::NAN);
    assert!(
        matches!(
            err,
            TrainError::NonFiniteLoss {
                step: 3,
                micro: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("step 3"));

    // with grad_accum 2, batch index 3 is step 2, micro 1
    let cfg = TrainConfig {
        grad_accum: 2,
        ..quiet(5)
    };
    let err = run_with_bad_loss(&cfg, 3, f32::INFINITY);
    assert!(
        matches!(
            err,
            TrainError::NonFiniteLoss {
                step: 2,
                micro: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn callbacks_run_on_schedule_and_errors_propagate() {
    let dev = Default::default();
    let cfg = TrainConfig {
        eval_every: Some(2),
        checkpoint_every: Some(3),
        ..quiet(7)
    };
    let mut evals = Vec::new();
    let mut ckpts = Vec::new();
    let (_, stats) = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().powi_scalar(2).sum(), 2)),
        |_, s| {
            evals.push(s);
            format!("eval {s}")
        },
        |_, s| {
            ckpts.push(s);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(evals, vec![2, 4, 6]);
    assert_eq!(ckpts, vec![3, 6]);
    assert_eq!(stats.steps, 7);
    assert_eq!(stats.tokens, 14);
    assert_eq!(stats.final_loss, *stats.losses.last().unwrap());
    assert!(
        stats.losses[6] < stats.losses[0],
        "loss should go down: {:?}",
        stats.losses
    );

    let err = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().sum(), 1)),
        |_, _| String::new(),
        |_, _| Err("disk full".to_string()),
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::Checkpoint { step: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("disk full"));

    // Everything frozen: an error, not a silent no-op.
    let mut frozen = tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]);
    frozen.a = frozen.a.set_require_grad(false);
    frozen.b = frozen.b.set_require_grad(false);
    let err = train(
        frozen,
        &quiet(2),
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().sum() + m.frozen.val().sum(), 1)),
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::NoGradients { step: 1 }),
        "{err:?}"
    );

    let bad = TrainConfig {
        grad_accum: 0,
        ..quiet(1)
    };
    let err = bad.validate().unwrap_err();
    assert!(err.to_string().contains("grad_accum"));
}
