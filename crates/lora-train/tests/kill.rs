//! A run killed with SIGKILL at random moments and resumed from its last complete checkpoint
//! ends bit-identical to an uninterrupted run. The killed runs are this test binary itself,
//! started on the ignored test `child_trains_until_killed`.

mod common;

use common::{noisy_run, resumable};
use lora_train::{list_checkpoints, step_seed, TrainConfig, TRAINING_STATE_FILE};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const STEPS: usize = 40;
const SLEEP_MS: u64 = 10;
const ENV: &str = "LORA_TRAIN_KILL_TEST_DIR";

#[test]
#[ignore = "started by sigkill_at_random_moments_then_resume_is_bit_exact"]
fn child_trains_until_killed() {
    let dir = std::env::var(ENV).expect("run by the SIGKILL test only");
    noisy_run(&resumable(STEPS, Path::new(&dir)), SLEEP_MS).unwrap();
}

#[test]
fn sigkill_at_random_moments_then_resume_is_bit_exact() {
    let full_dir = tempfile::tempdir().unwrap();
    let (want, _) = noisy_run(&resumable(STEPS, full_dir.path()), 0).unwrap();
    let want_state = std::fs::read(
        full_dir
            .path()
            .join(format!("checkpoint-{STEPS}/{TRAINING_STATE_FILE}")),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut killed_at = Vec::new();
    for trial in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_trains_until_killed",
                "--test-threads",
                "1",
            ])
            .env(ENV, dir.path())
            .spawn()
            .unwrap();
        // Wait for the first checkpoint, then a pseudo-random 0–400 ms more.
        let t = Instant::now();
        while list_checkpoints(dir.path()).unwrap().is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "child never checkpointed"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(step_seed(trial, 1) % 400));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        let last = list_checkpoints(dir.path()).unwrap().pop().unwrap();
        if status.success() || last.0 == STEPS {
            continue; // finished before the kill: nothing to resume
        }
        killed_at.push(last.0);
        let cfg = TrainConfig {
            resume_from: Some(last.1),
            ..resumable(STEPS, dir.path())
        };
        let (got, _) = noisy_run(&cfg, 0).unwrap();
        assert_eq!(
            got, want,
            "weights after a kill and resume from step {}",
            last.0
        );
        let state = std::fs::read(
            dir.path()
                .join(format!("checkpoint-{STEPS}/{TRAINING_STATE_FILE}")),
        )
        .unwrap();
        assert!(
            state == want_state,
            "AdamW state after resume from {}",
            last.0
        );
    }
    assert!(
        killed_at.len() >= 2,
        "too few runs were killed mid-way: {killed_at:?}"
    );
    eprintln!("killed and resumed bit-exactly at checkpoints {killed_at:?}");
}
