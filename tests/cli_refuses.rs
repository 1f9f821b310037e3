//! Every example refuses bad flags with one `error:` line naming the flag and the value, exit
//! code 1, no panic and no backtrace — and does so before anything is fetched: each run gets an
//! empty cache (`LORA_BURN_CACHE`), `HOME`, and a `PATH` without `npm` or `python3`, so a check
//! that came after a fetch would fail with the fetch's error instead of the flag's.
//!
//! The example binaries are the ones `cargo test` builds next to this test
//! (`target/<profile>/examples/<name>`); run `cargo test --release` (or
//! `cargo build --release --examples` first when selecting this test alone).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One refusal: the example, its arguments, the flag and the value its message must name.
struct Case {
    example: &'static str,
    args: Vec<OsString>,
    flag: &'static str,
    value: String,
    /// Checked after the data, tokenizer or model is known: progress lines may come first,
    /// the error line is the last one.
    late: bool,
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `target/<profile>/examples/<name>`, from this test's own path `target/<profile>/deps/<test>`.
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "example binary {} is missing: run `cargo test --release` (it builds the examples) or \
         `cargo build --release --examples` before selecting this test alone",
        bin.display()
    );
    bin
}

fn case(example: &'static str, args: &[&str], flag: &'static str, value: &str) -> Case {
    Case {
        example,
        args: args.iter().map(OsString::from).collect(),
        flag,
        value: value.to_string(),
        late: false,
    }
}

/// A small `reviews.json` (3 positive, 3 negative).
fn write_reviews(dir: &Path) -> String {
    let p = dir.join("reviews.json");
    let json: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"t":"review number {i}, one of six","s":{}}}"#, i % 2))
        .collect();
    std::fs::write(&p, format!("[{}]", json.join(","))).unwrap();
    p.to_string_lossy().into_owned()
}

