//! Reading a recipe file: TOML syntax, one key per option field, each value with the place it
//! was written, so that every later error names the file, the line and the key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

use super::fields::{closest, find, Field};
use crate::AnyError;

/// One `key = value` line of a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written (`lora_alpha` or `lora-alpha`).
    pub key: String,
    /// The value as written.
    pub value: toml::Value,
    /// Where the value starts: line and column, both from 1.
    pub line: usize,
    /// See [`Entry::line`].
    pub column: usize,
}

/// A parsed recipe file: its entries by option field name.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeFile {
    /// The file, as given.
    pub path: PathBuf,
    /// The entries by field name (`lora_alpha`, whichever spelling the file used).
    pub entries: BTreeMap<String, Entry>,
}

impl RecipeFile {
    /// Reads and parses the recipe at `path` against the option `fields`
    /// ([`super::fields::fields`]).
    ///
    /// # Errors
    /// One line naming the file: it cannot be read (not a regular file, not UTF-8, an I/O
    /// error), or [`RecipeFile::parse`]'s errors.
    pub fn read(path: &Path, fields: &[Field]) -> Result<Self, AnyError> {
        let text = lora_io::read_regular_to_string(path)
            .map_err(|e| format!("--config {}: cannot read the recipe: {e}", path.display()))?;
        Self::parse(path, &text, fields)
    }

    /// Parses recipe `text` (read from `path`, which names it in errors).
    ///
    /// # Errors
    /// One line `path:line:column: ...` for: a TOML syntax error (the toml crate's message);
    /// a key that is no option field (naming the closest one); one option given under both of
    /// its spellings (`lora_alpha` and `lora-alpha`).
    pub fn parse(path: &Path, text: &str, fields: &[Field]) -> Result<Self, AnyError> {
        let at = |span: Option<Range<usize>>| match span {
            Some(s) => {
                let (line, column) = line_column(text, s.start);
                format!("{}:{line}:{column}", path.display())
            }
            None => path.display().to_string(),
        };
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| {
                format!(
                    "{}: not valid TOML: {}",
                    at(e.span()),
                    e.message().trim().replace('\n', "; ")
                )
            })?;
        let mut entries = BTreeMap::new();
        for (key, value) in table {
            let key_at = at(Some(key.span()));
            let Some(field) = find(fields, key.get_ref()) else {
                let hint = closest(fields, key.get_ref())
                    .map(|c| format!("; the closest valid key is `{c}`"))
                    .unwrap_or_default();
                return Err(format!(
                    "{key_at}: unknown key `{}`{hint} (the keys are finetune's flags, as \
                     `lora_alpha` for --lora-alpha; see --help)",
                    key.get_ref()
                )
                .into());
            };
            let (line, column) = line_column(text, value.span().start);
            let entry = Entry {
                key: key.get_ref().clone(),
                value: value.into_inner(),
                line,
                column,
            };
            if let Some(first) = entries.insert(field.name.clone(), entry) {
                return Err(format!(
                    "{key_at}: `{}` and `{}` name the same option; keep one",
                    first.key,
                    key.get_ref()
                )
                .into());
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The folder relative paths in the file are resolved against: the file's own.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// `path:line:column: key` of an entry, the start of its errors.
    pub fn locate(&self, entry: &Entry) -> String {
        format!(
            "{}:{}:{}: `{}`",
            self.path.display(),
            entry.line,
            entry.column,
            entry.key
        )
    }
}

/// Line and column (both from 1, the column in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
