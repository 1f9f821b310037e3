//! Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt
//! Tuning"), PEFT's `peft_type = "PROMPT_TUNING"` (`peft/tuners/prompt_tuning/`,
//! `peft_model.py::get_prompt`).
//!
//! `num_virtual_tokens` trained embeddings go before the real tokens' input embeddings and take
//! positions `0 … V−1`; the outputs at those positions are dropped. The method does not touch
//! the model's layers: [`crate::PeftModel`] overrides `lora_models::LanguageModel::input_embeds`.
//!
//! - [`config`] — [`PromptTuningConfig`] (`adapter_config.json`), [`PromptTuningInit`];
//! - [`embedding`] — [`PromptEmbedding`] (`RANDOM`, `TEXT` from token ids, `SAMPLE_VOCAB`);
//! - [`io`] — [`save_prompt_tuning`] / [`load_prompt_tuning`] (`prompt_embeddings`).
pub mod config;
pub mod embedding;
pub mod io;

pub use config::{PromptTuningConfig, PromptTuningInit};
pub use embedding::{init_token_ids, PromptEmbedding};
pub use io::{load_prompt_tuning, save_prompt_tuning};
