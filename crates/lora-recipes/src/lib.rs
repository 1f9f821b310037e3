#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! The `finetune` example's logic, generic over burn's backends: LoRA / QLoRA fine-tuning of a
//! pretrained language model on IMDB reviews, as sentiment classification (transformers'
//! `*ForSequenceClassification`, PEFT task type SEQ_CLS) or language modelling (CAUSAL_LM),
//! writing the adapter in PEFT's format; and the `train_bench` example's training-step
//! benchmark ([`mod@bench`]).
//!
//! - [`options`]: the options of a run ([`FinetuneOptions`], also the example's flags);
//!   [`recipe`]: the same options from a TOML recipe file (`--config`), and the resolved
//!   `training_config.toml` written beside the adapter;
//!   [`validate`]: their checks, each naming the flag; [`checks`]: single-value checks the
//!   examples share (numbers, model paths, output locations).
//! - [`config`]: the PEFT [`lora_peft::LoraConfig`] built from them; [`method`]: the
//!   `--method` (LoRA, DoRA, IA3, prefix / prompt tuning, bottleneck): its config, attaching
//!   and saving it.
//! - [`encode`]: tokenizing reviews; [`score`]: the classifier's `score` head (verbalizer
//!   initialisation); [`eval`]: accuracy and language-model loss; [`lm_loss`]: the causal-LM
//!   training loss (chunked over the vocabulary or on the full logits).
//! - [`devices`]: the devices of `--devices` and the split of a batch across them.
//! - [`checkpointing`]: checkpoints, `--resume`, the non-finite guard and f16 loss scaling
//!   handed to the training loop.
//! - [`run`]: the shared steps of a run; [`classify`] and [`causal_lm`]: the two recipes.
//! - [`allocator`]: glibc allocator settings for training processes.
//! - [`switches`]: the patched burn crates' environment switches (`LORA_BURN_ATTENTION`, …),
//!   checked before a run starts.
//! - [`output`]: held-out logits, the examples for the PEFT side-by-side run, the summary line,
//!   single F32 tensors; [`ids`]: token ids from a file (the `logits` example).

#![warn(missing_docs)]

pub mod allocator;
pub mod bench;
pub mod causal_lm;
pub mod checkpointing;
pub mod checks;
pub mod classify;
pub mod config;
pub mod devices;
pub mod encode;
pub mod error;
pub mod eval;
pub mod ids;
pub mod lm_loss;
pub mod method;
pub mod options;
pub mod output;
pub mod recipe;
pub mod run;
pub mod score;
pub mod switches;
pub mod validate;

pub use config::{count_layers, lora_config, parse_layers};
pub use error::AnyError;
pub use method::{method_config, MethodConfig};
pub use options::{
    BnArchitecture, FinetuneOptions, Method, ModelKind, PromptInit, ScoreInit, Task, Truncation,
};
pub use run::{run_model, Inputs, RecipeModel};