/// Every refusal; paths below `tmp`.
fn cases(tmp: &Path) -> Vec<Case> {
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let (gpt2, llama, lora) = (
        fixture("gpt2_a"),
        fixture("llama_a"),
        fixture("gpt2_a_lora"),
    );
    let ids = format!("{gpt2}/io.safetensors");
    let data = write_reviews(tmp);
    // A regular file: nothing can be created below it, even by root (permission bits are not
    // enough when the tests run as root).
    let file = tmp.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (bad_dir, bad_file) = (s(file.join("out")), s(file.join("out.safetensors")));
    std::fs::write(tmp.join("not-a-model.bin"), b"definitely not GGUF").unwrap();
    let not_model = s(tmp.join("not-a-model.bin"));
    let missing = s(tmp.join("missing-model"));
    let (out, out_st) = (s(tmp.join("out")), s(tmp.join("out.safetensors")));
    // Inputs that are no regular files: a device, a FIFO (opening it would block), an adapter
    // whose weights are a link to a device (reading it would never end).
    let zero = "/dev/zero".to_string();
    let fifo = s(tmp.join("fifo"));
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo {fifo}");
    let dev_adapter = s(tmp.join("dev-adapter"));
    std::fs::create_dir(&dev_adapter).unwrap();
    std::fs::copy(
        format!("{}/adapter_config.json", fixture("gpt2_a_lora")),
        format!("{dev_adapter}/adapter_config.json"),
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&zero, format!("{dev_adapter}/adapter_model.safetensors")).unwrap();
    // Outputs that are inputs (copies: a failure must not overwrite the fixtures), a file name
    // ending in a separator.
    let gpt2_copy = s(tmp.join("gpt2-copy"));
    std::fs::create_dir(&gpt2_copy).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(
            format!("{}/{f}", fixture("gpt2_a")),
            format!("{gpt2_copy}/{f}"),
        )
        .unwrap();
    }
    let q_in = format!("{gpt2_copy}/model.safetensors");
    let slash = format!("{out_st}/");
    let (ft, lg, mg, cb, gn, qz, tb) = (
        "finetune",
        "logits",
        "merge",
        "combine",
        "generate",
        "quantize",
        "train_bench",
    );
    let mut c = vec![
        // finetune: values alone (no model path: the default model would be fetched).
        case(ft, &["--r", "0"], "--r", "0"),
        case(ft, &["--lora-alpha", "0"], "--lora-alpha", "0"),
        case(ft, &["--lora-alpha=-2"], "--lora-alpha", "-2"),
        case(ft, &["--lora-dropout", "1"], "--lora-dropout", "1"),
        case(ft, &["--lora-dropout=-0.1"], "--lora-dropout", "-0.1"),
        case(ft, &["--lr", "0"], "--lr", "0"),
        case(ft, &["--lr=-0.001"], "--lr", "-0.001"),
        case(ft, &["--lr", "nan"], "--lr", "NaN"),
        case(ft, &["--lr", "inf"], "--lr", "inf"),
        case(ft, &["--batch-size", "0"], "--batch-size", "0"),
        case(ft, &["--eval-batch-size", "0"], "--eval-batch-size", "0"),
        case(ft, &["--grad-accum", "0"], "--grad-accum", "0"),
        case(ft, &["--steps", "0"], "--steps", "0"),
        case(ft, &["--max-length", "0"], "--max-length", "0"),
        case(ft, &["--eval-size", "0"], "--eval-size", "0"),
        case(ft, &["--pad-multiple", "0"], "--pad-multiple", "0"),
        case(ft, &["--reduction-factor", "0"], "--reduction-factor", "0"),
        case(ft, &["--time-budget", "0"], "--time-budget", "0"),
        case(ft, &["--layers", "3-1"], "--layers", "3-1"),
        case(ft, &["--max-bad-steps", "0"], "--max-bad-steps", "0"),
        case(
            ft,
            &["--resume", "/nonexistent/checkpoint-3"],
            "--resume",
            "/nonexistent/checkpoint-3",
        ),
        case(
            ft,
            &["--method", "prompt-tuning", "--num-virtual-tokens", "0"],
            "--num-virtual-tokens",
            "0",
        ),
        case(
            ft,
            &["--target-modules", "q_proj,,v_proj"],
            "--target-modules",
            "q_proj,,v_proj",
        ),
        case(ft, &["--quant", "nf5"], "--quant", "nf5"),
        case(
            ft,
            &["--quant", "nf4", "--blocksize", "100"],
            "--blocksize",
            "100",
        ),
        case(ft, &["--precision", "f8"], "--precision", "f8"),
        // finetune: paths, before any fetch.
        case(ft, &["--model-path", &missing], "--model-path", &missing),
        case(
            ft,
            &["--model-path", &not_model],
            "--model-path",
            &not_model,
        ),
        // The files decide the family; --model gpt2 contradicting a Llama directory is refused.
        case(
            ft,
            &["--model", "gpt2", "--model-path", &llama],
            "--model-path",
            &llama,
        ),
        case(
            ft,
            &["--model", "gpt2", "--model-path", &not_model],
            "--model-path",
            &not_model,
        ),
        case(ft, &["--model", "gpt2"], "--model-path", "DIR"),
        case(ft, &["--data-path", &missing], "--data-path", &missing),
        case(ft, &["--output-dir", &bad_dir], "--output-dir", &bad_dir),
        case(ft, &["--dump-data", &bad_file], "--dump-data", &bad_file),
    ];
    // finetune: against the data, the tokenizer and the loaded model (after the backend line).
    let local = [
        "--model",
        "gpt2",
        "--model-path",
        &gpt2,
        "--data-path",
        &data,
        "--output-dir",
        &out,
    ];
    for (extra, flag, value) in [
        (&["--eval-size", "6"][..], "--eval-size", "6"),
        (
            &["--eval-size", "2", "--max-length", "2"],
            "--max-length",
            "2",
        ),
        (
            &[
                "--eval-size",
                "2",
                "--max-length",
                "16",
                "--target-modules",
                "q_proj,v_proj",
            ],
            "--target-modules",
            "q_proj,v_proj",
        ),
    ] {
        let args = [&local[..], extra].concat();
        c.push(Case {
            late: true,
            ..case(ft, &args, flag, value)
        });
    }
    let (mp, ad, o, w) = ("--model-path", "--adapter", "--out", "--weight");
    let ii = "--input-ids";
    c.extend([
        case(lg, &[mp, &missing, ii, &ids, o, &out_st], mp, &missing),
        case(lg, &[mp, &not_model, ii, &ids, o, &out_st], mp, &not_model),
        // A hub id in no local cache: the places looked, in one line.
        case(
            lg,
            &[mp, "no-org/no-model", ii, &ids, o, &out_st],
            mp,
            "no-org/no-model",
        ),
        case(lg, &[mp, &gpt2, ii, &missing, o, &out_st], ii, &missing),
        case(lg, &[mp, &gpt2, ii, &ids, o, &bad_file], o, &bad_file),
        case(mg, &[mp, &missing, ad, &lora, o, &out], mp, &missing),
        case(mg, &[mp, &gpt2, ad, &missing, o, &out], ad, &missing),
        case(mg, &[mp, &gpt2, ad, &lora, o, &bad_dir], o, &bad_dir),
        case(
            cb,
            &[mp, &not_model, ad, &lora, w, "1", o, &out],
            mp,
            &not_model,
        ),
        case(cb, &[mp, &gpt2, ad, &lora, w, "nan", o, &out], w, "NaN"),
        case(
            cb,
            &[mp, &gpt2, ad, &lora, w, "1", o, &bad_dir],
            o,
            &bad_dir,
        ),
        case(
            cb,
            &[
                mp,
                &gpt2,
                ad,
                &lora,
                w,
                "1",
                "--combination-type",
                "mean",
                o,
                &out,
            ],
            "--combination-type",
            "mean",
        ),
        case(gn, &[mp, &missing, "--prompt", "hi"], mp, &missing),
        case(
            gn,
            &[mp, &llama, "--prompt", "hi", "--temperature", "0"],
            "--temperature",
            "0",
        ),
        case(
            gn,
            &[mp, &llama, "--prompt", "hi", "--top-p", "1.5"],
            "--top-p",
            "1.5",
        ),
        case(
            gn,
            &[mp, &llama, "--prompt", "hi", "--repetition-penalty", "0"],
            "--repetition-penalty",
            "0",
        ),
        case(
            gn,
            &[mp, &llama, "--prompt", "hi", "--max-new-tokens", "0"],
            "--max-new-tokens",
            "0",
        ),
        case(gn, &[mp, &gpt2, ii, &ids, o, &bad_file], o, &bad_file),
        case(
            qz,
            &["--input", &missing, "--quant", "nf4", o, &out_st],
            "--input",
            &missing,
        ),
        case(
            qz,
            &[
                "--input",
                &ids,
                "--quant",
                "nf4",
                "--blocksize",
                "100",
                o,
                &out_st,
            ],
            "--blocksize",
            "100",
        ),
        case(
            qz,
            &["--input", &ids, "--quant", "nf4", o, &bad_file],
            o,
            &bad_file,
        ),
        case(
            qz,
            &["--input", &zero, "--quant", "nf4", o, &out_st],
            "--input",
            &zero,
        ),
        case(
            qz,
            &["--input", &q_in, "--quant", "nf4", o, &q_in],
            o,
            &q_in,
        ),
        case(lg, &[mp, &gpt2, ii, &zero, o, &out_st], ii, &zero),
        case(lg, &[mp, &gpt2, ii, &ids, o, "/dev/null"], o, "/dev/null"),
        case(
            lg,
            &[mp, &gpt2, ad, &dev_adapter, ii, &ids, o, &out_st],
            ad,
            &dev_adapter,
        ),
        case(
            mg,
            &[mp, &gpt2_copy, ad, &lora, o, &gpt2_copy],
            o,
            &gpt2_copy,
        ),
        case(gn, &[mp, &gpt2, ii, &ids, o, &slash], o, &slash),
        case(ft, &["--model-path", &fifo], "--model-path", &fifo),
        case(ft, &["--data-path", &zero], "--data-path", &zero),
        case(
            tb,
            &["--config", "tiny", "--seq", "32", "--json", &fifo],
            "--json",
            &fifo,
        ),
        case(tb, &["--config", "tiny", "--lr", "0"], "--lr", "0"),
        case(tb, &["--config", "tiny", "--steps", "0"], "--steps", "0"),
        case(tb, &["--config", "tiny", "--batch", "0"], "--batch", "0"),
        case(
            tb,
            &["--config", "tiny", "--seq", "32", "--json", &bad_file],
            "--json",
            &bad_file,
        ),
    ]);
    // A text value that is not UTF-8 (a path need not be; see the quantize tests).
    #[cfg(unix)]
    c.push(Case {
        args: ["--input", &ids, "--quant"]
            .iter()
            .map(OsString::from)
            .chain([std::os::unix::ffi::OsStringExt::from_vec(vec![0xff])])
            .chain(["--out", &out_st].iter().map(OsString::from))
            .collect(),
        ..case(qz, &[], "--quant", r#""\xFF""#)
    });
    c
}

