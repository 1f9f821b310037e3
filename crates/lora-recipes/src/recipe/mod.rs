//! Recipe files: a run's options in a TOML file kept in version control (`finetune --config
//! recipe.toml`), overridden by the flags typed on the command line, as torchtune's and
//! axolotl's config files are; and `training_config.toml`, every resolved option of a run,
//! written into its `--output-dir` so that `finetune --config <output-dir>/training_config.toml`
//! repeats it.
//!
//! A recipe holds [`FinetuneOptions`](crate::FinetuneOptions) fields under their own names
//! (`lora_alpha = 32`, `target_modules = "q_proj,v_proj"`, `method = "prefix-tuning"`; the flag
//! spelling `lora-alpha` is accepted too), with the values the flags take: value enums by their
//! command-line names, booleans as `true` / `false`, numbers as TOML numbers. Precedence: a flag
//! typed on the command line, then the file, then the flag's default. Relative paths in a file
//! are resolved against the file's own folder (a recipe in a repository names the repository's
//! files wherever the command runs); relative paths on the command line stay relative to the
//! working directory.
//!
//! - [`fields`]: the option fields as clap declares them (names, path-valued ones, help);
//! - [`mod@file`]: reading and checking a recipe file (syntax, unknown keys);
//! - [`merge`]: the file merged with the command line ([`options_with_recipe`],
//!   [`read_recipe`]);
//! - [`resolved`]: `training_config.toml` ([`write_training_config`], [`resolved_toml`]).

pub mod fields;
pub mod file;
pub mod merge;
pub mod resolved;

pub use file::RecipeFile;
pub use merge::{options_with_recipe, read_recipe};
pub use resolved::{resolved_toml, write_training_config, TRAINING_CONFIG_FILE};

/// Whether the path value `s` is a Hugging Face hub id (`org/name[@rev]`,
/// [`lora_models::HubId::parse`]) rather than a file: no such path exists below `dir` (the
/// recipe's folder, or the working directory for `""`). A hub id is kept as typed in recipes
/// and in `training_config.toml`, so that a repeated run looks it up in the hub cache again.
pub(crate) fn is_hub_id(s: &str, dir: &std::path::Path) -> bool {
    !dir.join(s).exists() && lora_models::HubId::parse(s).is_some()
}
