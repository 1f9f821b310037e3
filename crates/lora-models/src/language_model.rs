//! The [`LanguageModel`] trait every model family implements.
use crate::layers::KvCache;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use lora_core::NamedLinears;

/// The attention geometry a key/value cache or a PEFT prefix must fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Decoder layers (`n_layer` / `num_hidden_layers`).
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (= `num_heads` without grouped-query attention).
    pub num_kv_heads: usize,
    /// Per-head size.
    pub head_dim: usize,
}

/// A decoder-only language model: token ids in, hidden states and next-token logits out.
///
/// A family implements the token embedding ([`LanguageModel::embed`]) and the decoder stack over
/// embeddings and a key/value cache ([`LanguageModel::forward_cached`]); the plain forward is
/// built from them. Prompt-learning methods wrap a model and override
/// [`LanguageModel::new_cache`] (PEFT prefix tuning: the prefix is the cache before the first
/// token) or [`LanguageModel::input_embeds`] with [`LanguageModel::num_virtual_tokens`] (prompt
/// tuning: virtual token embeddings before the real ones); everything built on this trait
/// (classification, generation, the recipes) then sees the method.
pub trait LanguageModel<B: Backend>: Module<B> + NamedLinears<B> {
    /// Token embedding: `input_ids` `[batch, seq]` (Int) → `[batch, seq, hidden]` f32, without
    /// position embeddings (GPT-2 adds those in [`LanguageModel::forward_cached`]).
    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3>;

    /// The decoder over input embeddings `[batch, seq, hidden]` at positions `past … past+seq−1`,
    /// `past = cache.past_len()`: each layer attends causally over its cached keys and values and
    /// the new positions, and `cache` is extended with the new ones. Returns the final hidden
    /// states `[batch, seq, hidden]` after the final norm. No attention mask: sequences are
    /// padded on the right, so real tokens never attend to padding (the same values as
    /// transformers with `attention_mask` on the non-padding positions). The cache must have
    /// been made for this model ([`LanguageModel::new_cache`]); its entries
    /// `[batch, kv_heads, past, head_dim]`.
    fn forward_cached(&self, embeds: Tensor<B, 3>, cache: &mut KvCache<B>) -> Tensor<B, 3>;

    /// The attention geometry (layers, heads, key/value heads, head size).
    fn attention_shape(&self) -> AttentionShape;

    /// The cache a forward pass over a fresh batch of `batch` rows starts from: empty, unless a
    /// prompt-learning method puts its prefix there.
    fn new_cache(&self, batch: usize) -> KvCache<B> {
        let _ = batch;
        KvCache::new(self.attention_shape().num_layers)
    }

    /// Virtual tokens [`LanguageModel::input_embeds`] puts before the real ones (0 unless a
    /// prompt-tuning method wraps the model).
    fn num_virtual_tokens(&self) -> usize {
        0
    }

    /// The embeddings a fresh forward pass feeds the decoder: `[batch, V + seq, hidden]`, the
    /// `V =` [`LanguageModel::num_virtual_tokens`] virtual tokens first, then
    /// [`LanguageModel::embed`] of `input_ids` `[batch, seq]`.
    fn input_embeds(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.embed(input_ids)
    }

    /// `input_ids` `[batch, seq]` (Int) → final hidden states `[batch, seq, hidden]` (f32) of the
    /// real tokens, from a fresh cache ([`LanguageModel::new_cache`]) and the input embeddings
    /// ([`LanguageModel::input_embeds`]); the virtual-token positions are dropped.
    fn hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, s] = input_ids.dims();
        let mut cache = self.new_cache(b);
        let h = self.forward_cached(self.input_embeds(input_ids), &mut cache);
        match self.num_virtual_tokens() {
            0 => h,
            v => h.narrow(1, v, s),
        }
    }

    /// Hidden states `[batch, seq, hidden]` → logits `[batch, seq, vocab]` (the LM head, tied to
    /// the token embedding for both families here).
    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;
    /// The LM head as one f32 weight `[vocab, hidden]` when [`LanguageModel::lm_logits`] is
    /// `hidden · weightᵀ` (no bias, adapter or quantized base; a base stored in bf16 is widened): what a
    /// loss needs to avoid holding the whole `[batch, seq, vocab]` logits (lora-train's
    /// `linear_cross_entropy_sum`). The tensor is either untracked or a trainable parameter's
    /// own value, so that such a loss can hand it its gradient. `None` (the default) when the
    /// head is anything else.
    fn lm_head_weight(&self) -> Option<Tensor<B, 2>> {
        None
    }
    /// Rows `ids` of the output embedding (the LM head weight in `[vocab, hidden]` orientation;
    /// the token embedding when tied) → `[ids.len(), hidden]` f32. Used to initialise a
    /// classification head from verbalizer tokens. Ids must be `< vocab_size()`.
    fn output_embedding_rows(&self, ids: &[u32]) -> Tensor<B, 2>;
    /// Hidden size (`n_embd` / `hidden_size`).
    fn hidden_size(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Most positions the model can attend over (GPT-2's `n_positions`); `None` when unbounded
    /// (RoPE).
    fn max_positions(&self) -> Option<usize> {
        None
    }
    /// `input_ids` `[batch, seq]` → logits `[batch, seq, vocab]` of the real tokens.
    fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.lm_logits(self.hidden_states(input_ids))
    }
}
