#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! Every file a lora-burn crate writes (adapters, configs, checkpoints, merged models, fetched
//! inputs) goes through [`atomic_write`] or [`atomic_write_with`], and every safetensors file
//! through [`write_safetensors`]; output locations are checked before any work with
//! [`ensure_writable_dir`] / [`check_writable_file`]; every input file is read through
//! [`read_regular_file`] (regular files only, at most their size: a FIFO or device never
//! blocks or exhausts memory); every safetensors float tensor is read through [`f32_values`];
//! processes that must take turns on a path lock it with [`FileLock`].
//! No burn dependency: this crate knows bytes, shapes and dtypes only.

mod atomic;
mod error;
mod lock;
mod read;
mod st;
mod writable;

pub use atomic::{atomic_write, atomic_write_with, without_path_prefix};
pub use error::IoError;
pub use lock::FileLock;
pub use read::{check_regular_file, read_regular_file, read_regular_to_string};
pub use st::{f32_values, serialize_safetensors, write_safetensors, StTensor};
pub use writable::{check_writable_file, ensure_writable_dir, same_file};