#[test]
fn every_example_refuses_bad_flags_with_one_line_before_fetching() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let cases = cases(tmp.path());
    let mut failures = Vec::new();
    for c in &cases {
        let out = Command::new(example_bin(c.example))
            .args(&c.args)
            .env("LORA_BURN_CACHE", cache.path())
            .env("HOME", cache.path())
            .env("PATH", empty_path.path())
            .env("RUST_BACKTRACE", "1")
            // Relative defaults (`--output-dir out/finetune`) land in the temporary folder.
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error")).collect();
        let line = if c.late {
            lines.last().copied().unwrap_or("")
        } else {
            lines.first().copied().unwrap_or("")
        };
        let value_named = line.contains(&c.value);
        let problems = [
            (out.status.code() != Some(1), "exit code is not 1"),
            (
                !c.late && lines.len() != 1,
                "stderr is not exactly one line",
            ),
            (errors.len() != 1, "not exactly one error line"),
            (
                !line.starts_with("error: "),
                "the line does not start with `error: `",
            ),
            (!line.contains(c.flag), "the flag is not named"),
            (!value_named, "the value is not named"),
            (
                stderr.contains("panicked") || stderr.to_lowercase().contains("backtrace"),
                "panic or backtrace",
            ),
        ];
        let bad: Vec<&str> = problems.iter().filter(|p| p.0).map(|p| p.1).collect();
        if !bad.is_empty() {
            failures.push(format!(
                "{} {:?}: {} (status {:?}); stderr:\n{stderr}",
                c.example,
                c.args,
                bad.join(", "),
                out.status
            ));
        }
    }
    // Nothing was fetched into the empty cache, and nothing was created below the blocked paths.
    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert!(cached.is_empty(), "the cache is not empty: {cached:?}");
    assert!(tmp.path().join("a-file").is_file());
    assert!(
        failures.is_empty(),
        "{} of {} refusals failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The refusals this test covers (the count is reported in docs/reliability.md).
    assert_eq!(cases.len(), 73, "update the count in docs/reliability.md");
}

