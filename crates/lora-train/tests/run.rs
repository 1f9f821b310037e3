//! The loop's error reporting and callbacks.

mod common;

use common::{quiet, tiny, Tiny, AD};
use lora_train::{train, TrainConfig, TrainError};

#[test]
fn callbacks_run_on_schedule_and_errors_propagate() {
    let dev = Default::default();
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        eval_every: Some(2),
        checkpoint_every: Some(3),
        output_dir: Some(out.path().to_path_buf()),
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
        |_, s, dir: &std::path::Path| {
            ckpts.push(s);
            std::fs::write(dir.join("adapter.txt"), format!("{s}")).map_err(|e| e.to_string())
        },
    )
    .unwrap();
    assert_eq!(evals, vec![2, 4, 6]);
    assert_eq!(ckpts, vec![3, 6]);
    // Each checkpoint holds the caller's file and the loop's two; nothing partial is left.
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["checkpoint-3", "checkpoint-6"]);

    // save_total_limit 2 keeps the newest 2.
    let kept = tempfile::tempdir().unwrap();
    let keep2 = TrainConfig {
        checkpoint_every: Some(1),
        save_total_limit: Some(2),
        output_dir: Some(kept.path().to_path_buf()),
        ..quiet(5)
    };
    train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &keep2,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().powi_scalar(2).sum(), 1)),
        |_, _| String::new(),
        |_, _, _| Ok(()),
    )
    .unwrap();
    let steps: Vec<usize> = lora_train::list_checkpoints(kept.path())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [4, 5]);
    for s in [3, 6] {
        let d = out.path().join(format!("checkpoint-{s}"));
        assert_eq!(
            std::fs::read_to_string(d.join("adapter.txt")).unwrap(),
            s.to_string()
        );
        assert!(d.join("training_state.safetensors").is_file());
        assert!(d.join("trainer_state.json").is_file());
    }
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
        |_, _, _| Err("disk full".to_string()),
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
        |_, _, _| Ok(()),
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
