//! `finetune --devices 2` against `--devices 1` on the same global batches, on the CPU (two
//! replicas on the one NdArray device): the adapters agree within 1e-5, for the classification
//! and the causal-LM task, and with an NF4-quantized base (QLoRA). Every review has the same
//! number of tokens, so each shard's mean
//! loss weighs as much as the other's (the data-parallel step averages the shards' means, as
//! PyTorch's DDP does). A batch that cannot be split across the devices is refused.
//! One test function: the collective and the NdArray random stream are process-global.

mod common;

use common::{finetune_opts, finetune_tiny_gpt2};
use lora_data::imdb::Review;
use lora_models::tokenizer::Tokenizer;
use safetensors::SafeTensors;
use std::path::Path;

/// `n` reviews of seven GPT-2 tokens each ("film 3 was good", "film 4 was bad", …).
fn reviews(n: usize, offset: usize) -> Vec<Review> {
    (offset..offset + n)
        .map(|i| Review {
            text: format!(
                "film {} was {}",
                i % 10,
                if i % 2 == 1 { "good" } else { "bad" }
            ),
            label: (i % 2) as u8,
        })
        .collect()
}

/// One `finetune` run with `flags` into `out`, on 8 training reviews in batches of 4.
fn run(flags: &[&str], out: &Path, train_reviews: usize) -> Result<(), String> {
    let (train, test) = (reviews(train_reviews, 0), reviews(4, 100));
    let out_s = out.display().to_string();
    let mut all = vec![
        "--model",
        "gpt2",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--max-length",
        "16",
        "--warmup-steps",
        "1",
        "--lora-dropout",
        "0",
        "--score-init",
        "random",
        "--layers",
        "all",
        "--eval-size",
        "4",
        "--no-eval-before",
        "--output-dir",
        &out_s,
    ];
    all.extend_from_slice(flags);
    finetune_tiny_gpt2(&all, &train, &test)
}

/// Every tensor of `<dir>/adapter_model.safetensors` as f32 values, by name.
fn adapter(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let vals = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, vals)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn two_devices_train_the_adapter_of_one() {
    let tok = Tokenizer::gpt2().unwrap();
    let lens: Vec<usize> = reviews(8, 0)
        .iter()
        .map(|r| tok.encode_with(&r.text, false).unwrap().len())
        .collect();
    assert!(
        lens.iter().all(|&l| l == lens[0]),
        "equal lengths: {lens:?}"
    );
    let cases: [&[&str]; 3] = [
        &["--task", "classify"],
        &["--task", "causal-lm"],
        &["--task", "classify", "--quant", "nf4"],
    ];
    for case in cases {
        let task = case.join(" ");
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        run(&[case, &["--devices", "1"]].concat(), one.path(), 8).unwrap();
        run(&[case, &["--devices", "2"]].concat(), two.path(), 8).unwrap();
        let (a, b) = (adapter(one.path()), adapter(two.path()));
        assert_eq!(a.len(), b.len(), "{task}: tensor count");
        assert!(a.len() >= 8, "{task}: {} tensors", a.len());
        let mut worst = 0.0f32;
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            for (x, y) in va.iter().zip(vb) {
                worst = worst.max((x - y).abs());
            }
        }
        println!("{task}: adapter on 2 devices vs 1, max abs diff {worst:.2e}");
        assert!(worst <= 1e-5, "{task}: adapters differ by {worst}");
        assert_ne!(
            a,
            adapter_at_start(case),
            "{task}: training moved the adapter"
        );
    }
    // 6 reviews in batches of 4: the last batch has 2 rows, which 4 devices cannot share.
    let out = tempfile::tempdir().unwrap();
    let e = run(&["--devices", "4"], out.path(), 6).unwrap_err();
    assert!(
        e.contains("2 rows (the last, short one) does not split evenly across --devices 4"),
        "{e}"
    );
    // Checked with the other flags, before anything is loaded.
    let e = finetune_opts(&["--batch-size", "4", "--devices", "3"])
        .check_values()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--batch-size 4 does not split evenly across --devices 3"),
        "{e}"
    );
    let e = finetune_opts(&["--lm-loss", "full"])
        .check_values()
        .unwrap_err()
        .to_string();
    assert!(e.contains("--lm-loss is for --task causal-lm only"), "{e}");
    let e = finetune_opts(&["--task", "causal-lm", "--max-length", "1"])
        .check_values()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--max-length 1: --task causal-lm needs at least 2 tokens"),
        "{e}"
    );
}

/// The adapter of a one-device run at learning rate 1e-30: the initial one to about 1e-30
/// (the only change a step can make at that rate).
fn adapter_at_start(case: &[&str]) -> Vec<(String, Vec<f32>)> {
    let out = tempfile::tempdir().unwrap();
    run(&[case, &["--lr", "1e-30"]].concat(), out.path(), 8).unwrap();
    adapter(out.path())
}
