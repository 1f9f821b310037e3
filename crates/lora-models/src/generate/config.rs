//! The settings of a generation run (the subset of transformers' `GenerationConfig` that greedy
//! search and multinomial sampling use, with its defaults).
use super::GenerateError;

/// How [`super::generate`] picks tokens and when it stops.
///
/// Defaults are transformers 5's (`generation/configuration_utils.py`, `_get_default_generation_params`):
/// greedy, temperature 1, top-k 50, top-p 1, no repetition penalty; `max_new_tokens` 20.
/// Temperature, top-k and top-p only act when `do_sample` is true (transformers adds those
/// "warpers" only for sampling); the repetition penalty acts in both modes.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// Most tokens to add to each prompt (≥ 1).
    pub max_new_tokens: usize,
    /// Sample from the processed distribution (`true`) or take its argmax (`false`, greedy).
    pub do_sample: bool,
    /// Logits are divided by this before sampling (> 0; 1 = unchanged). Sampling only.
    pub temperature: f32,
    /// Keep the `top_k` largest logits (ties with the k-th kept too); 0 = off. Sampling only.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability sums to more than
    /// `top_p`, in (0, 1]; 1 = off. Sampling only.
    pub top_p: f32,
    /// CTRL repetition penalty (> 0; 1 = off): the logit of every token already in the sequence
    /// (prompt included) is divided by it when positive and multiplied by it when negative.
    pub repetition_penalty: f32,
    /// Seed of the sampling RNG (the same seed, model and prompt give the same tokens).
    pub seed: u64,
    /// A row stops when it produces one of these ids; empty = only the length limits stop.
    pub eos_token_ids: Vec<u32>,
    /// Id appended to rows that already stopped while others continue; `None` = the first EOS
    /// id (transformers' fallback in `_prepare_special_tokens`).
    pub pad_token_id: Option<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
        }
    }
}

impl GenerationConfig {
    /// Checks every field against a model of `vocab` tokens.
    ///
    /// # Errors
    /// [`GenerateError::Config`] naming the field: `max_new_tokens` 0; `repetition_penalty` not
    /// finite and > 0; when sampling, `temperature` not finite and > 0 or `top_p` outside
    /// (0, 1]; an `eos_token_ids` or `pad_token_id` entry ≥ `vocab`.
    pub fn validate(&self, vocab: usize) -> Result<(), GenerateError> {
        if self.max_new_tokens == 0 {
            return Err(GenerateError::config("max_new_tokens", 0, "at least 1"));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(GenerateError::config(
                "repetition_penalty",
                r,
                "a finite number > 0 (1 = off)",
            ));
        }
        if self.do_sample {
            let t = self.temperature;
            if !(t.is_finite() && t > 0.0) {
                return Err(GenerateError::config(
                    "temperature",
                    t,
                    "a finite number > 0 when sampling (use greedy decoding for temperature 0)",
                ));
            }
            let p = self.top_p;
            if !(p > 0.0 && p <= 1.0) {
                return Err(GenerateError::config("top_p", p, "a number in (0, 1]"));
            }
        }
        if let Some(&e) = self.eos_token_ids.iter().find(|&&e| e as usize >= vocab) {
            return Err(GenerateError::config(
                "eos_token_ids",
                e,
                format!("an id below the vocabulary size {vocab}"),
            ));
        }
        if let Some(p) = self.pad_token_id.filter(|&p| p as usize >= vocab) {
            return Err(GenerateError::config(
                "pad_token_id",
                p,
                format!("an id below the vocabulary size {vocab}"),
            ));
        }
        Ok(())
    }

    /// The id finished rows receive: `pad_token_id`, else the first EOS id; `None` without EOS
    /// ids (then no row finishes early).
    pub fn fill_token(&self) -> Option<u32> {
        if self.eos_token_ids.is_empty() {
            None
        } else {
            self.pad_token_id.or(self.eos_token_ids.first().copied())
        }
    }
}
