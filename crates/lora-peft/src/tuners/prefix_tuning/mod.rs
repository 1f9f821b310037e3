//! Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for
//! Generation"), PEFT's `peft_type = "PREFIX_TUNING"` (`peft/tuners/prefix_tuning/`,
//! `peft_model.py::get_prompt`).
//!
//! Every attention layer attends over `num_virtual_tokens` trained key/value pairs before the
//! real tokens; the real tokens take positions `V … V+L−1` and the prefix keys are not rotated.
//! The method does not touch the model's layers: [`crate::PeftModel`] puts the prefix in the
//! key/value cache a forward pass starts from (`lora_models::LanguageModel::new_cache`).
//!
//! - [`config`] — [`PrefixTuningConfig`] (`adapter_config.json`), filled in from the model;
//! - [`encoder`] — [`PrefixEncoder`] (the trainable prefix, optionally through a projection MLP)
//!   and its conversion to a `lora_models::KvCache`;
//! - [`io`] — [`save_prefix_tuning`] / [`load_prefix_tuning`] (`prompt_embeddings`).
pub mod config;
pub mod encoder;
pub mod io;

pub use config::{PrefixGeometry, PrefixTuningConfig};
pub use encoder::{PrefixEncoder, PrefixProjection};
pub use io::{load_prefix_tuning, save_prefix_tuning, PROMPT_EMBEDDINGS_KEY};
