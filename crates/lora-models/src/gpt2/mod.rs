//! GPT-2 (Radford et al. 2019) with every linear layer a [`lora_core::LoraLinear`].
//!
//! Reference implementation: Hugging Face transformers `models/gpt2/modeling_gpt2.py`
//! (`GPT2LMHeadModel`, `GPT2Block`, `GPT2Attention`, `GPT2MLP`, `Conv1D`) and
//! `configuration_gpt2.py` (defaults). Weights are read from and written to a Hugging Face
//! directory (`config.json` + `model.safetensors`). GPT-2's `Conv1D` stores its weight
//! `[in, out]`, the layout of [`lora_core::LoraLinear`], so nothing is transposed
//! (`fan_in_fan_out = true`).
//!
//! - `bottleneck`: the AdapterHub bottleneck-adapter slots (`lora_core::BottleneckLayers`,
//!   AdapterHub `models/gpt2/mixin_gpt2.py`).
//! - `config`: [`Gpt2Config`] (`config.json`).
//! - `model`: the modules and the forward pass.
//! - `names`: the one table of Hugging Face module names (loading, saving, visitors).
//! - `checkpoint`: [`Gpt2::load`] / [`Gpt2::save_hf`].

mod bottleneck;
mod checkpoint;
mod config;
mod model;
mod names;

pub use crate::layers::{gelu_new, LayerNorm};
pub use config::{Gpt2Activation, Gpt2Config};
pub use model::{Gpt2, Gpt2Attention, Gpt2Block, Gpt2Mlp};
pub use names::LORA_TARGETS;
