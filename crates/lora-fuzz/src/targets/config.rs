//! JSON configs: PEFT's `adapter_config.json` (every implemented method, validated and matched
//! against GPT-2's layer names), AdapterHub's bottleneck `adapter_config.json`, and Hugging
//! Face model `config.json` (GPT-2, Llama).

use super::{text, Target};
use crate::corpus::{files_under, fixtures_dir};
use lora_core::BottleneckLocation;
use lora_models::gpt2::Gpt2Config;
use lora_models::llama::LlamaConfig;
use lora_models::AttentionShape;
use lora_peft::{resolve_targets, AdapterConfig, BnAdapterConfig};
use std::path::Path;

/// The linear layers of a 2-layer GPT-2 and a 2-layer Llama, plus a classification head (the
/// fixtures' configs target either).
fn layer_names() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..2 {
        for m in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
            v.push(format!("transformer.h.{i}.{m}"));
        }
        for m in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            v.push(format!("model.layers.{i}.{m}"));
        }
    }
    v.push("score".into());
    v
}

fn as_text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(text)
}

/// `AdapterConfig::from_json_str`, then the method's validation and target matching (LoRA,
/// IA3) or geometry (prefix and prompt tuning).
fn run_adapter_config(b: &[u8]) -> Result<(), String> {
    let path = Path::new("<fuzz input>/adapter_config.json");
    match AdapterConfig::from_json_str(as_text(b)?, path).map_err(text)? {
        AdapterConfig::Lora(c) => {
            c.validate().map_err(text)?;
            let plan = resolve_targets(&layer_names(), &c).map_err(text)?;
            for n in layer_names() {
                let _ = c.layer_config(&n);
            }
            drop(plan);
        }
        AdapterConfig::Ia3(c) => {
            c.validate().map_err(text)?;
            resolve_targets(&layer_names(), &c).map_err(text)?;
        }
        AdapterConfig::PrefixTuning(mut c) => {
            c.prepare(AttentionShape {
                num_layers: 2,
                num_heads: 4,
                num_kv_heads: 4,
                head_dim: 12,
            });
            c.geometry().map_err(text)?;
        }
        AdapterConfig::PromptTuning(mut c) => {
            c.prepare(48, 2, 4);
            c.check_model(48, path).map_err(text)?;
        }
        _ => {}
    }
    Ok(())
}

fn seeds_adapter_configs() -> Vec<Vec<u8>> {
    files_under(&fixtures_dir(), &|n| n == "adapter_config.json")
}

/// PEFT adapter configs.
pub const ADAPTER_CONFIG: Target = Target {
    name: "adapter_config",
    about: "AdapterConfig::from_json_str, validate, resolve_targets / geometry",
    run: run_adapter_config,
    seeds: seeds_adapter_configs,
    bounded_execs: 60_000,
};

/// `BnAdapterConfig::from_json_str`, validation, and every layer's config for hidden size 48.
fn run_adapterhub_config(b: &[u8]) -> Result<(), String> {
    let path = Path::new("<fuzz input>/adapter_config.json");
    let c = BnAdapterConfig::from_json_str(as_text(b)?, path).map_err(text)?;
    c.config.validate(true).map_err(text)?;
    for layer in 0..3 {
        for loc in BottleneckLocation::ALL {
            c.config
                .layer_config(c.hidden_size, layer, loc, false)
                .map_err(text)?;
        }
    }
    Ok(())
}

/// AdapterHub bottleneck configs.
pub const ADAPTERHUB_CONFIG: Target = Target {
    name: "adapterhub_config",
    about: "BnAdapterConfig::from_json_str, BnConfig::validate and layer_config",
    run: run_adapterhub_config,
    seeds: seeds_adapter_configs,
    bounded_execs: 200_000,
};

/// `Gpt2Config::from_json` and `LlamaConfig::from_json` + `validate`.
fn run_model_config(b: &[u8]) -> Result<(), String> {
    let path = Path::new("<fuzz input>/config.json");
    let v: serde_json::Value = serde_json::from_slice(b).map_err(text)?;
    let g = Gpt2Config::from_json(v.clone(), path).map(|_| ());
    let l = LlamaConfig::from_json(v, path).and_then(|c| c.validate(path));
    g.and(l).map_err(text)
}

fn seeds_model_config() -> Vec<Vec<u8>> {
    files_under(&fixtures_dir(), &|n| n == "config.json")
}

/// Model `config.json`.
pub const MODEL_CONFIG: Target = Target {
    name: "model_config",
    about: "Gpt2Config::from_json, LlamaConfig::from_json and validate",
    run: run_model_config,
    seeds: seeds_model_config,
    bounded_execs: 150_000,
};
