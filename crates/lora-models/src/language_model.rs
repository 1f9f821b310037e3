//! The [`LanguageModel`] trait every model family implements.
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
