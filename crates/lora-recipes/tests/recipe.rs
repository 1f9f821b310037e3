//! Recipe files (`finetune --config`): precedence, path resolution, every error, and
//! `training_config.toml` read back as the same options.

use clap::FromArgMatches;
use lora_recipes::checkpointing::run_fingerprint;
use lora_recipes::recipe::fields::command;
use lora_recipes::recipe::{
    options_with_recipe, read_recipe, resolved_toml, write_training_config, TRAINING_CONFIG_FILE,
};
use lora_recipes::{BnArchitecture, FinetuneOptions, Method, PromptInit, Task, Truncation};
use std::path::{Path, PathBuf};

/// `text` written to `dir/name`.
fn recipe_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The options of `finetune <flags> --config recipe`.
fn with_flags(flags: &[&str], recipe: &Path) -> Result<FinetuneOptions, String> {
    let argv = std::iter::once("finetune").chain(flags.iter().copied());
    let matches = command().try_get_matches_from(argv).unwrap();
    let cli = FinetuneOptions::from_arg_matches(&matches).unwrap();
    options_with_recipe(&cli, &matches, recipe).map_err(|e| e.to_string())
}

fn err(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = recipe_file(dir.path(), "bad.toml", text);
    let e = read_recipe(&p).unwrap_err().to_string();
    (e, p.display().to_string())
}

#[test]
fn command_line_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = recipe_file(
        dir.path(),
        "r.toml",
        r#"# every kind of field
r = 4
lora_alpha = 32            # an f64 given as an integer
lr = 2e-4
method = "prefix-tuning"   # a value enum by its command-line name
bn_config = "double-seq-bn"
prompt_tuning_init = "random"
truncation = "head-tail"
prefix_projection = true   # a bool flag
time_budget = 60.5         # an Option
target_modules = "q_proj,v_proj"
output_dir = "runs/a"      # relative: against the recipe's folder
data_path = "/abs/reviews.json"
suffix = "\nVerdict:"
"#,
    );
    let o = with_flags(&["--r", "16", "--lora-alpha", "16", "--steps", "7"], &p).unwrap();
    // Typed flags win, even one typed with its default value (--lora-alpha 16).
    assert_eq!((o.r, o.lora_alpha, o.steps), (16, 16.0, 7));
    // The file's keys beat the defaults.
    assert_eq!(o.lr, 2e-4);
    assert_eq!(o.method, Method::PrefixTuning);
    assert_eq!(o.bn_config, BnArchitecture::DoubleSeqBn);
    assert_eq!(o.prompt_tuning_init, PromptInit::Random);
    assert_eq!(o.truncation, Truncation::HeadTail);
    assert!(o.prefix_projection);
    assert_eq!(o.time_budget, Some(60.5));
    assert_eq!(o.target_modules.as_deref(), Some("q_proj,v_proj"));
    assert_eq!(o.output_dir, dir.path().join("runs/a"));
    assert_eq!(o.data_path, Some(PathBuf::from("/abs/reviews.json")));
    assert_eq!(o.suffix, "\nVerdict:");
    // Untouched fields keep clap's defaults.
    assert_eq!((o.batch_size, o.seed, o.task), (8, 42, Task::Classify));
    assert_eq!(o.layers, "top-half");

    // Without flags, the file's values.
    let o = read_recipe(&p).unwrap();
    assert_eq!((o.r, o.lora_alpha, o.steps), (4, 32.0, 150));
    // A bool flag typed on the command line stays set.
    let p2 = recipe_file(dir.path(), "f.toml", "prefix_projection = false\n");
    assert!(
        with_flags(&["--prefix-projection"], &p2)
            .unwrap()
            .prefix_projection
    );
}

#[test]
fn flag_spelling_and_relative_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let p = recipe_file(
        &dir.path().join("sub"),
        "r.toml",
        "lora-alpha = 8\nmax-length = 64\nmodel = \"gpt2\"\nmodel_path = \"../gpt2\"\n",
    );
    let o = read_recipe(&p).unwrap();
    assert_eq!((o.lora_alpha, o.max_length), (8.0, 64));
    assert_eq!(o.model_path, Some(dir.path().join("sub").join("../gpt2")));
    // A path typed on the command line stays relative to the working directory.
    let o = with_flags(&["--model-path", "local/gpt2"], &p).unwrap();
    assert_eq!(o.model_path, Some(PathBuf::from("local/gpt2")));
}

