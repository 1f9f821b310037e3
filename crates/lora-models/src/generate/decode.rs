//! The incremental decoding loop (transformers' `GenerationMixin._sample` with a
//! `DynamicCache`): one pass over the prompt, then one token at a time through the key/value
//! cache, using only [`LanguageModel`]'s methods so prompt-learning wrappers take part.
use super::sampling::{next_token, seeded_rng};
use super::{GenerateError, GenerationConfig};
use crate::export::save_safetensors;
use crate::{LanguageModel, ModelError};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use lora_io::StTensor;
use safetensors::Dtype;
use std::path::Path;

/// Why a [`generate`] run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Every row produced an EOS id.
    Eos,
    /// `max_new_tokens` were added.
    MaxNewTokens,
    /// The next token would not fit the model's positions ([`LanguageModel::max_positions`]).
    MaxPositions,
}

/// The result of [`generate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Per row, the prompt followed by the new tokens (every row the same length; rows that
    /// stopped early continue with the fill token, [`GenerationConfig::fill_token`]).
    pub sequences: Vec<Vec<u32>>,
    /// Prompt length (the new tokens of row `r` are `sequences[r][prompt_len..]`).
    pub prompt_len: usize,
    /// Why decoding ended.
    pub stop: StopReason,
}

impl Generation {
    /// The new tokens of row `r` (empty for a row outside the batch).
    pub fn new_tokens(&self, r: usize) -> &[u32] {
        self.sequences
            .get(r)
            .map_or(&[][..], |s| &s[self.prompt_len..])
    }

    /// Writes [`Generation::sequences`] to the safetensors file `path` as the I64 tensor
    /// `output_ids` `[batch, prompt_len + new]` (what transformers' `generate` returns), with
    /// metadata `{"format":"pt"}`, atomically through `lora-io`.
    ///
    /// # Errors
    /// [`ModelError::Io`] or [`ModelError::Format`] naming `path`.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        let len = self.sequences.first().map_or(0, Vec::len);
        let bytes: Vec<u8> = self
            .sequences
            .iter()
            .flatten()
            .flat_map(|&t| i64::from(t).to_le_bytes())
            .collect();
        let t = StTensor {
            dtype: Dtype::I64,
            shape: vec![self.sequences.len(), len],
            bytes,
        };
        save_safetensors(path, &vec![("output_ids".to_string(), t)])
    }
}

/// Continues each prompt row with up to `config.max_new_tokens` tokens.
///
/// The prompt goes through [`LanguageModel::input_embeds`] from [`LanguageModel::new_cache`]
/// (so a prefix or virtual tokens of a wrapper are there); each new token then goes through
/// [`LanguageModel::embed`] and [`LanguageModel::forward_cached`] continuing the cache, and
/// only the last position's logits are computed ([`LanguageModel::lm_logits`]). Every step
/// picks each row's token with [`super::sampling::next_token`] (processors in transformers'
/// order, argmax or a seeded draw); a row that produced an EOS id receives the fill token from
/// then on; decoding stops when all rows have finished, after `max_new_tokens`, or when the
/// next token would need a position past [`LanguageModel::max_positions`].
///
/// # Shapes
/// `prompts`: `batch` rows of equal length `seq` (no padding), ids `< vocab_size`.
///
/// # Errors
/// [`GenerateError::Config`] from [`GenerationConfig::validate`]; [`GenerateError::Prompt`]
/// for an empty batch or row, rows of unequal length, an id outside the vocabulary, or a prompt
/// (with the wrapper's prefix / virtual tokens) longer than `max_positions`;
/// [`GenerateError::Backend`] if the logits cannot be read back.
pub fn generate<B: Backend, M: LanguageModel<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    device: &B::Device,
) -> Result<Generation, GenerateError> {
    let vocab = model.vocab_size();
    config.validate(vocab)?;
    let seq = check_prompts(prompts, vocab)?;
    let batch = prompts.len();

    let mut cache = model.new_cache(batch);
    let used = cache.past_len() + model.num_virtual_tokens() + seq;
    if let Some(max) = model.max_positions() {
        if used > max {
            return Err(GenerateError::Prompt(format!(
                "{seq} tokens{} need {used} positions, but the model has max_positions {max}",
                if used > seq {
                    format!(" with {} prefix/virtual positions", used - seq)
                } else {
                    String::new()
                }
            )));
        }
    }

    let flat: Vec<i64> = prompts.iter().flatten().map(|&t| t as i64).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [batch, seq]), device);
    let h = model.forward_cached(model.input_embeds(ids), &mut cache);
    let mut logits = last_logits(model, h)?;

    let fill = config.fill_token();
    let mut rng = seeded_rng(config.seed);
    let mut sequences = prompts.to_vec();
    let mut unfinished = vec![true; batch];
    let mut step = 0;
    let stop = loop {
        let mut next = Vec::with_capacity(batch);
        for (r, row) in logits.chunks_mut(vocab).enumerate() {
            // Every row is processed (and draws from the RNG) even when finished, as
            // transformers does for the whole batch, so a row's draws do not depend on others.
            let t = next_token(row, &sequences[r], config, &mut rng);
            let t = match (unfinished[r], fill) {
                (false, Some(f)) => f,
                _ => t,
            };
            if config.eos_token_ids.contains(&t) {
                unfinished[r] = false;
            }
            sequences[r].push(t);
            next.push(t as i64);
        }
        step += 1;
        if unfinished.iter().all(|u| !u) {
            break StopReason::Eos;
        }
        if step == config.max_new_tokens {
            break StopReason::MaxNewTokens;
        }
        if model.max_positions().is_some_and(|m| cache.past_len() >= m) {
            break StopReason::MaxPositions;
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [batch, 1]), device);
        let h = model.forward_cached(model.embed(ids), &mut cache);
        logits = last_logits(model, h)?;
    };
    Ok(Generation {
        sequences,
        prompt_len: seq,
        stop,
    })
}

/// The logits of the last position of hidden states `[batch, len, hidden]`, row-major
/// `[batch × vocab]` on the host.
fn last_logits<B: Backend, M: LanguageModel<B>>(
    model: &M,
    h: Tensor<B, 3>,
) -> Result<Vec<f32>, GenerateError> {
    let len = h.dims()[1];
    let logits = model.lm_logits(h.narrow(1, len - 1, 1));
    logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| GenerateError::Backend(format!("cannot read the logits as f32: {e:?}")))
}

/// The common length of the prompt rows.
fn check_prompts(prompts: &[Vec<u32>], vocab: usize) -> Result<usize, GenerateError> {
    let Some(first) = prompts.first() else {
        return Err(GenerateError::Prompt("the batch has no rows".into()));
    };
    let seq = first.len();
    if seq == 0 {
        return Err(GenerateError::Prompt("row 0 is empty".into()));
    }
    for (r, p) in prompts.iter().enumerate() {
        if p.len() != seq {
            return Err(GenerateError::Prompt(format!(
                "row {r} has {} tokens but row 0 has {seq}; rows must have equal length \
                 (padding is not supported)",
                p.len()
            )));
        }
        if let Some((i, &t)) = p.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
            return Err(GenerateError::Prompt(format!(
                "row {r} token {i} is {t}, outside the vocabulary of {vocab}"
            )));
        }
    }
    Ok(seq)
}
