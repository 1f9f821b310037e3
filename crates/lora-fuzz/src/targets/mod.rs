//! The fuzz targets: one per reader of outside bytes, each calling the library's own parsing
//! path on the input (from memory where the API takes bytes, else through a file in a
//! temporary directory) and returning its error text, which the engine only uses as feedback.

mod bnb;
mod config;
mod gguf;
mod imdb;
mod model_dir;
mod safetensors;
mod tokenizer;

use crate::exec::TargetFn;
use std::path::Path;

/// A fuzz target.
pub struct Target {
    /// Its name (`--target NAME`, and the folder of its seeds and regression inputs).
    pub name: &'static str,
    /// What it runs, in a line.
    pub about: &'static str,
    /// The target.
    pub run: TargetFn,
    /// Its seeds (the real files and fixtures that exist on this machine).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Executions of the bounded run in the test command (about 1.5 s on a 2-core machine).
    pub bounded_execs: u64,
}

/// Every target, in the order `--target all` runs them.
pub const TARGETS: &[Target] = &[
    gguf::GGUF,
    gguf::GGUF_TOKENIZER,
    gguf::GGUF_LLAMA,
    safetensors::SAFETENSORS,
    safetensors::ADAPTER_WEIGHTS,
    bnb::BNB_FILE,
    bnb::BNB_QUANT_STATE,
    config::ADAPTER_CONFIG,
    config::ADAPTERHUB_CONFIG,
    config::MODEL_CONFIG,
    model_dir::HF_MODEL_DIR,
    tokenizer::HF_TOKENIZER_JSON,
    tokenizer::HF_VOCAB_MERGES,
    imdb::IMDB,
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Turns any error into its text.
pub(crate) fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// An input that stands for two files, split at the first `sep`: the first file and the
/// second (all of `b` and an empty second file when `sep` is absent).
pub(crate) fn split_pair<'a>(b: &'a [u8], sep: &[u8]) -> (&'a [u8], &'a [u8]) {
    match b.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&b[..i], &b[i + sep.len()..]),
        None => (b, &b[..0]),
    }
}

/// The seed input of two files (`first`, `sep`, `second`), when both can be read.
pub(crate) fn join_pair(first: &Path, sep: &[u8], second: &Path) -> Option<Vec<u8>> {
    let mut s = std::fs::read(first).ok()?;
    s.extend_from_slice(sep);
    s.extend(std::fs::read(second).ok()?);
    Some(s)
}
