//! The fields of [`FinetuneOptions`] as clap declares them: the one list the recipe reader,
//! the merge and the `training_config.toml` writer share, so that a field added to the options
//! is a recipe key with no other change.

use clap::{Args, Command, ValueHint};

use crate::{AnyError, FinetuneOptions};

/// One option field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name: its key in a recipe file and its clap id (`lora_alpha`).
    pub name: String,
    /// Whether its values are paths (clap's value parser for `PathBuf`, or an explicit path
    /// hint), which a recipe resolves against its own folder.
    pub is_path: bool,
    /// Its help text (the doc comment behind `--help`), one paragraph per line.
    pub help: String,
}

impl Field {
    /// The field's command-line flag (`--lora-alpha`).
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

/// [`FinetuneOptions`]' arguments on a bare command named `finetune`.
pub fn command() -> Command {
    FinetuneOptions::augment_args(Command::new("finetune"))
}

/// Every field of [`FinetuneOptions`], in declaration order.
pub fn fields() -> Vec<Field> {
    command()
        .get_arguments()
        .map(|a| Field {
            name: a.get_id().to_string(),
            is_path: matches!(
                a.get_value_hint(),
                ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
            ),
            help: a
                .get_long_help()
                .or_else(|| a.get_help())
                .map(ToString::to_string)
                .unwrap_or_default(),
        })
        .collect()
}

/// The field named `key`, spelled with underscores (`lora_alpha`) or with the flag's dashes
/// (`lora-alpha`).
pub fn find<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    let name = key.replace('-', "_");
    fields.iter().find(|f| f.name == name)
}

/// The field name closest to `key` (Levenshtein distance, dashes read as underscores), for an
/// unknown key's error.
pub fn closest<'a>(fields: &'a [Field], key: &str) -> Option<&'a str> {
    let name = key.replace('-', "_");
    fields
        .iter()
        .min_by_key(|f| strsim::levenshtein(&f.name, &name))
        .map(|f| f.name.as_str())
}

/// `opts` as a TOML table, one entry per field (an unset `Option` has none).
///
/// # Errors
/// A value TOML cannot hold, naming its flag: an integer above 2⁶³ − 1 (TOML's limit), a
/// path that is not UTF-8.
pub fn options_table(opts: &FinetuneOptions) -> Result<toml::Table, AnyError> {
    let json =
        serde_path_to_error::serialize(opts, serde_json::value::Serializer).map_err(|e| {
            format!(
                "--{}: cannot be written as TOML: {}",
                e.path().to_string().replace('_', "-"),
                e.inner()
            )
        })?;
    let serde_json::Value::Object(map) = json else {
        return Err("the options did not serialize as a table".into());
    };
    let mut table = toml::Table::new();
    for (name, value) in map {
        if value.is_null() {
            continue;
        }
        let v = toml::Value::try_from(&value).map_err(|e| {
            format!(
                "--{} {value}: cannot be written as TOML (integers are at most {}): {e}",
                name.replace('_', "-"),
                i64::MAX
            )
        })?;
        table.insert(name, v);
    }
    Ok(table)
}
