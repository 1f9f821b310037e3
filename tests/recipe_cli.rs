//! `finetune --config`: a bad recipe stops the run with one `error:` line naming the file and
//! the key before anything is fetched; a run from a recipe writes `training_config.toml`, and
//! that file, with `--resume`, continues the run to the same adapter.
//!
//! The example binary is the one `cargo test` builds next to this test
//! (`target/<profile>/examples/finetune`); run `cargo test --release` (or
//! `cargo build --release --examples` first when selecting this test alone).

use lora_models::gpt2::{Gpt2, Gpt2Config};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>/examples/finetune`, from this test's own path `target/<profile>/deps/<test>`.
fn finetune_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps")
        .join("examples/finetune");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test --release` or `cargo build --release --examples` first",
        bin.display()
    );
    bin
}

/// `finetune args` in `cwd`, with an empty cache, `HOME` and `PATH` (nothing can be fetched).
fn finetune(args: &[&str], cwd: &Path, cache: &Path) -> Output {
    Command::new(finetune_bin())
        .args(args)
        .env("LORA_BURN_CACHE", cache)
        .env("HOME", cache)
        .env("PATH", cache)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn bad_recipes_are_refused_with_one_line_before_fetching() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let missing = tmp.path().join("missing.toml");
    let mut cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            missing.to_string_lossy().into_owned(),
            vec![],
            "cannot read the recipe",
        ),
        (
            write("syntax.toml", "r = 4\nr 5\n"),
            vec![],
            ":2:3: not valid TOML",
        ),
        (
            write("key.toml", "lora_alpah = 3\n"),
            vec![],
            "unknown key `lora_alpah`; the closest valid key is `lora_alpha`",
        ),
        (
            write("type.toml", "r = \"eight\"\n"),
            vec![],
            "`r` = \"eight\": invalid type: string \"eight\", expected usize",
        ),
        (
            write("enum.toml", "method = \"lorra\"\n"),
            vec![],
            "`method` = \"lorra\": unknown variant `lorra`",
        ),
        // The file goes through the flags' checks; a flag typed after it is checked too.
        (
            write("zero.toml", "r = 0\n"),
            vec![],
            "--r 0: must be at least 1",
        ),
        (
            write("ok.toml", "r = 4\n"),
            vec!["--steps".into(), "0".into()],
            "--steps 0: must be at least 1",
        ),
    ];
    #[cfg(feature = "ndarray")]
    cases.push((
        write("bf16.toml", "precision = \"bf16\"\n"),
        vec![],
        "--precision bf16",
    ));
    for (recipe, extra, want) in &cases {
        let mut args = vec!["--config", recipe.as_str()];
        args.extend(extra.iter().map(String::as_str));
        let out = finetune(&args, tmp.path(), cache.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(out.status.code(), Some(1), "{recipe}: {stderr}");
        assert_eq!(lines.len(), 1, "{recipe}: one line expected: {stderr}");
        assert!(lines[0].starts_with("error: "), "{recipe}: {stderr}");
        assert!(lines[0].contains(*want), "{recipe}: {stderr}");
        if !want.starts_with("--") {
            assert!(
                lines[0].contains(recipe.as_str()),
                "file not named: {stderr}"
            );
        }
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn help_mentions_config() {
    let cache = tempfile::tempdir().unwrap();
    let out = finetune(&["--help"], cache.path(), cache.path());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--config <CONFIG>"), "{help}");
}

#[test]
fn training_config_toml_repeats_and_resumes_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // A random GPT-2 with GPT-2's vocabulary (the tokenizer's), tiny otherwise.
    let cfg = Gpt2Config::sized(50257, 32, 8, 2, 2).unwrap();
    let model = Gpt2::<lora_burn::Backend>::random(&cfg, &Default::default()).unwrap();
    model.save_hf(&cfg, &root.join("gpt2")).unwrap();
    let reviews: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"t":"review number {i} of eight","s":{}}}"#, i % 2))
        .collect();
    std::fs::write(
        root.join("reviews.json"),
        format!("[{}]", reviews.join(",")),
    )
    .unwrap();
    std::fs::create_dir(root.join("recipes")).unwrap();
    // Relative paths: against the recipe's folder, not the working directory.
    std::fs::write(
        root.join("recipes/run.toml"),
        "model = \"gpt2\"\nmodel_path = \"../gpt2\"\ndata_path = \"../reviews.json\"\n\
         steps = 4\nbatch_size = 2\nmax_length = 16\neval_size = 2\ncheckpoint_every = 2\n\
         no_eval_before = true\noutput_dir = \"../out\"\nr = 16\n",
    )
    .unwrap();
    let recipe = root.join("recipes/run.toml");
    let out = finetune(
        &["--config", recipe.to_str().unwrap(), "--r", "2"],
        elsewhere.path(),
        cache.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved = root.join("out/training_config.toml");
    let text = std::fs::read_to_string(&resolved).unwrap();
    // The typed flag won; paths are absolute.
    assert!(text.contains("\nr = 2\n"), "{text}");
    let model_line = format!(
        "\nmodel_path = \"{}\"\n",
        root.join("recipes/../gpt2").display()
    );
    assert!(text.contains(&model_line), "{text}");
    let adapter = std::fs::read(root.join("out/adapter_model.safetensors")).unwrap();

    // Continue from step 2 in another folder, from the resolved options alone.
    let copy = root.join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(&resolved, copy.join("run.toml")).unwrap();
    let (recipe, ck, out2) = (
        copy.join("run.toml"),
        root.join("out/checkpoint-2"),
        root.join("out2"),
    );
    let [recipe_arg, ck_arg, out2_arg] = [&recipe, &ck, &out2].map(|p| p.to_str().unwrap());
    let resume = [
        "--config",
        recipe_arg,
        "--resume",
        ck_arg,
        "--output-dir",
        out2_arg,
    ];
    let out = finetune(&resume, elsewhere.path(), cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resumed at step 3"), "{stderr}");
    // Bit for bit on the CPU.
    #[cfg(feature = "ndarray")]
    assert!(adapter == std::fs::read(out2.join("adapter_model.safetensors")).unwrap());
    #[cfg(not(feature = "ndarray"))]
    drop(adapter);
    // Another option is refused by the checkpoint's fingerprint, naming it.
    let other_lr = [&resume[..], &["--lr", "0.002"]].concat();
    let out = finetune(&other_lr, elsewhere.path(), cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--lr"), "{stderr}");
}
