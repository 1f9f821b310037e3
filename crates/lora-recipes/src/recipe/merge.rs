//! A recipe file merged with the command line: flags typed on the command line win, then the
//! file's keys, then clap's defaults.

use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use std::path::Path;

use super::fields::{command, fields, find, options_table, Field};
use super::file::RecipeFile;
use crate::{AnyError, FinetuneOptions};

/// The options of a run given `--config recipe`: `cli` (parsed from `matches`, the command
/// line's matches, which tell which flags were typed) with every option the command line left
/// at its default taken from the recipe file. Relative paths in the file are resolved against
/// the file's folder. The result still goes through [`FinetuneOptions::validate`].
///
/// # Errors
/// One line naming the file: [`RecipeFile::read`]'s errors, and a value of the wrong type or
/// not among the allowed ones (`path:line:column: `key` = value: what was expected`).
pub fn options_with_recipe(
    cli: &FinetuneOptions,
    matches: &ArgMatches,
    recipe: &Path,
) -> Result<FinetuneOptions, AnyError> {
    let fields = fields();
    let file = RecipeFile::read(recipe, &fields)?;
    merge(cli, matches, &file, &fields)
}

/// The options of a recipe file alone: its keys over clap's defaults (what
/// `finetune --config recipe` runs with no other flag).
///
/// # Errors
/// As [`options_with_recipe`].
pub fn read_recipe(recipe: &Path) -> Result<FinetuneOptions, AnyError> {
    let matches = command().try_get_matches_from(["finetune"])?;
    let defaults = FinetuneOptions::from_arg_matches(&matches)?;
    options_with_recipe(&defaults, &matches, recipe)
}

/// [`options_with_recipe`] on a parsed file.
///
/// # Errors
/// As [`options_with_recipe`], after reading.
pub fn merge(
    cli: &FinetuneOptions,
    matches: &ArgMatches,
    file: &RecipeFile,
    fields: &[Field],
) -> Result<FinetuneOptions, AnyError> {
    let mut table = options_table(cli)?;
    let dir = file.dir();
    for (name, entry) in &file.entries {
        // A flag the user typed (or set through the environment) beats the file.
        if !matches!(
            matches.value_source(name),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue;
        }
        let is_path = find(fields, name).is_some_and(|f| f.is_path);
        let value = if is_path {
            if dir.to_str().is_none() {
                return Err(format!(
                    "{}: the recipe's folder is not UTF-8, so a relative path cannot be \
                     resolved against it; move the recipe",
                    file.locate(entry)
                )
                .into());
            }
            match entry.value.as_str() {
                // A hub id (`org/name`) names no file: kept as typed unless such a path exists.
                Some(s) if name == "model_path" && super::is_hub_id(s, dir) => entry.value.clone(),
                _ => relative_to(&entry.value, dir),
            }
        } else {
            entry.value.clone()
        };
        table.insert(name.clone(), value);
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let name = e.path().to_string();
        let why = e.inner().message().trim().replace('\n', "; ");
        match file.entries.get(&name) {
            Some(entry) => format!(
                "{} = {}: {why}",
                file.locate(entry),
                // One line, even for a multi-line string.
                entry.value.to_string().replace('\n', "\\n")
            ),
            None => format!("{}: `{name}`: {why}", file.path.display()),
        }
        .into()
    })
}

/// A path value (a string, or an array of them) with a relative path joined to `dir`; any
/// other value unchanged (deserializing it reports the wrong type). `dir` is UTF-8.
fn relative_to(value: &toml::Value, dir: &Path) -> toml::Value {
    match value {
        toml::Value::String(s) if Path::new(s).is_relative() => {
            toml::Value::String(dir.join(s).to_string_lossy().into_owned())
        }
        toml::Value::Array(items) => {
            toml::Value::Array(items.iter().map(|v| relative_to(v, dir)).collect())
        }
        other => other.clone(),
    }
}
