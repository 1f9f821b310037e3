//! Text generation with incremental decoding, as transformers' `generate` does for greedy
//! search and multinomial sampling (`generation/utils.py`, `generation/logits_process.py`).
//!
//! - [`GenerationConfig`]: the settings (`max_new_tokens`, `do_sample`, `temperature`, `top_k`,
//!   `top_p`, `repetition_penalty`, `seed`, `eos_token_ids`, `pad_token_id`).
//! - [`sampling`]: the logits processors in transformers' order and the token choice.
//! - [`generate`]: the loop over a [`crate::LanguageModel`] and its [`crate::KvCache`]; it uses
//!   only the trait's methods, so a prompt-learning wrapper (prefix in `new_cache`, virtual
//!   tokens in `input_embeds`) generates through the same code.
//! - [`ChatTemplate`]: ChatML prompts (SmolLM2's chat format) from GGUF metadata.
//! - [`SpecialIds`]: the EOS / padding ids a model's files declare.

mod chat;
mod config;
mod decode;
mod error;
pub mod sampling;
mod special;

pub use chat::{ChatTemplate, CHAT_TEMPLATE_KEY};
pub use config::GenerationConfig;
pub use decode::{generate, Generation, StopReason};
pub use error::GenerateError;
pub use special::SpecialIds;
