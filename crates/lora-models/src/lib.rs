#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! Every linear layer of these models is a [`lora_core::LoraLinear`] and is addressed by its
//! Hugging Face module name through [`lora_core::NamedLinears`], so `lora-peft` can apply configs
//! and read and write PEFT adapter files by name. Each family lists those names once, in its
//! `names.rs` table, which drives loading, saving and the visitors.
//!
//! - [`gpt2`]: GPT-2 from a Hugging Face directory (`config.json` + `model.safetensors`).
//! - [`llama`]: Llama-family decoder (RMSNorm, RoPE, SwiGLU, GQA, tied embeddings) from a Hugging
//!   Face directory or a GGUF file ([`gguf`]), with the GGUF byte-level BPE tokenizer
//!   ([`tokenizer`]).
//! - [`layers`]: the building blocks both families share (norms, RoPE, causal attention, MLP
//!   activations).
//! - [`auto`]: [`AnyModel`] / [`load_any`], loading either family from a path.
//! - [`hub`]: `org/name[@rev]` model paths resolved offline in the local Hugging Face hub cache
//!   ([`resolve_model_path`]).
//! - [`classify`]: transformers' `*ForSequenceClassification` head for either family.
//! - [`generate`]: text generation with incremental decoding (greedy, sampling, EOS, chat
//!   prompts), over any [`LanguageModel`].
//! - [`st`]: reading safetensors tensors into burn; [`weights`]: a checkpoint's tensors from
//!   `model.safetensors` or its shards (`model.safetensors.index.json`); checkpoints are written
//!   through `lora-io`.
//!
//! ## Adding a model family
//!
//! A folder `src/<family>/` like [`llama`]: `config.rs` (the `config.json` struct, read with the
//! crate's typed field reader), `model.rs` (modules built from [`layers`], a `build` that asks a
//! parts source for each table slot, and [`LanguageModel`]), `names.rs` (the one table of module
//! names with shapes and field accessors, `LORA_TARGETS`, and [`lora_core::NamedLinears`] over
//! the table), `checkpoint.rs` (load and `save_hf` over the same table); then `pub mod` it here
//! and add a variant to [`AnyModel`] and its `model_type` to [`load_any`].

pub mod auto;
pub mod classify;
mod config_json;
pub mod error;
mod export;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod hub;
mod language_model;
pub mod layers;
pub mod llama;
mod panic_guard;
pub mod st;
pub mod tokenizer;
pub mod weights;

pub use auto::{load_any, AnyModel};
pub use error::ModelError;
pub use export::write_f32_safetensors;
pub use hub::{resolve_model_path, resolve_model_path_in, HubEnv, HubId};
pub use language_model::{AttentionShape, LanguageModel};
pub use layers::{KvCache, LayerKv};
