//! Resuming from a checkpoint continues bit-exactly; a checkpoint of another run is refused.
//! One test function: the NdArray random stream is process-global.

mod common;

use common::{noisy_run, resumable, tiny, Tiny, AD};
use lora_train::{step_seed, train, TrainConfig, TrainError, TRAINING_STATE_FILE};
use std::collections::BTreeMap;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn resume_err(cfg: &TrainConfig) -> String {
    match common::noisy_run(cfg, 0) {
        Err(e @ TrainError::Resume { .. }) => e.to_string(),
        other => panic!("expected a refused resume, got {other:?}"),
    }
}

#[test]
fn resumes_bit_exactly_and_refuses_other_runs() {
    let steps = 8;
    let full_dir = tempfile::tempdir().unwrap();
    let cfg = resumable(steps, full_dir.path());
    let (want, full) = noisy_run(&cfg, 0).unwrap();
    let want_state = std::fs::read(
        full_dir
            .path()
            .join(format!("checkpoint-{steps}/{TRAINING_STATE_FILE}")),
    )
    .unwrap();

    // Resume at pseudo-random steps, each into a folder holding only that checkpoint.
    let mut points: Vec<usize> = (0..4)
        .map(|i| 1 + (step_seed(2024, i) % (steps as u64 - 1)) as usize)
        .collect();
    points.sort();
    points.dedup();
    for &k in &points {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join(format!("checkpoint-{k}"));
        copy_dir(&full_dir.path().join(format!("checkpoint-{k}")), &ck);
        let cfg = TrainConfig {
            resume_from: Some(ck),
            ..resumable(steps, dir.path())
        };
        let (got, stats) = noisy_run(&cfg, 0).unwrap();
        assert_eq!(got, want, "weights after resuming at step {k}");
        assert_eq!(stats.first_step, k + 1);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&stats.losses),
            bits(&full.losses),
            "losses, resumed at {k}"
        );
        assert_eq!(stats.lrs, full.lrs);
        let state = std::fs::read(
            dir.path()
                .join(format!("checkpoint-{steps}/{TRAINING_STATE_FILE}")),
        )
        .unwrap();
        assert!(state == want_state, "AdamW state after resuming at {k}");
    }
    assert!(points.len() >= 2, "{points:?}");

    // Refusals, each naming what differs.
    let ck = full_dir.path().join("checkpoint-4");
    let base = TrainConfig {
        resume_from: Some(ck.clone()),
        ..resumable(steps, tempfile::tempdir().unwrap().path())
    };
    let msg = resume_err(&TrainConfig {
        lr: 0.06,
        ..base.clone()
    });
    assert!(
        msg.contains("train.lr = 0.05") && msg.contains("0.06"),
        "{msg}"
    );
    let msg = resume_err(&TrainConfig {
        fingerprint: BTreeMap::from([("--r".to_string(), "4".to_string())]),
        ..base.clone()
    });
    assert!(
        msg.contains("--r = (unset)") && msg.contains("--r = 4"),
        "{msg}"
    );

    // Another model: `a` has 4 values instead of 3.
    let err = train(
        tiny(&[0.0; 4], [[0.0; 2]; 2]),
        &base,
        &Default::default(),
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().sum(), 1)),
        |_, _| String::new(),
        |_, _, _| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("param.a") && err.contains("[3]") && err.contains("[4]"),
        "{err}"
    );

    // A damaged state file names itself.
    let bad = tempfile::tempdir().unwrap();
    let bad_ck = bad.path().join("checkpoint-4");
    copy_dir(&ck, &bad_ck);
    std::fs::write(bad_ck.join("trainer_state.json"), b"{\"format\": 1").unwrap();
    let msg = resume_err(&TrainConfig {
        resume_from: Some(bad_ck),
        ..base.clone()
    });
    assert!(msg.contains("trainer_state.json"), "{msg}");

    // Another step's state in this folder, and a NaN in the weights: refused.
    let swapped = tempfile::tempdir().unwrap();
    let sw = swapped.path().join("checkpoint-4");
    copy_dir(&ck, &sw);
    std::fs::copy(
        full_dir.path().join("checkpoint-6/trainer_state.json"),
        sw.join("trainer_state.json"),
    )
    .unwrap();
    let msg = resume_err(&TrainConfig {
        resume_from: Some(sw.clone()),
        ..base.clone()
    });
    assert!(msg.contains("global_step 6 does not match"), "{msg}");
    copy_dir(&ck, &sw);
    let st = sw.join(TRAINING_STATE_FILE);
    let mut bytes = std::fs::read(&st).unwrap();
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let start = 8 + header_len + meta.info("param.a").unwrap().data_offsets.0;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&st, bytes).unwrap();
    let msg = resume_err(&TrainConfig {
        resume_from: Some(sw),
        ..base.clone()
    });
    assert!(msg.contains("NaN") && msg.contains("damaged"), "{msg}");

    // A folder with a checkpoint's name that is not one is refused before training, untouched.
    let odd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(odd.path().join("checkpoint-2/notes")).unwrap();
    let cfg = resumable(steps, odd.path());
    let err = noisy_run(&cfg, 0).unwrap_err().to_string();
    assert!(
        err.contains("checkpoint-2") && err.contains("not a checkpoint"),
        "{err}"
    );
    assert!(odd.path().join("checkpoint-2/notes").is_dir());
}
