//! `metrics.jsonl` and `loss.png` of a run: the lines equal the returned stats, non-finite
//! values are null, a resumed run's file equals an uninterrupted one's apart from timings, and
//! the figure decodes to the documented size with its curve colors present.

mod common;

use common::{quiet, tiny, Tiny, AD};
use lora_train::{
    ema, train_observed, EvalRecord, Evaluation, MetricsLog, MetricsRecord, TrainConfig,
    TrainError, TrainStats, LOSS_PLOT_FILE, METRICS_FILE,
};
use serde_json::Value;
use std::path::Path;

/// The closed-form evaluation metric of a step.
fn eval_loss(step: usize) -> f64 {
    1.0 / (step as f64 + 1.0)
}

/// A run of [`tiny`] logging into `out` (resumed from `resume` when given): an evaluation
/// at step 0 (fresh runs only), every 2 steps and after the last one; a checkpoint every
/// `ckpt` steps. The loss of micro-batch `nan_at` is NaN (a skipped step).
fn run(
    out: &Path,
    steps: usize,
    ckpt: usize,
    resume: Option<&Path>,
    nan_at: Option<usize>,
) -> Result<TrainStats, TrainError> {
    let dev = Default::default();
    let cfg = TrainConfig {
        lr: 0.05,
        eval_every: Some(2),
        checkpoint_every: Some(ckpt),
        output_dir: Some(out.to_path_buf()),
        resume_from: resume.map(Path::to_path_buf),
        ..quiet(steps)
    };
    let mut log = MetricsLog::in_dir(out, resume.is_some())?;
    if resume.is_none() {
        log.record_eval(EvalRecord {
            step: 0,
            metrics: vec![("eval_loss".into(), eval_loss(0))],
            eval_runtime: 0.0,
        })?;
    }
    let plot = out.join(LOSS_PLOT_FILE);
    let (_, stats) = train_observed(
        tiny(&[1.0, -2.0, 0.5], [[0.3, 0.0], [0.0, 0.3]]),
        &cfg,
        &dev,
        |i| i,
        |m: &Tiny<AD>, &i: &usize| {
            let loss = (m.a.val() - i as f32 * 0.1).powi_scalar(2).sum();
            Ok(if Some(i) == nan_at {
                (loss.mul_scalar(f32::NAN), 3)
            } else {
                (loss, 3 + i % 2)
            })
        },
        |_, s| Evaluation::new(format!("eval {s}")).with("eval_loss", eval_loss(s)),
        |_, s, _| {
            // The figure of the checkpoint before exists when the next one is written.
            if s > ckpt && !plot.is_file() {
                return Err(format!("no {} at step {s}", plot.display()));
            }
            Ok(())
        },
        &mut log,
    )?;
    log.record_eval(EvalRecord {
        step: stats.steps,
        metrics: vec![("eval_loss".into(), eval_loss(stats.steps))],
        eval_runtime: 0.0,
    })?;
    log.write_plot()?;
    Ok(stats)
}

