//! Hugging Face model directories (`config.json` + `model.safetensors`) through
//! `lora_models::load_any` on the CPU backend: the GPT-2 and Llama checkpoint loaders.

use super::{join_pair, split_pair, text, Target};
use crate::corpus::fixtures_dir;
use crate::scratch::scratch_files;

type Cpu = burn_ndarray::NdArray<f32>;

/// Separates `config.json` from `model.safetensors` in an input.
pub const MODEL_SEPARATOR: &[u8] = b"\n--lora-fuzz: model.safetensors follows--\n";

/// The input split at [`MODEL_SEPARATOR`], written as a model directory and loaded.
fn run(b: &[u8]) -> Result<(), String> {
    let (config, weights) = split_pair(b, MODEL_SEPARATOR);
    let dir = scratch_files(&[("config.json", config), ("model.safetensors", weights)])?;
    lora_models::load_any::<Cpu>(&dir, &Default::default()).map_err(text)?;
    Ok(())
}

fn seeds() -> Vec<Vec<u8>> {
    ["gpt2_a", "gpt2_b", "llama_a"]
        .iter()
        .filter_map(|name| {
            let d = fixtures_dir().join(name);
            join_pair(
                &d.join("config.json"),
                MODEL_SEPARATOR,
                &d.join("model.safetensors"),
            )
        })
        .collect()
}

/// Model directories.
pub const HF_MODEL_DIR: Target = Target {
    name: "hf_model_dir",
    about: "config.json + model.safetensors through lora_models::load_any (GPT-2, Llama)",
    run,
    seeds,
    bounded_execs: 8_000,
};
