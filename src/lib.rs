//! # lora-burn — LoRA / QLoRA fine-tuning on burn, PEFT-compatible
//!
//! The root package: re-exports `lora-core`, `lora-models`, `lora-peft` and `lora-train`, and
//! holds the backend selection that the examples (`finetune`, `logits`, `merge`, `quantize`,
//! `train_bench`) and benches share. Pick the backend with a cargo
//! feature: `ndarray` (default, CPU), `wgpu`, `cuda`.

// The README's code (section "Using the crates from your own project") runs as a doctest.
#![cfg_attr(doctest, doc = include_str!("../README.md"))]

pub use lora_core as core;
pub use lora_models as models;
pub use lora_peft as peft;
pub use lora_train as train;

/// Loading either model family from a path, and writing one tensor for a transformers check.
pub use lora_models::{load_any, write_f32_safetensors, AnyModel};

/// The compute backend chosen by cargo feature (`cuda` > `wgpu` > `ndarray`), f32.
#[cfg(feature = "cuda-base")]
pub type Backend = burn::backend::Cuda<f32, i32>;
/// The compute backend chosen by cargo feature (`cuda` > `wgpu` > `ndarray`), f32.
#[cfg(all(feature = "wgpu", not(feature = "cuda-base")))]
pub type Backend = burn::backend::Wgpu<f32, i32>;
/// The compute backend chosen by cargo feature (`cuda` > `wgpu` > `ndarray`), f32.
#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda-base"))))]
pub type Backend = burn::backend::NdArray<f32>;

/// [`Backend`] with autodiff, for training.
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// A human name of the selected backend, for logs: "cuda", "cuda (no autotune)" (feature
/// `cuda-base` without `cuda`), "wgpu" or "ndarray (CPU)".
pub fn backend_name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "cuda-base") {
        "cuda (no autotune)"
    } else if cfg!(feature = "wgpu") {
        "wgpu"
    } else {
        "ndarray (CPU)"
    }
}
