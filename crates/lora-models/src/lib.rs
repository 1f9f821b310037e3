//! # lora-models — GPT-2 and Llama-family decoders whose linear layers carry LoRA adapters
//!
//! Every linear layer of these models is a [`lora_core::LoraLinear`] and is addressed by its
//! Hugging Face module name through [`lora_core::NamedLinears`], so `lora-peft` can apply configs
//! and read and write PEFT adapter files by name.
//!
//! - [`gpt2`]: GPT-2 from a Hugging Face directory (`config.json` + `model.safetensors`).
//! - [`llama`]: Llama-family decoder (RMSNorm, RoPE, SwiGLU, GQA, tied embeddings) from a Hugging
//!   Face directory or a GGUF file ([`gguf`]), with the GGUF byte-level BPE tokenizer
//!   ([`tokenizer`]).
//! - [`classify`]: transformers' `*ForSequenceClassification` head for either family.

pub mod classify;
pub mod error;
pub mod gguf;
pub mod gpt2;
pub mod llama;
pub mod st;
pub mod tokenizer;

pub use error::ModelError;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use lora_core::NamedLinears;

/// A decoder-only language model: token ids in, hidden states and next-token logits out.
pub trait LanguageModel<B: Backend>: Module<B> + NamedLinears<B> {
    /// `input_ids` `[batch, seq]` (Int) → final hidden states `[batch, seq, hidden]` (f32),
    /// after the final norm, with causal attention. No attention mask: sequences are padded on
    /// the right, so real tokens never attend to padding (same values as transformers with
    /// `attention_mask` on the non-padding positions).
    fn hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3>;
    /// Hidden states `[batch, seq, hidden]` → logits `[batch, seq, vocab]` (the LM head, tied to
    /// the token embedding for both families here).
    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;
    /// Rows `ids` of the output embedding (the LM head weight in `[vocab, hidden]` orientation;
    /// the token embedding when tied) → `[ids.len(), hidden]` f32. Used to initialise a
    /// classification head from verbalizer tokens. Ids must be `< vocab_size()`.
    fn output_embedding_rows(&self, ids: &[u32]) -> Tensor<B, 2>;
    /// Hidden size (`n_embd` / `hidden_size`).
    fn hidden_size(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// `input_ids` `[batch, seq]` → logits `[batch, seq, vocab]`.
    fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.lm_logits(self.hidden_states(input_ids))
    }
}