#[test]
fn unreadable_file_is_named() {
    let e = read_recipe(Path::new("/nonexistent/recipe.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--config /nonexistent/recipe.toml: cannot read the recipe:"),
        "{e}"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let (e, p) = err("r = 4\nlora_alpha = = 3\n");
    assert!(e.starts_with(&format!("{p}:2:14: not valid TOML:")), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn unknown_key_names_the_closest() {
    let (e, p) = err("r = 4\nlora_alpah = 3\n");
    assert_eq!(
        e,
        format!(
            "{p}:2:1: unknown key `lora_alpah`; the closest valid key is `lora_alpha` (the keys \
             are finetune's flags, as `lora_alpha` for --lora-alpha; see --help)"
        )
    );
    let (e, _) = err("[lora]\nr = 4\n");
    assert!(e.contains("unknown key `lora`"), "{e}");
}

#[test]
fn same_option_twice_is_refused() {
    let (e, p) = err("lora_alpha = 3\nlora-alpha = 4\n");
    assert!(e.starts_with(&format!("{p}:")), "{e}");
    assert!(e.ends_with("name the same option; keep one"), "{e}");
}

#[test]
fn wrong_type_or_value_names_key_and_expectation() {
    let cases = [
        (
            "\nr = \"eight\"\n",
            "2:5: `r` = \"eight\": invalid type: string \"eight\", expected usize",
        ),
        (
            "steps = -3\n",
            "1:9: `steps` = -3: invalid value: integer `-3`, expected usize",
        ),
        (
            "prefix_projection = \"yes\"\n",
            "1:21: `prefix_projection` = \"yes\": invalid type: string \"yes\", expected a boolean",
        ),
        (
            "lr = \"1e-3\"\n",
            "1:6: `lr` = \"1e-3\": invalid type: string \"1e-3\", expected f64",
        ),
    ];
    for (text, want) in cases {
        let (e, p) = err(text);
        assert_eq!(e, format!("{p}:{want}"));
    }
    // A multi-line string is shown on the error's one line.
    let (e, p) = err("r = \"\"\"\nan\neight\"\"\"\n");
    assert!(e.starts_with(&format!("{p}:1:5: `r` = ")), "{e}");
    assert!(e.ends_with("expected usize") && !e.contains('\n'), "{e}");
    // A value enum lists the accepted names, as the command line's.
    let (e, p) = err("method = \"lorra\"\n");
    assert!(
        e.starts_with(&format!(
            "{p}:1:10: `method` = \"lorra\": unknown variant `lorra`, expected one of `lora`, \
             `dora`, `ia3`, `prefix-tuning`"
        )),
        "{e}"
    );
}

#[test]
fn a_recipe_goes_through_validate() {
    let dir = tempfile::tempdir().unwrap();
    let p = recipe_file(dir.path(), "r.toml", "r = 0\n");
    let o = read_recipe(&p).unwrap();
    assert_eq!(
        o.validate().unwrap_err().to_string(),
        "--r 0: must be at least 1"
    );
}

/// Options → training_config.toml → options, in a folder other than the working directory.
fn round_trip(o: &FinetuneOptions) -> FinetuneOptions {
    let dir = tempfile::tempdir().unwrap();
    let p = recipe_file(dir.path(), TRAINING_CONFIG_FILE, &resolved_toml(o).unwrap());
    read_recipe(&p).unwrap()
}

/// `o` with every relative path made absolute against the working directory.
fn absolute(mut o: FinetuneOptions) -> FinetuneOptions {
    fn abs(p: &PathBuf) -> PathBuf {
        std::path::absolute(p).unwrap()
    }
    o.output_dir = abs(&o.output_dir);
    o.model_path = o.model_path.as_ref().map(abs);
    o.data_path = o.data_path.as_ref().map(abs);
    o.dump_data = o.dump_data.as_ref().map(abs);
    o.resume = None;
    o
}

fn opts(flags: &[&str]) -> FinetuneOptions {
    let argv = std::iter::once("finetune").chain(flags.iter().copied());
    FinetuneOptions::from_arg_matches(&command().try_get_matches_from(argv).unwrap()).unwrap()
}

#[test]
fn training_config_repeats_the_default_run() {
    let o = opts(&[]);
    assert_eq!(round_trip(&o), absolute(o));
}

#[test]
fn training_config_repeats_a_non_trivial_run() {
    let o = opts(&[
        "--model",
        "gpt2",
        "--model-path",
        // `models/gpt2` would read as a hub id (no such folder exists): spelled as a path.
        "./models/gpt2",
        "--data-path",
        "/data/reviews.json",
        "--task",
        "causal-lm",
        "--steps",
        "40",
        "--lr",
        "0.030000000000000002",
        "--lora-alpha",
        "12.75",
        "--lora-dropout",
        "0",
        "--method",
        "bottleneck",
        "--bn-config",
        "double_seq_bn",
        "--non-linearity",
        "swish",
        "--reduction-factor",
        "3.3",
        "--prefix-projection",
        "--encoder-hidden-size",
        "77",
        "--prompt-tuning-init",
        "random",
        "--prompt-tuning-init-text",
        "a \"quoted\" 'text'\twith tab, ünïcode\nand a newline \\ backslash",
        "--target-modules",
        r".*\.(q|v)_proj",
        "--layers",
        "3,5-7",
        "--seed",
        "9223372036854775807",
        "--time-budget",
        "1e-7",
        "--suffix",
        "\n\nSentiment:\"",
        "--score-init",
        "random",
        "--no-eval-before",
        "--quant",
        "nf4-dq",
        "--blocksize",
        "128",
        "--precision",
        "bf16",
        "--truncation",
        "tail",
        "--output-dir",
        "out dir/with space",
        "--dump-data",
        "d.safetensors",
        "--resume",
        "out/checkpoint-3",
        "--save-total-limit",
        "2",
        "--max-bad-steps",
        "3",
    ]);
    let back = round_trip(&o);
    assert_eq!(back, absolute(o.clone()));
    // The resume left out, the original run itself is repeated; with --resume added it passes
    // the checkpoint's fingerprint check (the model and data files are named the same).
    assert_eq!(back.resume, None);
    let model = tempfile::NamedTempFile::new().unwrap();
    let mut resumed = back;
    resumed.resume = o.resume.clone();
    assert_eq!(
        run_fingerprint(&resumed, model.path()).unwrap(),
        run_fingerprint(&o, model.path()).unwrap()
    );
}

#[test]
fn training_config_is_written_into_the_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    let o = opts(&["--output-dir", out.to_str().unwrap(), "--r", "4"]);
    let p = write_training_config(&o).unwrap();
    assert_eq!(p, out.join("training_config.toml"));
    let text = std::fs::read_to_string(&p).unwrap();
    // Every field is there: a key line or, for an unset one, a comment naming it.
    for f in lora_recipes::recipe::fields::fields() {
        assert!(
            text.contains(&format!("\n{} = ", f.name))
                || text.contains(&format!("\n# {}: ", f.name)),
            "{} missing in\n{text}",
            f.name
        );
    }
    assert_eq!(read_recipe(&p).unwrap(), absolute(o));
    // Nothing else is left in the folder (no temporary file).
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn a_seed_toml_cannot_hold_is_named() {
    let o = opts(&["--seed", "18446744073709551615"]);
    let e = resolved_toml(&o).unwrap_err().to_string();
    assert!(
        e.starts_with("--seed 18446744073709551615: cannot be written as TOML"),
        "{e}"
    );
}

/// A hub id as `--model-path` is written as typed, so that a repeated run resolves it in the
/// hub cache again (a path of that name does not exist here).
#[test]
fn training_config_keeps_a_hub_id() {
    let o = opts(&["--model-path", "HuggingFaceTB/SmolLM2-135M-Instruct"]);
    let back = round_trip(&o);
    assert_eq!(
        back.model_path.as_deref(),
        Some(std::path::Path::new("HuggingFaceTB/SmolLM2-135M-Instruct"))
    );
}
