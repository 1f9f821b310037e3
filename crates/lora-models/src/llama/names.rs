//! Llama's module names, listed once with their GGUF counterparts (llama.cpp's
//! `convert_hf_to_gguf.py` / gguf-py `tensor_mapping.py`): loading (Hugging Face and GGUF),
//! saving and both linear-layer visitors ([`NamedLinears`]) read them from here.
use super::config::LlamaConfig;
use super::model::{Llama, LlamaLayer};
use crate::layers::RmsNorm;
use burn::tensor::backend::Backend;
use lora_core::{LoraLinear, NamedLinears};

/// A tensor outside the decoder layers: its Hugging Face key and its GGUF name.
pub(crate) struct TopTensor {
    /// Hugging Face key (`model.embed_tokens.weight`).
    pub hf: &'static str,
    /// GGUF name (`token_embd.weight`).
    pub gguf: &'static str,
}

/// Token embedding `[vocab, hidden]` (also the LM head when tied).
pub(crate) const EMBED: TopTensor = TopTensor {
    hf: "model.embed_tokens.weight",
    gguf: "token_embd.weight",
};
/// Final RMSNorm `[hidden]`.
pub(crate) const FINAL_NORM: TopTensor = TopTensor {
    hf: "model.norm.weight",
    gguf: "output_norm.weight",
};
/// Untied LM head `[vocab, hidden]`.
pub(crate) const LM_HEAD: TopTensor = TopTensor {
    hf: "lm_head.weight",
    gguf: "output.weight",
};
/// Module name of the untied LM head (as PEFT addresses it).
pub(crate) const LM_HEAD_MODULE: &str = "lm_head";

/// Decoder layer `i`'s module name (Hugging Face).
pub(crate) fn layer(i: usize) -> String {
    format!("model.layers.{i}")
}

/// Decoder layer `i`'s tensor-name prefix (GGUF).
pub(crate) fn gguf_layer(i: usize) -> String {
    format!("blk.{i}")
}

/// Checkpoint tensors the model may ignore: a classification head `score.weight`, the obsolete
/// `rotary_emb.inv_freq` buffers, and a redundant `lm_head.weight` of a tied model.
pub(crate) fn is_ignored(name: &str, tied: bool) -> bool {
    name == "score.weight" || name.ends_with("rotary_emb.inv_freq") || (name == LM_HEAD.hf && tied)
}

/// The linear layers of a Llama decoder layer, as PEFT names them: every attention and MLP
/// projection (the default LoRA targets of `finetune`; PEFT's own default is `q_proj`, `v_proj`).
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// One linear layer of a decoder layer: names, PyTorch-order shape and where it sits in
/// [`LlamaLayer`].
pub(crate) struct LayerLinear<B: Backend> {
    /// Module name below `model.layers.{i}` (`self_attn.q_proj`).
    pub name: &'static str,
    /// GGUF name below `blk.{i}` (`attn_q`).
    pub gguf: &'static str,
    /// Weight shape `[out, in]` (Hugging Face `nn.Linear` layout) from the config.
    pub shape: fn(&LlamaConfig) -> [usize; 2],
    /// For `attn_q`/`attn_k` in GGUF: the head count llama.cpp permuted the rows with.
    pub rope_heads: fn(&LlamaConfig) -> Option<usize>,
    /// The layer.
    pub get: fn(&LlamaLayer<B>) -> &LoraLinear<B>,
    /// The layer, mutably.
    pub get_mut: fn(&mut LlamaLayer<B>) -> &mut LoraLinear<B>,
}

/// One RMSNorm of a decoder layer: names and where it sits.
pub(crate) struct LayerNormSlot<B: Backend> {
    /// Module name below `model.layers.{i}` (`input_layernorm`).
    pub name: &'static str,
    /// GGUF name below `blk.{i}` (`attn_norm`).
    pub gguf: &'static str,
    /// The norm.
    pub get: fn(&LlamaLayer<B>) -> &RmsNorm<B>,
}

impl<B: Backend> LlamaLayer<B> {
    /// The layer's linear layers in module order (`LlamaDecoderLayer`: attention, then MLP).
    pub(crate) const LINEARS: [LayerLinear<B>; 7] = [
        LayerLinear {
            name: "self_attn.q_proj",
            gguf: "attn_q",
            shape: |c| [c.num_attention_heads * c.head_dim, c.hidden_size],
            rope_heads: |c| Some(c.num_attention_heads),
            get: |l| &l.self_attn.q_proj,
            get_mut: |l| &mut l.self_attn.q_proj,
        },
        LayerLinear {
            name: "self_attn.k_proj",
            gguf: "attn_k",
            shape: |c| [c.num_key_value_heads * c.head_dim, c.hidden_size],
            rope_heads: |c| Some(c.num_key_value_heads),
            get: |l| &l.self_attn.k_proj,
            get_mut: |l| &mut l.self_attn.k_proj,
        },
        LayerLinear {
            name: "self_attn.v_proj",
            gguf: "attn_v",
            shape: |c| [c.num_key_value_heads * c.head_dim, c.hidden_size],
            rope_heads: |_| None,
            get: |l| &l.self_attn.v_proj,
            get_mut: |l| &mut l.self_attn.v_proj,
        },
        LayerLinear {
            name: "self_attn.o_proj",
            gguf: "attn_output",
            shape: |c| [c.hidden_size, c.num_attention_heads * c.head_dim],
            rope_heads: |_| None,
            get: |l| &l.self_attn.o_proj,
            get_mut: |l| &mut l.self_attn.o_proj,
        },
        LayerLinear {
            name: "mlp.gate_proj",
            gguf: "ffn_gate",
            shape: |c| [c.intermediate_size, c.hidden_size],
            rope_heads: |_| None,
            get: |l| &l.mlp.gate_proj,
            get_mut: |l| &mut l.mlp.gate_proj,
        },
        LayerLinear {
            name: "mlp.up_proj",
            gguf: "ffn_up",
            shape: |c| [c.intermediate_size, c.hidden_size],
            rope_heads: |_| None,
            get: |l| &l.mlp.up_proj,
            get_mut: |l| &mut l.mlp.up_proj,
        },
        LayerLinear {
            name: "mlp.down_proj",
            gguf: "ffn_down",
            shape: |c| [c.hidden_size, c.intermediate_size],
            rope_heads: |_| None,
            get: |l| &l.mlp.down_proj,
            get_mut: |l| &mut l.mlp.down_proj,
        },
    ];

    /// The layer's RMSNorms in module order.
    pub(crate) const NORMS: [LayerNormSlot<B>; 2] = [
        LayerNormSlot {
            name: "input_layernorm",
            gguf: "attn_norm",
            get: |l| &l.input_layernorm,
        },
        LayerNormSlot {
            name: "post_attention_layernorm",
            gguf: "ffn_norm",
            get: |l| &l.post_attention_layernorm,
        },
    ];
}

impl<B: Backend> NamedLinears<B> for Llama<B> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        for (i, l) in self.layers.iter().enumerate() {
            for s in &LlamaLayer::<B>::LINEARS {
                f(&format!("{}.{}", layer(i), s.name), (s.get)(l));
            }
        }
        if let Some(h) = &self.lm_head {
            f(LM_HEAD_MODULE, h);
        }
    }

    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            for s in &LlamaLayer::<B>::LINEARS {
                f(&format!("{}.{}", layer(i), s.name), (s.get_mut)(l));
            }
        }
        if let Some(h) = &mut self.lm_head {
            f(LM_HEAD_MODULE, h);
        }
    }
}
