//! The examples on a model named by its hub id, resolved offline in a local Hugging Face hub
//! cache (`HF_HUB_CACHE`): a bf16 sharded Llama checkpoint with its own tokenizer and chat
//! template (fixture `llama_hub/`, written by `tests/fixtures/make_hub_fixtures.py`).
//!
//! The example binaries are the ones `cargo test --release` builds next to this test.
#![cfg(unix)]

use lora_models::st::StFile;
use lora_models::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = "tiny-org/llama-hub";
const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_hub")
}

/// `target/<profile>/examples/<name>`, from this test's own path `target/<profile>/deps/<test>`.
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test --release` (it builds the examples)",
        bin.display()
    );
    bin
}

/// A hub cache under `cache` holding the fixture as `REPO` (blobs, snapshot links, refs/main).
fn hub_cache(cache: &Path) -> PathBuf {
    let repo = cache.join(format!("models--{}", REPO.replace('/', "--")));
    let (blobs, snap) = (repo.join("blobs"), repo.join("snapshots").join(HASH));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), HASH).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let blob = format!("blob-{}", name.replace('.', "_"));
        std::fs::copy(e.path(), blobs.join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(&name)).unwrap();
    }
    snap
}

fn run(example: &str, args: &[&str], cache: &Path, cwd: &Path) -> Output {
    let out = Command::new(example_bin(example))
        .args(args)
        .env("HF_HUB_CACHE", cache)
        .env_remove("HF_HOME")
        .env("LORA_BURN_CACHE", cwd.join("lora-burn-cache"))
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{example} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn logits_by_hub_id_and_revision_match_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snap = hub_cache(&cache);
    let ids = snap.join("io.safetensors");
    let want = StFile::open(&ids).unwrap().f32("logits").unwrap().0;
    for id in [
        REPO.to_string(),
        format!("{REPO}@{HASH}"),
        format!("{REPO}@main"),
    ] {
        let out = tmp.path().join("logits.safetensors");
        let args = ["--model-path", &id, "--input-ids"];
        let ids_s = ids.to_string_lossy();
        let out_s = out.to_string_lossy();
        run(
            "logits",
            &[&args[..], &[&ids_s, "--out", &out_s]].concat(),
            &cache,
            tmp.path(),
        );
        let got = StFile::open(&out).unwrap().f32("logits").unwrap().0;
        assert_eq!(got.len(), want.len());
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "{id}: max |diff| {d}");
    }
}

#[test]
fn generate_renders_the_checkpoints_chat_template() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snap = hub_cache(&cache);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap.join("ref.json")).unwrap()).unwrap();
    // transformers' rendering of [user: "  Tell me a story.  "], encoded without added
    // special tokens (the template writes them), is the prompt.
    let chat = reference["chat"][0]["text"].as_str().unwrap();
    let tok = Tokenizer::from_hf_dir(&snap).unwrap();
    let n = tok.encode_with(chat, false).unwrap().len();
    let args = [
        "--model-path",
        REPO,
        "--prompt",
        "  Tell me a story.  ",
        "--max-new-tokens",
        "3",
    ];
    let out = run("generate", &args, &cache, tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("prompt: {n} tokens in the model's chat template")),
        "{stderr}"
    );
    let raw = run(
        "generate",
        &[&args[..], &["--raw"]].concat(),
        &cache,
        tmp.path(),
    );
    let n_raw = tok.encode("  Tell me a story.  ").unwrap().len();
    let stderr = String::from_utf8_lossy(&raw.stderr);
    assert!(
        stderr.contains(&format!("prompt: {n_raw} tokens\n")),
        "{stderr}"
    );
}

#[test]
fn finetune_by_hub_id_uses_the_checkpoints_family_and_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snap = hub_cache(&cache);
    let reviews: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"t":"the cat sat on the mat {i}","s":{}}}"#, i % 2))
        .collect();
    let data = tmp.path().join("reviews.json");
    std::fs::write(&data, format!("[{}]", reviews.join(","))).unwrap();
    let out_dir = tmp.path().join("out");
    let args = [
        "--model-path",
        REPO,
        "--data-path",
        &data.to_string_lossy(),
        "--task",
        "causal-lm",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--eval-size",
        "2",
        "--eval-batch-size",
        "2",
        "--max-length",
        "16",
        "--output-dir",
        &out_dir.to_string_lossy(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("finetune", &args, &cache, tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("loaded {}", snap.display())),
        "{stderr}"
    );
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    // Llama's default LoRA targets (not GPT-2's c_attn), on the Llama checkpoint.
    let targets = cfg["target_modules"].to_string();
    assert!(
        targets.contains("q_proj") && !targets.contains("c_attn"),
        "{targets}"
    );
    assert_eq!(cfg["fan_in_fan_out"], false);
    // The hub id, as PEFT records the id given to from_pretrained (not this machine's snapshot).
    assert_eq!(cfg["base_model_name_or_path"], REPO);
}
