//! The finetune options' defaults and checks.

mod common;

use common::{finetune_opts, AB};
use lora_core::Precision;
use lora_recipes::{ModelKind, ScoreInit, Task, Truncation};

#[test]
fn defaults_are_the_readme_run() {
    let o = finetune_opts(&[]);
    assert_eq!(o.model, ModelKind::Smollm2);
    assert_eq!(o.task, Task::Classify);
    assert_eq!(
        (o.steps, o.batch_size, o.grad_accum, o.max_length),
        (150, 8, 1, 128)
    );
    assert_eq!(
        (o.lr, o.warmup_steps, o.seed, o.eval_size),
        (1e-3, 10, 42, 500)
    );
    assert_eq!(o.layers, "top-half");
    assert_eq!(o.suffix, "\nSentiment:");
    assert_eq!(o.score_init, ScoreInit::Verbalizer);
    assert_eq!(o.truncation, Truncation::Head);
    assert_eq!(
        (o.pad_multiple, o.eval_batch_size, o.blocksize),
        (1, 16, 64)
    );
    assert_eq!(o.output_dir, std::path::PathBuf::from("out/finetune"));
    assert!(o.validate().is_ok());
}

#[test]
fn validate_names_the_flag() {
    let cases: [(&[&str], &str); 10] = [
        (&["--r", "0"], "--r 0: must be at least 1"),
        (&["--eval-size", "0"], "--eval-size 0: must be at least 1"),
        (&["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (
            &["--eval-batch-size", "0"],
            "--eval-batch-size 0: must be at least 1",
        ),
        (
            &["--pad-multiple", "0"],
            "--pad-multiple 0: must be at least 1",
        ),
        (
            &["--lora-alpha=-1"],
            "--lora-alpha -1: must be a finite number > 0",
        ),
        (
            &["--lora-dropout", "1"],
            "--lora-dropout 1: must be in [0, 1) (a probability; 1 would drop everything)",
        ),
        (&["--lr", "inf"], "--lr inf: must be a finite number > 0"),
        (&["--steps", "0"], "--steps 0: must be at least 1"),
        (
            &["--task", "causal-lm", "--dump-data", "d.safetensors"],
            "--dump-data is for --task classify only",
        ),
    ];
    for (flags, msg) in cases {
        assert_eq!(
            finetune_opts(flags).validate().unwrap_err().to_string(),
            msg
        );
    }
}

#[test]
fn quant_kind_none_nf4_and_errors() {
    assert!(finetune_opts(&[]).quant_kind().unwrap().is_none());
    assert!(finetune_opts(&["--quant", " NONE "])
        .quant_kind()
        .unwrap()
        .is_none());
    let k = finetune_opts(&["--quant", "nf4", "--blocksize", "128"])
        .quant_kind()
        .unwrap()
        .expect("a scheme");
    assert_eq!(
        k,
        "nf4"
            .parse::<lora_core::QuantKind>()
            .unwrap()
            .with_blocksize(128)
    );
    let e = finetune_opts(&["--quant", "nf5"])
        .quant_kind()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--quant: ") && e.ends_with("(or \"none\")"),
        "{e}"
    );
    let e = finetune_opts(&["--quant", "nf4", "--blocksize", "33"])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--blocksize: "), "{e}");
}

#[test]
fn precision_is_checked_against_the_backend() {
    let device = Default::default();
    let p = finetune_opts(&[]).precision::<AB>(&device).unwrap();
    assert_eq!(p, Precision::F32);
    // The CPU backend holds no bf16 tensors.
    let e = finetune_opts(&["--precision", "bf16"])
        .precision::<AB>(&device)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--precision bf16: "), "{e}");
    let e = finetune_opts(&["--precision", "f8"])
        .precision::<AB>(&device)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--precision: "), "{e}");
}
