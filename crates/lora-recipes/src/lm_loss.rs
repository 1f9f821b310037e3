//! The next-token training loss of a causal LM, by default without the full logits.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use lora_data::imdb::Batch;
use lora_models::LanguageModel;
use lora_train::{default_chunk_rows, linear_cross_entropy_sum};

/// How the next-token cross-entropy is computed in training.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum LmLoss {
    /// Row chunks of the LM head ([`linear_cross_entropy_sum`], at most 2²⁶ logits at a
    /// time) when the model exposes its head as one weight
    /// ([`LanguageModel::lm_head_weight`]); the full logits otherwise.
    #[default]
    Chunked,
    /// The whole `[batch, seq, vocab]` logits, `log_softmax` and `gather` under autodiff.
    Full,
}

/// Summed next-token cross-entropy: `Σ mask[i, t] · −log softmax(logits[i, t])[ids[i, t+1]]`
/// over `t < seq − 1`, in nats. Divide by `Σ mask` for the mean.
///
/// # Shapes
/// `ids` `[batch, seq]` Int (seq ≥ 2), `mask` `[batch, seq − 1]` float (1 for a counted
/// position) → `[1]`.
///
/// # Errors
/// An empty batch, `seq < 2`, a `mask` of another shape, or the chunked loss's own errors, as
/// text.
pub fn next_token_loss_sum<B: AutodiffBackend, M: LanguageModel<B>>(
    m: &M,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    how: LmLoss,
) -> Result<Tensor<B, 1>, String> {
    let [b, s] = ids.dims();
    if b == 0 || s < 2 || mask.dims() != [b, s - 1] {
        return Err(format!(
            "next-token loss: ids [{b}, {s}] and mask {:?}; expected batch ≥ 1, seq ≥ 2 and mask \
             [{b}, {}]",
            mask.dims(),
            s.saturating_sub(1)
        ));
    }
    let hidden = m.hidden_states(ids.clone());
    let d = hidden.dims()[2];
    let targets = ids.slice([0..b, 1..s]);
    match (how, m.lm_head_weight()) {
        (LmLoss::Chunked, Some(w)) if w.dtype() == hidden.dtype() => {
            let rows = b * (s - 1);
            let h = hidden.slice([0..b, 0..s - 1, 0..d]).reshape([rows, d]);
            let chunk = default_chunk_rows(w.dims()[0]);
            linear_cross_entropy_sum(h, w, targets.reshape([rows]), mask.reshape([rows]), chunk)
                .map_err(|e| e.to_string())
        }
        _ => {
            let logits = m.lm_logits(hidden.slice([0..b, 0..s - 1, 0..d]));
            Ok(masked_nll_sum(logits, targets, mask))
        }
    }
}

/// `Σ mask[i, t] · −log softmax(logits[i, t])[targets[i, t]]`: the full-logits form of
/// [`next_token_loss_sum`], on any backend.
///
/// # Shapes
/// `logits` `[batch, rows, vocab]`, `targets` `[batch, rows]` Int, `mask` `[batch, rows]` →
/// `[1]`.
pub fn masked_nll_sum<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [b, rows, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    let picked = logp
        .gather(2, targets.reshape([b, rows, 1]))
        .reshape([b, rows]);
    (picked * mask).sum().neg()
}

/// The mask of [`next_token_loss_sum`] for a right-padded batch: position `t` of row `i`
/// counts when `t + 1 < lengths[i]`. Returns the f32 mask `[batch, seq − 1]` (1 or 0) and the
/// number of counted positions.
pub fn next_token_mask<B: Backend>(b: &Batch, device: &B::Device) -> (Tensor<B, 2>, usize) {
    let s = b.seq.saturating_sub(1);
    let mask: Vec<f32> = (0..b.batch)
        .flat_map(|i| (0..s).map(move |t| if t + 1 < b.lengths[i] { 1.0 } else { 0.0 }))
        .collect();
    let count = b.lengths.iter().map(|l| l.saturating_sub(1)).sum();
    (
        Tensor::from_data(TensorData::new(mask, [b.batch, s]), device),
        count,
    )
}
