//! Llama-family decoder (Touvron et al. 2023) with every linear layer a
//! [`lora_core::LoraLinear`]: RMSNorm, rotary position embeddings, grouped-query attention,
//! SwiGLU MLP, tied or untied LM head.
//!
//! Reference implementation: Hugging Face transformers `models/llama/modeling_llama.py`
//! (`LlamaForCausalLM`, `LlamaRMSNorm`, `LlamaRotaryEmbedding`, `rotate_half`,
//! `apply_rotary_pos_emb`, `repeat_kv`, `LlamaMLP`) and `configuration_llama.py` (defaults).
//! Weights come from a Hugging Face directory (`config.json` + `model.safetensors`) or a GGUF file
//! (llama.cpp's `convert_hf_to_gguf.py` tensor names; its Q/K row permutation is undone on load,
//! as transformers' GGUF loader does). HF `nn.Linear` stores `[out, in]`;
//! [`lora_core::LoraLinear`] holds `[in, out]`, so linear weights are transposed on load and on
//! save (`fan_in_fan_out = false`).
//!
//! - `bottleneck`: the AdapterHub bottleneck-adapter slots (`lora_core::BottleneckLayers`,
//!   AdapterHub `models/llama/mixin_llama.py`).
//! - `config`: [`LlamaConfig`] (`config.json`).
//! - `model`: the modules and the forward pass.
//! - `names`: the one table of module names (Hugging Face and GGUF; loading, saving, visitors).
//! - `checkpoint`: [`Llama::load_hf`] / [`Llama::save_hf`].
//! - `gguf_load`: [`Llama::from_gguf`].

mod bottleneck;
mod checkpoint;
mod config;
mod gguf_load;
mod model;
mod names;

pub use crate::layers::RmsNorm;
pub use config::LlamaConfig;
pub use gguf_load::unpermute_rope_rows;
pub use model::{Llama, LlamaAttention, LlamaLayer, LlamaMlp};
pub use names::LORA_TARGETS;
