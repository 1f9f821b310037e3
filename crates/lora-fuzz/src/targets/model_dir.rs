//! Hugging Face model directories (`config.json` + `model.safetensors`) through
//! `lora_models::load_any` on the CPU backend: the GPT-2 and Llama checkpoint loaders.

use super::{text, Target};
use crate::corpus::fixtures_dir;
use crate::scratch::scratch_dir;

type Cpu = burn_ndarray::NdArray<f32>;

/// Separates `config.json` from `model.safetensors` in an input.
pub const MODEL_SEPARATOR: &[u8] = b"\n--lora-fuzz: model.safetensors follows--\n";

/// The input split at [`MODEL_SEPARATOR`], written as a model directory and loaded.
fn run(b: &[u8]) -> Result<(), String> {
    let (config, weights) = match b
        .windows(MODEL_SEPARATOR.len())
        .position(|w| w == MODEL_SEPARATOR)
    {
        Some(i) => (&b[..i], &b[i + MODEL_SEPARATOR.len()..]),
        None => (b, &b[..0]),
    };
    let dir = scratch_dir()?;
    std::fs::write(dir.join("config.json"), config).map_err(text)?;
    std::fs::write(dir.join("model.safetensors"), weights).map_err(text)?;
    lora_models::load_any::<Cpu>(&dir, &Default::default()).map_err(text)?;
    Ok(())
}

fn seeds() -> Vec<Vec<u8>> {
    ["gpt2_a", "gpt2_b", "llama_a"]
        .iter()
        .filter_map(|name| {
            let d = fixtures_dir().join(name);
            let mut s = std::fs::read(d.join("config.json")).ok()?;
            s.extend_from_slice(MODEL_SEPARATOR);
            s.extend(std::fs::read(d.join("model.safetensors")).ok()?);
            Some(s)
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
