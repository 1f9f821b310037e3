//! The prompt embedding of prompt tuning (PEFT `peft/tuners/prompt_tuning/model.py`,
//! `PromptEmbedding`).
use crate::PeftError;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use lora_models::LanguageModel;

/// PEFT's `PromptEmbedding`: `num_virtual_tokens` trained input embeddings put before the real
/// tokens' (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning").
///
/// # Shapes
/// - `embedding`: `[V, hidden]`
/// - [`PromptEmbedding::forward`]: `[batch, V, hidden]`
#[derive(Module, Debug)]
pub struct PromptEmbedding<B: Backend> {
    /// The virtual-token embeddings `[V, hidden]` (trainable).
    pub embedding: Param<Tensor<B, 2>>,
}

/// Token ids `ids` repeated or cut to `n`, as PEFT's `TEXT` init (`ids * ceil(n / len)`, then
/// the first `n`).
///
/// # Errors
/// [`PeftError::Config`] (field `prompt_tuning_init_text`) when `ids` is empty.
pub fn init_token_ids(ids: &[u32], n: usize) -> Result<Vec<u32>, PeftError> {
    if ids.is_empty() {
        return Err(PeftError::Config {
            field: "prompt_tuning_init_text".into(),
            value: "[]".into(),
            msg: "the init text gave no token ids".into(),
        });
    }
    Ok(ids.iter().copied().cycle().take(n).collect())
}

impl<B: Backend> PromptEmbedding<B> {
    /// `RANDOM` init: `[v, hidden]` ~ N(0, 1) (`torch.nn.Embedding`'s init), from the backend's
    /// generator (seed it with `B::seed`).
    pub fn random(v: usize, hidden: usize, device: &B::Device) -> Self {
        Self::from_weight(Tensor::random(
            [v, hidden],
            Distribution::Normal(0.0, 1.0),
            device,
        ))
    }

    /// A prompt with given embeddings `[V, hidden]`, trainable.
    pub fn from_weight(weight: Tensor<B, 2>) -> Self {
        Self {
            embedding: Param::from_tensor(weight),
        }
    }

    /// `TEXT` init: the word-embedding rows ([`LanguageModel::embed`]) of the init text's
    /// token ids `ids` (tokenized by the caller, special tokens included as PEFT's tokenizer
    /// call adds them), repeated or cut to `v` ([`init_token_ids`]). Detached copies: the
    /// model's embedding stays as it is.
    ///
    /// # Errors
    /// [`PeftError::Config`] when `ids` is empty or an id is not below the model's vocabulary
    /// size.
    pub fn from_token_ids<M: LanguageModel<B>>(
        model: &M,
        ids: &[u32],
        v: usize,
        device: &B::Device,
    ) -> Result<Self, PeftError> {
        let vocab = model.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(PeftError::Config {
                field: "prompt_tuning_init_text".into(),
                value: format!("token id {bad}"),
                msg: format!("not below the model's vocabulary size {vocab}"),
            });
        }
        let ids = init_token_ids(ids, v)?;
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, v]), device);
        let rows = model.embed(t).reshape([v, model.hidden_size()]).detach();
        Ok(Self::from_weight(rows))
    }

    /// `SAMPLE_VOCAB` init: the word-embedding rows of `v` token ids drawn uniformly from the
    /// model's vocabulary (backend generator).
    pub fn sample_vocab<M: LanguageModel<B>>(model: &M, v: usize, device: &B::Device) -> Self {
        let vocab = model.vocab_size() as f64;
        let ids = Tensor::<B, 2>::random([1, v], Distribution::Uniform(0.0, vocab), device)
            .floor()
            .clamp(0.0, vocab - 1.0)
            .int();
        let rows = model.embed(ids).reshape([v, model.hidden_size()]).detach();
        Self::from_weight(rows)
    }

    /// Virtual tokens `V`.
    pub fn num_virtual_tokens(&self) -> usize {
        self.embedding.dims()[0]
    }

    /// `[V, hidden]` → `[batch, V, hidden]`: the prompt for each row of a batch (PEFT
    /// `get_prompt`, `prompt_encoder(prompt_tokens)` with tokens `0 … V−1`).
    pub fn forward(&self, batch: usize) -> Tensor<B, 3> {
        self.embedding
            .val()
            .unsqueeze_dim::<3>(0)
            .repeat_dim(0, batch)
    }
}
