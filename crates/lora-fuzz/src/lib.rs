//! Mutation-based fuzzing, on stable Rust, of every reader of outside bytes in the workspace:
//! GGUF (header, metadata, tensor infos, every dequantized block type, the tokenizer in its
//! metadata, a Llama built from it), safetensors through our own readers, PEFT and AdapterHub
//! `adapter_config.json` (alone and with the adapter weights, through the loaders),
//! bitsandbytes checkpoints and their NF4 quant-state JSON, model `config.json` (alone and with
//! the weights), Hugging Face tokenizer files (`tokenizer.json`, `vocab.json` + `merges.txt`)
//! and the IMDB JSON.
//!
//! A failure is a panic, a hang (no result within the per-input time limit) or a single
//! allocation above `64 × input bytes + 64 MiB` ([`alloc`]); an `Err` is a correct answer.
//! The engine ([`run`]) starts from the real files and fixtures ([`corpus`]), mutates them
//! ([`mutate`]), and keeps inputs that reach an error text not seen before. The `fuzz` binary
//! runs it from the command line; `docs/reliability.md` has the commands and results.

pub mod alloc;
pub mod corpus;
pub mod exec;
pub mod mutate;
pub mod rng;
pub mod run;
pub mod scratch;
pub mod targets;

pub use alloc::CountingAlloc;
pub use exec::{Executor, Outcome, TargetFn};
pub use run::{fuzz, replay, FuzzOptions, FuzzReport};
pub use targets::{target, Target, TARGETS};
