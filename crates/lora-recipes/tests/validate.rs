//! The checks that need the data, the tokenizer or the loaded model, and the output directory.

mod common;

use common::{finetune_opts, tiny_gpt2};
use lora_core::NamedLinears;
use lora_models::tokenizer::Tokenizer;
use std::path::Path;

#[test]
fn eval_size_must_leave_training_reviews() {
    let o = finetune_opts(&["--eval-size", "10"]);
    let e = o
        .check_data(10, Path::new("r.json"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--eval-size 10: must be less than the 10 reviews of r.json (some must be left for \
         training)"
    );
    assert!(o.check_data(11, Path::new("r.json")).is_ok());
}

#[test]
fn max_length_must_exceed_the_suffix() {
    let tok = Tokenizer::gpt2().unwrap();
    let n = tok.encode("\nSentiment:").unwrap().len();
    let at = n.to_string();
    let o = finetune_opts(&["--max-length", &at]);
    let e = o.check_tokenizer(&tok).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "--max-length {n}: must exceed the {n} tokens of --suffix"
        )),
        "{e}"
    );
    let above = (n + 1).to_string();
    assert!(finetune_opts(&["--max-length", &above])
        .check_tokenizer(&tok)
        .is_ok());
    // Language modelling has no suffix.
    assert!(finetune_opts(&["--task", "causal-lm", "--max-length", "1"])
        .check_tokenizer(&tok)
        .is_ok());
}

#[test]
fn unknown_target_modules_list_the_model_names() {
    let m = tiny_gpt2(0);
    let names = m.linear_names();
    let targets = &lora_models::gpt2::LORA_TARGETS;
    let path = Path::new("tiny");
    let o = finetune_opts(&["--model", "gpt2", "--target-modules", "q_proj,v_proj"]);
    let e = o
        .check_targets(&names, targets, path)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--target-modules q_proj,v_proj: "), "{e}");
    assert!(e.contains("c_attn, c_fc, c_proj"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let ok = finetune_opts(&["--model", "gpt2", "--target-modules", "c_attn"]);
    assert!(ok.check_targets(&names, targets, path).is_ok());
    // Prefix tuning has no target modules: nothing to check.
    let p = finetune_opts(&["--method", "prefix-tuning", "--target-modules", "nope"]);
    assert!(p.check_targets(&names, targets, path).is_ok());
}

#[test]
fn output_dir_is_created_or_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run/adapter");
    let o = finetune_opts(&["--output-dir", out.to_str().unwrap()]);
    o.prepare_outputs().unwrap();
    assert!(out.is_dir());
    let file = d.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("adapter");
    let o = finetune_opts(&["--output-dir", bad.to_str().unwrap()]);
    let e = o.prepare_outputs().unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "--output-dir {}: cannot write there",
            bad.display()
        )),
        "{e}"
    );
}

#[test]
fn bench_json_lines_are_appended_atomically() {
    use lora_recipes::bench::report::JsonSink;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("runs.jsonl");
    std::fs::write(&p, "{\"run\":0}").unwrap(); // an earlier run, last newline missing
    let mut sink = JsonSink::open(Some(&p)).unwrap();
    sink.emit(&serde_json::json!({"run": 1})).unwrap();
    sink.emit(&serde_json::json!({"run": 2})).unwrap();
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "{\"run\":0}\n{\"run\":1}\n{\"run\":2}\n"
    );
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "temporary files left: {names:?}");
    let file = d.path().join("runs.jsonl").join("x.jsonl");
    let e = JsonSink::open(Some(&file)).unwrap_err();
    assert!(
        e.starts_with(&format!("--json {}: ", file.display())),
        "{e}"
    );
}
