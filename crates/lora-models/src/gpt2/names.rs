//! GPT-2's Hugging Face module names, listed once: loading, saving and both linear-layer
//! visitors ([`NamedLinears`]) read them from here.
use super::config::Gpt2Config;
use super::model::{Gpt2, Gpt2Block};
use crate::layers::LayerNorm;
use burn::tensor::backend::Backend;
use lora_core::{LoraLinear, NamedLinears};

/// Key prefix of a `GPT2LMHeadModel` checkpoint (a bare `GPT2Model` file has none).
pub(crate) const PREFIX: &str = "transformer.";
/// Token embedding `[vocab, n_embd]` (also the tied LM head).
pub(crate) const WTE: &str = "wte";
/// Position embedding `[n_positions, n_embd]`.
pub(crate) const WPE: &str = "wpe";
/// Final LayerNorm.
pub(crate) const LN_F: &str = "ln_f";

/// Block `i`'s module name below [`PREFIX`].
pub(crate) fn block(i: usize) -> String {
    format!("h.{i}")
}

/// Checkpoint tensors the model does not use and may ignore: the tied `lm_head.weight`, a
/// classification head `score.weight` and the attention-mask buffers of old checkpoints.
pub(crate) fn is_ignored(name: &str) -> bool {
    name == "lm_head.weight"
        || name == "score.weight"
        || name.ends_with(".attn.bias")
        || name.ends_with(".attn.masked_bias")
}

/// The linear (Conv1D) layers of a GPT-2 block, as PEFT names them (`c_proj` matches both
/// `attn.c_proj` and `mlp.c_proj`): the default LoRA targets of `finetune`; PEFT's own default
/// is `c_attn`.
pub const LORA_TARGETS: [&str; 3] = ["c_attn", "c_proj", "c_fc"];

/// One Conv1D layer of a block: its module name below the block, its `[in, out]` shape and
/// where it sits in [`Gpt2Block`].
pub(crate) struct BlockLinear<B: Backend> {
    /// Module name below `h.{i}` (`attn.c_attn`).
    pub name: &'static str,
    /// Weight shape `[in, out]` (Conv1D layout) from the config.
    pub dims: fn(&Gpt2Config) -> [usize; 2],
    /// The layer.
    pub get: fn(&Gpt2Block<B>) -> &LoraLinear<B>,
    /// The layer, mutably.
    pub get_mut: fn(&mut Gpt2Block<B>) -> &mut LoraLinear<B>,
}

/// One LayerNorm of a block: its module name below the block and where it sits.
pub(crate) struct BlockNorm<B: Backend> {
    /// Module name below `h.{i}` (`ln_1`).
    pub name: &'static str,
    /// The norm.
    pub get: fn(&Gpt2Block<B>) -> &LayerNorm<B>,
}

impl<B: Backend> Gpt2Block<B> {
    /// The block's linear layers in module order (`GPT2Block`: attention, then MLP).
    pub(crate) const LINEARS: [BlockLinear<B>; 4] = [
        BlockLinear {
            name: "attn.c_attn",
            dims: |c| [c.n_embd, 3 * c.n_embd],
            get: |b| &b.attn.c_attn,
            get_mut: |b| &mut b.attn.c_attn,
        },
        BlockLinear {
            name: "attn.c_proj",
            dims: |c| [c.n_embd, c.n_embd],
            get: |b| &b.attn.c_proj,
            get_mut: |b| &mut b.attn.c_proj,
        },
        BlockLinear {
            name: "mlp.c_fc",
            dims: |c| [c.n_embd, c.n_inner],
            get: |b| &b.mlp.c_fc,
            get_mut: |b| &mut b.mlp.c_fc,
        },
        BlockLinear {
            name: "mlp.c_proj",
            dims: |c| [c.n_inner, c.n_embd],
            get: |b| &b.mlp.c_proj,
            get_mut: |b| &mut b.mlp.c_proj,
        },
    ];

    /// The block's LayerNorms in module order.
    pub(crate) const NORMS: [BlockNorm<B>; 2] = [
        BlockNorm {
            name: "ln_1",
            get: |b| &b.ln_1,
        },
        BlockNorm {
            name: "ln_2",
            get: |b| &b.ln_2,
        },
    ];
}

impl<B: Backend> NamedLinears<B> for Gpt2<B> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        for (i, blk) in self.h.iter().enumerate() {
            for s in &Gpt2Block::<B>::LINEARS {
                f(&format!("{PREFIX}{}.{}", block(i), s.name), (s.get)(blk));
            }
        }
    }

    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        for (i, blk) in self.h.iter_mut().enumerate() {
            for s in &Gpt2Block::<B>::LINEARS {
                f(
                    &format!("{PREFIX}{}.{}", block(i), s.name),
                    (s.get_mut)(blk),
                );
            }
        }
    }
}
