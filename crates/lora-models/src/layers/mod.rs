//! Building blocks both model families share. Layer code only: no file I/O, no Hugging Face
//! names (each model's `names.rs` holds those).
//!
//! - [`norm`]: [`LayerNorm`] (GPT-2) and [`RmsNorm`] (Llama).
//! - [`rope`]: rotary position embedding tables and their application (Llama).
//! - [`attention`]: the additive causal mask and causal scaled dot-product attention.
//! - [`kv_cache`]: keys and values of earlier positions (incremental decoding, PEFT prefixes).
//! - [`mlp`]: the MLP activations ([`gelu_new`], SwiGLU).

pub mod attention;
pub mod kv_cache;
pub mod mlp;
pub mod norm;
pub mod rope;

pub use attention::{causal_attention, causal_mask};
pub use kv_cache::{KvCache, LayerKv};
pub use mlp::{gelu_new, swiglu};
pub use norm::{LayerNorm, RmsNorm};
pub use rope::{apply_rope, Rope};

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Frozen parameter from a tensor (base weights never train; adapters do).
pub(crate) fn frozen<B: Backend, const D: usize>(t: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(t).set_require_grad(false)
}
