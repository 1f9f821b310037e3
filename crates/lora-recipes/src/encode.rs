//! Tokenizing reviews for the two tasks.

use lora_models::tokenizer::Tokenizer;
// The IMDB pipeline's types (one import site; the crate that holds them may change).
use lora_data::imdb::{self as data, Review};

use crate::options::Truncation;
use crate::AnyError;

/// Tokenizes reviews for classification: review tokens truncated per `truncation` so that
/// review + `suffix` fits in `max_length` (at least one review token is kept), then `suffix`.
/// Runs on all cores (the tokenizers are `Sync`); the output is in the order of `reviews`.
///
/// # Errors
/// The tokenizer's error as text; "tokenizer thread panicked".
pub fn encode_cls(
    tok: &Tokenizer,
    reviews: &[Review],
    suffix: &[u32],
    max_length: usize,
    truncation: Truncation,
) -> Result<Vec<Vec<u32>>, AnyError> {
    let keep = max_length.saturating_sub(suffix.len()).max(1);
    let how = match truncation {
        Truncation::Head => data::Truncation::Head,
        Truncation::Tail => data::Truncation::Tail,
        Truncation::HeadTail => data::Truncation::HeadTail,
    };
    let one = |r: &Review| -> Result<Vec<u32>, String> {
        let ids = tok.encode(&r.text).map_err(|e| e.to_string())?;
        let mut ids = data::truncate_tokens(&ids, keep, how);
        ids.extend_from_slice(suffix);
        Ok(ids)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = reviews.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Vec<u32>>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = reviews
            .chunks(chunk)
            .map(|c| sc.spawn(move || c.iter().map(one).collect::<Result<Vec<_>, _>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("tokenizer thread panicked".into()))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(reviews.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Tokenizes reviews for language modelling: the review's tokens, the first `max_length` kept.
///
/// # Errors
/// The tokenizer's error.
pub fn encode_lm(
    tok: &Tokenizer,
    reviews: &[Review],
    max_length: usize,
) -> Result<Vec<Vec<u32>>, AnyError> {
    reviews
        .iter()
        .map(|r| {
            let mut ids = tok.encode(&r.text)?;
            ids.truncate(max_length);
            Ok(ids)
        })
        .collect()
}

/// The one token id of `text`.
///
/// # Errors
/// The tokenizer's error; a message naming `text` and its token count when it is not exactly
/// one token (pointing at `--score-init random`).
pub fn single_token(tok: &Tokenizer, text: &str) -> Result<u32, AnyError> {
    // A word's id in the vocabulary: no BOS/EOS around it.
    let ids = tok.encode_with(text, false)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => Err(format!(
            "verbalizer word {text:?} is {} tokens, expected 1; use --score-init random",
            ids.len()
        )
        .into()),
    }
}
