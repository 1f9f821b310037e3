//! Text generation with incremental decoding, as transformers' `generate` does for greedy
//! search and multinomial sampling (`generation/utils.py`, `generation/logits_process.py`).
//!
//! - [`GenerationConfig`]: the settings (`max_new_tokens`, `do_sample`, `temperature`, `top_k`,
//!   `top_p`, `repetition_penalty`, `seed`, `eos_token_ids`, `pad_token_id`).
//! - [`sampling`]: the logits processors in transformers' order and the token choice.
//! - [`generate`]: the loop over a [`crate::LanguageModel`] and its [`crate::KvCache`]; it uses
//!   only the trait's methods, so a prompt-learning wrapper (prefix in `new_cache`, virtual
//!   tokens in `input_embeds`) generates through the same code.
//! - [`JinjaChatTemplate`]: a model's own Jinja chat template (GGUF metadata, `chat_template.jinja`,
//!   `tokenizer_config.json`) rendered as transformers' `apply_chat_template`; [`ChatTemplate`]:
//!   ChatML prompts (SmolLM2's chat format) without a template engine.
//! - [`SpecialIds`]: the EOS / padding ids a model's files declare.

mod chat;
mod config;
mod decode;
mod error;
pub mod sampling;
mod special;
mod template;

pub use chat::{ChatTemplate, CHAT_TEMPLATE_KEY};
pub use config::GenerationConfig;
pub use decode::{generate, Generation, StopReason};
pub use error::GenerateError;
pub use special::SpecialIds;
pub use template::{ChatMessage, JinjaChatTemplate};
