//! Loading a base model of either family from a path, picking the family from the files.
use crate::gguf::GgufFile;
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::llama::{Llama, LlamaConfig};
use crate::ModelError;
use burn::tensor::backend::Backend;
use std::path::Path;

/// A loaded base model of either family, with its config.
// One value a process, matched by the examples: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnyModel<B: Backend> {
    /// GPT-2 (Hugging Face `GPT2LMHeadModel` directory).
    Gpt2(Gpt2<B>, Gpt2Config),
    /// Llama family (Hugging Face `LlamaForCausalLM` directory or GGUF file).
    Llama(Llama<B>, LlamaConfig),
}

/// Loads a model from a Hugging Face directory (`config.json` `model_type` "gpt2" or "llama"
/// plus `model.safetensors`, or the shards `model.safetensors.index.json` lists) or from a `.gguf` file (Llama family).
///
/// # Errors
/// [`ModelError::Io`] / [`ModelError::Format`] naming the file when it cannot be read or
/// parsed; [`ModelError::Config`] when `model_type` is neither; the loaders' own errors.
pub fn load_any<B: Backend>(path: &Path, device: &B::Device) -> Result<AnyModel<B>, ModelError> {
    if path.is_file() {
        let g = GgufFile::open(path)?;
        let (m, c) = Llama::from_gguf(&g, device)?;
        return Ok(AnyModel::Llama(m, c));
    }
    let cfg_path = path.join("config.json");
    let text = lora_io::read_regular_to_string(&cfg_path).map_err(|source| ModelError::Io {
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