/// A bad value of a backend switch of the patched burn crates (`LORA_BURN_*`, vendor/PATCHES.md)
/// is refused by every example that loads a model (all but `quantize`, which converts files on
/// the host), before it reads or fetches anything, with one line naming the variable and the
/// value (the crates themselves would panic mid-step).
#[test]
fn bad_backend_switches_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let gpt2 = fixture("gpt2_a");
    let ids = format!("{gpt2}/io.safetensors");
    let out = tmp
        .path()
        .join("out.safetensors")
        .to_string_lossy()
        .into_owned();
    let logits_args = ["--model-path", &gpt2, "--input-ids", &ids, "--out", &out];
    let lora = fixture("gpt2_a_lora");
    let merge_args = ["--model-path", &gpt2, "--adapter", &lora, "--out", &out];
    let combine_args = [
        "--model-path",
        &gpt2,
        "--adapter",
        &lora,
        "--weight",
        "1",
        "--out",
        &out,
    ];
    let cases: [(&str, &[&str], &str, &str); 7] = [
        ("finetune", &[], "LORA_BURN_ATTENTION", "flash"),
        ("finetune", &[], "LORA_BURN_CUBLASLT", "on"),
        ("train_bench", &[], "LORA_BURN_MATMUL", "fastest"),
        ("logits", &logits_args, "LORA_BURN_FUSED_MATMUL", "mma"),
        (
            "generate",
            &logits_args,
            "LORA_BURN_ATTENTION",
            "recompute:0",
        ),
        ("merge", &merge_args, "LORA_BURN_CUBLASLT", ""),
        ("combine", &combine_args, "LORA_BURN_MATMUL", "Upstream"),
    ];
    for (example, args, var, value) in cases {
        let run = Command::new(example_bin(example))
            .args(args)
            .env(var, value)
            .env("LORA_BURN_CACHE", cache.path())
            .env("HOME", cache.path())
            .env("PATH", empty_path.path())
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let want = format!("error: {var}={value:?}: expected ");
        assert!(
            run.status.code() == Some(1) && lines.len() == 1 && lines[0].starts_with(&want),
            "{example} with {var}={value}: status {:?}, stderr:\n{stderr}",
            run.status
        );
    }
    assert!(!Path::new(&out).exists());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn missing_npm_names_it_and_where_to_place_the_data() {
    // Valid flags, an empty cache and no `npm` on PATH: the fetch of IMDB is the first thing
    // to fail, with one line saying what to install or which file to place where.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let empty_path = tempfile::tempdir().unwrap();
    let out = Command::new(example_bin("finetune"))
        .args(["--model", "gpt2", "--model-path", &fixture("gpt2_a")])
        .args(["--max-length", "16", "--output-dir"])
        .arg(tmp.path().join("out"))
        .env("LORA_BURN_CACHE", &cache)
        .env("HOME", tmp.path())
        .env("PATH", empty_path.path())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    let placed = cache.join("imdb").join("reviews.json");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(last.starts_with("error: `npm` was not found"), "{stderr}");
    assert!(last.contains(&*placed.to_string_lossy()), "{stderr}");
    assert!(!placed.exists());
}
