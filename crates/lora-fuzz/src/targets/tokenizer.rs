//! Hugging Face tokenizer files through `Tokenizer::from_hf_dir` (a path-only API: the input
//! is written into a per-thread temporary directory first).

use super::{join_pair, split_pair, text, Target};
use crate::corpus::seed_dir;
use crate::scratch::scratch_files;
use lora_models::tokenizer::Tokenizer;

/// Encodes `sample`, decodes the result and the ids 0 and vocab − 1, looks up a special token.
pub(crate) fn exercise(t: &Tokenizer, sample: &str) -> Result<(), String> {
    let ids = t.encode(sample).map_err(text)?;
    t.decode(&ids).map_err(text)?;
    let last = t.vocab_size().saturating_sub(1) as u32;
    t.decode(&[0, last]).map_err(text)?;
    let _ = t.token_id("<|endoftext|>");
    Ok(())
}

const SAMPLE: &str = "<|endoftext|>The capital of France, 10/10 wörld!";

/// The input as `tokenizer.json`.
fn run_tokenizer_json(b: &[u8]) -> Result<(), String> {
    let dir = scratch_files(&[("tokenizer.json", b)])?;
    exercise(&Tokenizer::from_hf_dir(&dir).map_err(text)?, SAMPLE)
}

fn seeds_tokenizer_json() -> Vec<Vec<u8>> {
    std::fs::read(seed_dir("hf_tokenizer").join("tokenizer.json"))
        .into_iter()
        .collect()
}

/// `tokenizer.json`.
pub const HF_TOKENIZER_JSON: Target = Target {
    name: "hf_tokenizer_json",
    about: "tokenizer.json through Tokenizer::from_hf_dir, encode, decode",
    run: run_tokenizer_json,
    seeds: seeds_tokenizer_json,
    bounded_execs: 25_000,
};

/// Separates `vocab.json` from `merges.txt` in an input.
pub const MERGES_SEPARATOR: &[u8] = b"\n--lora-fuzz: merges.txt follows--\n";

/// The input split at [`MERGES_SEPARATOR`] into `vocab.json` and `merges.txt`.
fn run_vocab_merges(b: &[u8]) -> Result<(), String> {
    let (vocab, merges) = split_pair(b, MERGES_SEPARATOR);
    let dir = scratch_files(&[("vocab.json", vocab), ("merges.txt", merges)])?;
    exercise(&Tokenizer::from_hf_dir(&dir).map_err(text)?, SAMPLE)
}

fn seeds_vocab_merges() -> Vec<Vec<u8>> {
    let d = seed_dir("hf_tokenizer");
    join_pair(
        &d.join("vocab.json"),
        MERGES_SEPARATOR,
        &d.join("merges.txt"),
    )
    .into_iter()
    .collect()
}

/// `vocab.json` + `merges.txt`.
pub const HF_VOCAB_MERGES: Target = Target {
    name: "hf_vocab_merges",
    about: "vocab.json + merges.txt through Tokenizer::from_hf_dir, encode, decode",
    run: run_vocab_merges,
    seeds: seeds_vocab_merges,
    bounded_execs: 15_000,
};
