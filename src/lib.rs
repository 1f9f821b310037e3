//! # lora-burn — LoRA / QLoRA fine-tuning on burn, PEFT-compatible
//!
//! The root package: re-exports the workspace crates and holds the backend selection that the
//! examples (`finetune`, `logits`, `merge`) and benches share. Pick the backend with a cargo
//! feature: `ndarray` (default, CPU), `wgpu`, `cuda`.

pub use lora_core as core;
pub use lora_models as models;
pub use lora_peft as peft;
pub use lora_train as train;

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

use burn::tensor::backend::Backend as BackendTrait;
use burn::tensor::Tensor;
use lora_models::gguf::GgufFile;
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_models::llama::{Llama, LlamaConfig};
use lora_models::ModelError;
use std::path::Path;

/// A loaded base model of either family, with its config.
pub enum AnyModel<B: BackendTrait> {
    /// GPT-2 (Hugging Face `GPT2LMHeadModel` directory).
    Gpt2(Gpt2<B>, Gpt2Config),
    /// Llama family (Hugging Face `LlamaForCausalLM` directory or GGUF file).
    Llama(Llama<B>, LlamaConfig),
}

/// Loads a model from a Hugging Face directory (`config.json` `model_type` "gpt2" or "llama"
/// plus `model.safetensors`) or from a `.gguf` file (Llama family).
///
/// # Errors
/// [`ModelError::Io`] / [`ModelError::Format`] naming the file when it cannot be read or
/// parsed; [`ModelError::Config`] when `model_type` is neither; the loaders' own errors.
pub fn load_any<B: BackendTrait>(
    path: &Path,
    device: &B::Device,
) -> Result<AnyModel<B>, ModelError> {
    if path.is_file() {
        let g = GgufFile::open(path)?;
        let (m, c) = Llama::from_gguf(&g, device)?;
        return Ok(AnyModel::Llama(m, c));
    }
    let cfg_path = path.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| ModelError::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(&cfg_path, format!("invalid JSON: {e}")))?;
    match v.get("model_type").and_then(|t| t.as_str()) {
        Some("gpt2") => {
            let (m, c) = Gpt2::load(path, device)?;
            Ok(AnyModel::Gpt2(m, c))
        }
        Some("llama") => {
            let (m, c) = Llama::load_hf(path, device)?;
            Ok(AnyModel::Llama(m, c))
        }
        other => Err(ModelError::Config {
            path: cfg_path,
            key: "model_type".into(),
            msg: format!("expected \"gpt2\" or \"llama\", got {other:?}"),
        }),
    }
}

/// Writes one F32 tensor `name` to a safetensors file (metadata {"format":"pt"}), atomically.
///
/// # Errors
/// The I/O or serialisation error, naming the file.
pub fn write_f32_safetensors<B: BackendTrait, const D: usize>(
    path: &Path,
    name: &str,
    t: Tensor<B, D>,
) -> Result<(), Box<dyn std::error::Error>> {
    let shape = t.dims().to_vec();
    let vals: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| format!("{e:?}"))?;
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = safetensors::serialize([(name, view)], Some(meta))?;
    lora_train::train::atomic_write(path, &out).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}
