//! `training_config.toml`: every resolved option of a run, written into its `--output-dir`
//! before training, as a recipe that repeats the run (`finetune --config
//! <output-dir>/training_config.toml`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::fields::{fields, options_table};
use crate::{AnyError, FinetuneOptions};

/// The file name of the resolved options in `--output-dir`.
pub const TRAINING_CONFIG_FILE: &str = "training_config.toml";

/// Comment lines are wrapped at this width.
const WIDTH: usize = 98;

/// The recipe that repeats the run of `opts`: every field in declaration order under its help
/// text, defaults included, paths made absolute (against the working directory) so that the
/// file works from anywhere; an unset optional field as a comment. `resume` is left out: a
/// resumed run ends as the uninterrupted one would, so the file describes the whole run, and
/// continuing it is `--config <this file> --resume <checkpoint>` (which passes the
/// checkpoint's fingerprint check: the file changes no fingerprinted option).
///
/// # Errors
/// [`options_table`]'s (a value TOML cannot hold, naming its flag); a relative path when the
/// working directory cannot be read.
pub fn resolved_toml(opts: &FinetuneOptions) -> Result<String, AnyError> {
    let mut opts = opts.clone();
    opts.resume = None;
    let table = options_table(&opts)?;
    let mut out = String::from(
        "# The resolved options of the finetune run that wrote this folder: every option, defaults\n\
         # included, paths absolute. Repeat the run with\n\
         #   cargo run --release --example finetune -- --config <this file>\n\
         # and continue an interrupted one by adding --resume <output_dir>/checkpoint-<step>.\n",
    );
    for field in fields() {
        out.push('\n');
        for paragraph in field.help.lines().filter(|l| !l.trim().is_empty()) {
            wrap_comment(&mut out, paragraph);
        }
        match table.get(&field.name) {
            Some(value) if field.is_path => {
                // A hub id is written as typed: a repeated run looks it up in the cache again.
                let hub_id = field.name == "model_path"
                    && value
                        .as_str()
                        .is_some_and(|s| super::is_hub_id(s, Path::new("")));
                let value = if hub_id {
                    value.clone()
                } else {
                    absolute(value, &field.flag())?
                };
                writeln!(out, "{} = {value}", field.name)?;
            }
            Some(value) => writeln!(out, "{} = {value}", field.name)?,
            None if field.name == "resume" => writeln!(
                out,
                "# resume: left out (add --resume <output_dir>/checkpoint-<step> to continue)"
            )?,
            None => writeln!(out, "# {}: unset", field.name)?,
        }
    }
    Ok(out)
}

/// Writes [`resolved_toml`] to `<output_dir>/training_config.toml` (atomically: temp file,
/// fsync, rename) and returns its path.
///
/// # Errors
/// [`resolved_toml`]'s; the I/O error of writing, naming the file.
pub fn write_training_config(opts: &FinetuneOptions) -> Result<PathBuf, AnyError> {
    let text = resolved_toml(opts)?;
    let path = opts.output_dir.join(TRAINING_CONFIG_FILE);
    lora_io::atomic_write(&path, text.as_bytes())
        .map_err(|e| format!("{}: cannot write the resolved options: {e}", path.display()))?;
    Ok(path)
}

/// A path value (a string, or an array of them) made absolute against the working directory.
fn absolute(value: &toml::Value, flag: &str) -> Result<toml::Value, AnyError> {
    Ok(match value {
        toml::Value::String(s) => {
            let p = std::path::absolute(Path::new(s))
                .map_err(|e| format!("{flag} {s}: cannot make the path absolute: {e}"))?;
            let p = p.to_str().ok_or_else(|| {
                format!("{flag} {s}: the working directory is not UTF-8, which TOML cannot hold")
            })?;
            toml::Value::String(p.to_owned())
        }
        toml::Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .map(|v| absolute(v, flag))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// Appends `text` as `# ` comment lines of at most [`WIDTH`] characters (a longer word gets
/// its own line).
fn wrap_comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}
