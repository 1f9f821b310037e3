//! `finetune --resume` on every method: a run resumed from any of its checkpoints writes the
//! very adapter an uninterrupted run writes (bytes compared) and the same `metrics.jsonl`
//! (timings apart); a resume with another flag is refused naming it. A tiny random GPT-2 on a
//! few synthetic reviews, on the CPU.
//! One test function: the NdArray random stream is process-global.

mod common;

use common::{finetune_opts, finetune_tiny_gpt2};
use lora_data::imdb::Review;
use lora_train::{LOSS_PLOT_FILE, METRICS_FILE};
use serde_json::Value;
use std::path::Path;

const STEPS: usize = 5;

fn reviews(n: usize, offset: usize) -> Vec<Review> {
    (offset..offset + n)
        .map(|i| Review {
            text: format!(
                "film {i} was {}",
                if i % 2 == 1 {
                    "great fun, loved it"
                } else {
                    "dull and slow"
                }
            ),
            label: (i % 2) as u8,
        })
        .collect()
}

/// One run of `finetune` with `flags` into `out`.
fn run(flags: &[&str], out: &Path, resume: Option<&Path>) -> Result<(), String> {
    let (train, test) = (reviews(STEPS * 2, 0), reviews(4, 100));
    let steps = STEPS.to_string();
    let out_s = out.display().to_string();
    let mut all = vec![
        "--model",
        "gpt2",
        "--steps",
        &steps,
        "--batch-size",
        "2",
        "--max-length",
        "24",
        "--warmup-steps",
        "1",
        "--score-init",
        "random",
        "--layers",
        "all",
        "--checkpoint-every",
        "1",
        "--eval-every",
        "2",
        "--eval-size",
        "4",
        "--output-dir",
        &out_s,
    ];
    all.extend_from_slice(flags);
    let resume_s = resume.map(|p| p.display().to_string());
    if let Some(r) = &resume_s {
        all.extend_from_slice(&["--resume", r]);
    }
    finetune_tiny_gpt2(&all, &train, &test)
}

/// Every file of the adapter `dir` (not the checkpoints, the metrics or the lock), by name.
fn adapter_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .filter(|e| ![METRICS_FILE, LOSS_PLOT_FILE].contains(&e.file_name().to_str().unwrap()))
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            let mut bytes = std::fs::read(e.path()).unwrap();
            if name == lora_recipes::recipe::TRAINING_CONFIG_FILE {
                // The resolved options name the run's own folder; the rest must be equal.
                let text = String::from_utf8(bytes).unwrap();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.starts_with("output_dir = "))
                    .collect();
                bytes = lines.join("\n").into_bytes();
            }
            (name, bytes)
        })
        .collect();
    v.sort();
    v
}

/// The lines of `<dir>/metrics.jsonl` without their timings, as `(step, fields)`.
fn metrics(dir: &Path) -> Vec<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    text.lines()
        .map(|l| {
            let Value::Object(mut m) = serde_json::from_str(l).unwrap() else {
                panic!("not an object: {l}")
            };
            for k in ["tokens_per_second", "elapsed_seconds", "eval_runtime"] {
                m.remove(k);
            }
            m
        })
        .collect()
}

/// The steps and kinds of metrics lines: `(step, "loss" or the eval metric)`.
fn kinds(lines: &[serde_json::Map<String, Value>]) -> Vec<(u64, String)> {
    lines
        .iter()
        .map(|m| {
            let key = m.keys().find(|k| *k == "loss" || k.starts_with("eval_"));
            (m["step"].as_u64().unwrap(), key.unwrap().clone())
        })
        .collect()
}

/// `<dir>/loss.png`'s width and height.
fn png_size(dir: &Path) -> (u32, u32) {
    let bytes = std::fs::read(dir.join(LOSS_PLOT_FILE)).unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap()
        .info()
        .clone();
    (info.width, info.height)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn every_method_resumes_to_the_same_adapter() {
    let methods: [&[&str]; 6] = [
        &["--method", "lora", "--lora-dropout", "0.2"],
        &["--method", "dora", "--lora-dropout", "0.2"],
        &["--method", "ia3"],
        &["--method", "prefix-tuning", "--num-virtual-tokens", "3"],
        &[
            "--method",
            "prompt-tuning",
            "--num-virtual-tokens",
            "3",
            "--prompt-tuning-init",
            "random",
        ],
        &["--method", "bottleneck", "--reduction-factor", "2"],
    ];
    for flags in methods {
        let full = tempfile::tempdir().unwrap();
        run(flags, full.path(), None).unwrap();
        let want = adapter_files(full.path());
        assert!(want.len() >= 2, "{flags:?}: {want:?}");
        // The evaluation before, every step with the evaluations of steps 2 and 4, the one
        // after the last step.
        let want_metrics = metrics(full.path());
        let mut want_kinds: Vec<(u64, String)> = vec![(0, "eval_accuracy".into())];
        want_kinds.extend((1..=STEPS as u64).flat_map(|s| {
            let eval = (s % 2 == 0).then(|| (s, "eval_accuracy".to_string()));
            std::iter::once((s, "loss".to_string())).chain(eval)
        }));
        want_kinds.push((STEPS as u64, "eval_accuracy".into()));
        assert_eq!(kinds(&want_metrics), want_kinds, "{flags:?}");
        assert_eq!(png_size(full.path()), lora_train::LOSS_PLOT_SIZE);
        for k in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let ck = dir.path().join(format!("checkpoint-{k}"));
            copy_dir(&full.path().join(format!("checkpoint-{k}")), &ck);
            // The interrupted run's metrics went on past the checkpoint: they are dropped.
            std::fs::copy(
                full.path().join(METRICS_FILE),
                dir.path().join(METRICS_FILE),
            )
            .unwrap();
            run(flags, dir.path(), Some(&ck)).unwrap();
            assert_eq!(metrics(dir.path()), want_metrics, "{flags:?} from step {k}");
            let got = adapter_files(dir.path());
            assert_eq!(got.len(), want.len(), "{flags:?}");
            for ((n1, b1), (n2, b2)) in got.iter().zip(&want) {
                assert_eq!(n1, n2);
                assert!(
                    b1 == b2,
                    "{flags:?}: {n1} differs after resuming at step {k}"
                );
            }
        }
    }

    // Another flag: refused, naming it and both values.
    let full = tempfile::tempdir().unwrap();
    run(&["--method", "lora"], full.path(), None).unwrap();
    let ck = full.path().join("checkpoint-2");
    let err = run(
        &["--method", "lora", "--lora-alpha", "32"],
        full.path(),
        Some(&ck),
    )
    .unwrap_err();
    assert!(
        err.contains("--lora-alpha = 16") && err.contains("--lora-alpha = 32"),
        "{err}"
    );
    let err = run(&["--method", "ia3"], full.path(), Some(&ck)).unwrap_err();
    assert!(
        err.contains("--method = lora") && err.contains("--method = ia3"),
        "{err}"
    );

    // Another run holding the output directory: refused, naming it.
    let busy = tempfile::tempdir().unwrap();
    let busy_s = busy.path().display().to_string();
    let held =
        lora_recipes::checkpointing::lock_output_dir(&finetune_opts(&["--output-dir", &busy_s]))
            .unwrap();
    let err = run(&["--method", "lora"], busy.path(), None).unwrap_err();
    assert!(
        err.contains("another run is writing to it") && err.contains(&busy_s),
        "{err}"
    );
    drop(held);
    run(&["--method", "lora"], busy.path(), None).unwrap();
}