/// The lines of `<out>/metrics.jsonl` as JSON objects.
fn lines(out: &Path) -> Vec<serde_json::Map<String, Value>> {
    std::fs::read_to_string(out.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

/// A number field, `None` for null.
fn num(m: &serde_json::Map<String, Value>, k: &str) -> Option<f64> {
    match &m[k] {
        Value::Null => None,
        v => Some(v.as_f64().unwrap()),
    }
}

#[test]
fn the_jsonl_holds_the_stats_and_evaluations_in_order() {
    let out = tempfile::tempdir().unwrap();
    let stats = run(out.path(), 7, 3, None, Some(2)).unwrap();
    let all = lines(out.path());
    // Order: eval 0, then per step its line and (even steps) its evaluation, then the final one.
    let kinds: Vec<(u64, bool)> = all
        .iter()
        .map(|m| (m["step"].as_u64().unwrap(), m.contains_key("loss")))
        .collect();
    let mut expected = vec![(0, false)];
    for s in 1..=7u64 {
        expected.push((s, true));
        if s % 2 == 0 {
            expected.push((s, false));
        }
    }
    expected.push((7, false));
    assert_eq!(kinds, expected);

    let train: Vec<_> = all.iter().filter(|m| m.contains_key("loss")).collect();
    let mut tokens = 0;
    for (i, m) in train.iter().enumerate() {
        let finite = |v: f64| v.is_finite().then_some(v);
        assert_eq!(num(m, "loss"), finite(stats.losses[i]), "step {}", i + 1);
        assert_eq!(num(m, "grad_norm"), finite(stats.grad_norms[i]));
        assert_eq!(num(m, "learning_rate"), Some(stats.lrs[i]));
        tokens += m["num_tokens"].as_u64().unwrap() as usize;
        assert!(num(m, "tokens_per_second").unwrap() > 0.0);
        assert!(num(m, "elapsed_seconds").unwrap() >= 0.0);
        assert_eq!(m["skipped"].as_bool().unwrap(), i == 2, "step {}", i + 1);
    }
    // Micro-batch i has 3 + i % 2 tokens, but the NaN one (2) reports 3.
    assert_eq!(tokens, stats.tokens);
    assert_eq!(tokens, (0..7).map(|i| 3 + i % 2).sum::<usize>());
    // The skipped step: loss and gradient norm null.
    assert_eq!(train[2]["loss"], Value::Null);
    assert_eq!(train[2]["grad_norm"], Value::Null);
    assert_eq!(stats.skipped_steps, 1);
    for m in all.iter().filter(|m| !m.contains_key("loss")) {
        let s = m["step"].as_u64().unwrap() as usize;
        assert_eq!(num(m, "eval_loss"), Some(eval_loss(s)));
        assert!(num(m, "eval_runtime").unwrap() >= 0.0);
    }
    // The records read back equal the lines' values.
    let text = std::fs::read_to_string(out.path().join(METRICS_FILE)).unwrap();
    let recs: Vec<MetricsRecord> = text
        .lines()
        .map(|l| MetricsRecord::from_json_line(l).unwrap())
        .collect();
    match &recs[1] {
        MetricsRecord::Train(r) => assert_eq!(r.loss, stats.losses[0]),
        other => panic!("expected step 1, got {other:?}"),
    }
}

/// The line without its timing fields.
fn untimed(mut m: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    for k in ["tokens_per_second", "elapsed_seconds", "eval_runtime"] {
        m.remove(k);
    }
    m
}

#[test]
fn a_resumed_run_writes_the_uninterrupted_file() {
    let whole = tempfile::tempdir().unwrap();
    run(whole.path(), 5, 1, None, None).unwrap();
    // The same run, then resumed from step 3: its records after step 3 are replaced.
    let part = tempfile::tempdir().unwrap();
    run(part.path(), 5, 1, None, None).unwrap();
    // A crash while appending leaves a line without its newline: dropped on resume.
    let file = part.path().join(METRICS_FILE);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"step\":6,\"loss\":0.");
    std::fs::write(&file, text).unwrap();
    let ckpt = part.path().join("checkpoint-3");
    run(part.path(), 5, 1, Some(&ckpt), None).unwrap();
    let a: Vec<_> = lines(whole.path()).into_iter().map(untimed).collect();
    let b: Vec<_> = lines(part.path()).into_iter().map(untimed).collect();
    assert_eq!(a.len(), 1 + 5 + 2 + 1);
    assert_eq!(a, b);

    // A line that is not a record stops a resume, naming the file and line.
    std::fs::write(
        part.path().join(METRICS_FILE),
        "{\"step\": 1, \"loss\": 2}\nnot json\n",
    )
    .unwrap();
    let err = MetricsLog::in_dir(part.path(), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics.jsonl") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn ema_is_tensorboards_debiased_average() {
    // w = 0.5: 1 → 0.5/(1−0.5) = 1; NaN skipped; 3 → (0.25 + 1.5)/(1 − 0.25) = 7/3.
    let s = ema(&[1.0, f64::NAN, 3.0], 0.5);
    assert_eq!(s[0], 1.0);
    assert!(s[1].is_nan());
    assert!((s[2] - 7.0 / 3.0).abs() < 1e-15);
    assert_eq!(ema(&[4.0, 2.0], 0.0), vec![4.0, 2.0]);
}

#[cfg(feature = "plot")]
#[test]
fn the_figure_decodes_and_shows_its_curves() {
    let out = tempfile::tempdir().unwrap();
    run(out.path(), 12, 4, None, None).unwrap();
    let bytes = std::fs::read(out.path().join(LOSS_PLOT_FILE)).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), lora_train::LOSS_PLOT_SIZE);
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let count = |rgb: [u8; 3]| px.iter().filter(|p| **p == rgb).count();
    // The smoothed loss in bold #1f77b4, the evaluations' eval_loss in #ff7f0e.
    assert!(count([0x1f, 0x77, 0xb4]) > 100, "no smoothed loss line");
    assert!(count([0xff, 0x7f, 0x0e]) > 20, "no eval_loss points");
    // Mostly white, but not blank: axes, labels and curves.
    let white = count([255, 255, 255]);
    assert!(
        white > px.len() / 2 && white < px.len() - 2000,
        "{white} white"
    );
}
