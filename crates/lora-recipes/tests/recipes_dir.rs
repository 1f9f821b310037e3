//! The recipe files of the repository's `recipes/` folder: each parses, passes the run's value
//! checks, starts with a comment naming its command, and is listed in `recipes/README.md`.

use clap::FromArgMatches;
use lora_core::Precision;
use lora_recipes::recipe::fields::{command, fields};
use lora_recipes::recipe::read_recipe;
use lora_recipes::FinetuneOptions;
use std::path::{Path, PathBuf};

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes")
}

/// Every file of `recipes/` but its README, sorted.
fn recipe_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(recipes_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// Each file is a `.toml` recipe that parses and passes `validate()`, the checks a flag goes
/// through before anything is fetched. `validate()` leaves the backend out of `precision`
/// (the CPU build has no bf16 tensors), so a GPU recipe's precision is checked here as a value
/// only: one of the names `--precision` accepts, whatever the backend of this build.
#[test]
fn every_recipe_parses_and_validates() {
    let files = recipe_files();
    assert!(files.len() >= 9, "{files:?}");
    for p in &files {
        assert_eq!(
            p.extension().and_then(|e| e.to_str()),
            Some("toml"),
            "{}: recipes/ holds only TOML recipes and README.md",
            p.display()
        );
        let o = read_recipe(p).unwrap_or_else(|e| panic!("{e}"));
        o.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        o.precision
            .parse::<Precision>()
            .unwrap_or_else(|e| panic!("{}: precision: {e}", p.display()));
        // Every output lands in the repository's out/ folder, where the README's runs write.
        assert!(
            o.output_dir.starts_with(recipes_dir().join("../out")),
            "{}: output_dir {}",
            p.display(),
            o.output_dir.display()
        );
    }
}

/// The first line says what the recipe is and the command that runs it.
#[test]
fn every_recipe_names_its_command() {
    for p in recipe_files() {
        let text = std::fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            first.starts_with("# ")
                && first.contains(&format!("--example finetune -- --config recipes/{name}")),
            "{name}: the first line must be a comment with its command, not {first:?}"
        );
    }
}

#[test]
fn readme_lists_every_recipe() {
    let readme = std::fs::read_to_string(recipes_dir().join("README.md")).unwrap();
    for p in recipe_files() {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            readme.contains(&format!("`{name}`")),
            "recipes/README.md does not list {name}"
        );
    }
}

/// `cpu_imdb_lora.toml` is finetune's defaults spelled out: every option is there (a key, or
/// a commented-out key for one unset by default) and reading it gives the defaults.
#[test]
fn cpu_recipe_is_the_defaults() {
    let p = recipes_dir().join("cpu_imdb_lora.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    for f in fields() {
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.split('=').next().is_some_and(|k| k.trim() == f.name)
            }),
            "cpu_imdb_lora.toml does not spell out `{}` (add it with its default)",
            f.name
        );
    }
    let matches = command().try_get_matches_from(["finetune"]).unwrap();
    let mut defaults = FinetuneOptions::from_arg_matches(&matches).unwrap();
    // Relative to the recipe's folder: the default out/finetune of the repository root.
    defaults.output_dir = recipes_dir().join("../out/finetune");
    assert_eq!(read_recipe(&p).unwrap(), defaults);
}
