//! Evaluation on held-out batches: classification accuracy and language-model loss, with
//! progress over the batches on stderr (`lora_train::Progress`: a bar on a terminal, a line
//! about every 10% in a log).

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use lora_models::classify::SequenceClassifier;
use lora_models::LanguageModel;
// The IMDB pipeline's batch type (one import site; the crate that holds it may change).
use lora_data::imdb::Batch;
use lora_train::Progress;

use crate::lm_loss::{masked_nll_sum, next_token_mask};
use std::time::Instant;

/// Accuracy of `m` on `batches` (argmax of the logits against each batch's labels) and the
/// evaluation speed in real tokens per second, `(accuracy in [0, 1], tokens/s)`.
/// Shows its progress over the batches.
pub fn accuracy<B: Backend, M: LanguageModel<B>>(
    m: &SequenceClassifier<B, M>,
    batches: &[Batch],
    device: &B::Device,
) -> (f64, f64) {
    let t = Instant::now();
    let mut correct = 0usize;
    let mut n = 0usize;
    let mut tokens = 0usize;
    let mut progress = Progress::new("evaluation batch", batches.len());
    for b in batches {
        let (ids, _) = b.to_tensors::<B>(device);
        let logits = m.forward(ids, &b.lengths);
        let pred: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap_or_default();
        correct += pred.iter().zip(&b.labels).filter(|(p, l)| *p == *l).count();
        n += b.batch;
        tokens += b.num_tokens();
        progress.inc(1);
    }
    progress.finish();
    (
        correct as f64 / n as f64,
        tokens as f64 / t.elapsed().as_secs_f64(),
    )
}

/// Summed next-token negative log-likelihood over the real tokens of a right-padded batch, and
/// the number of predicted tokens (Σ (length − 1)).
///
/// # Shapes
/// Logits `[batch, seq, vocab]`; position `t` predicts token `t + 1`, counted when
/// `t + 1 < length`. Returns a `[1]` tensor.
pub fn lm_loss_sum<B: Backend, M: LanguageModel<B>>(
    m: &M,
    b: &Batch,
    device: &B::Device,
) -> (Tensor<B, 1>, usize) {
    let (ids, _) = b.to_tensors::<B>(device);
    let logits = m.forward(ids.clone()); // [b, s, v]
    let [bs, s, v] = logits.dims();
    let (mask, count) = next_token_mask::<B>(b, device);
    let logits = logits.slice([0..bs, 0..s - 1, 0..v]);
    (
        masked_nll_sum(logits, ids.slice([0..bs, 1..s]), mask),
        count,
    )
}

/// Mean next-token negative log-likelihood of `m` on `batches` in nats per predicted token,
/// `Σ nll / Σ predicted tokens` ([`lm_loss_sum`]; transformers' `eval_loss` of a causal LM).
/// Shows its progress over the batches.
pub fn mean_nll<B: Backend, M: LanguageModel<B>>(
    m: &M,
    batches: &[Batch],
    device: &B::Device,
) -> f64 {
    let (mut nll, mut n) = (0.0f64, 0usize);
    let mut progress = Progress::new("evaluation batch", batches.len());
    for b in batches {
        let (sum, count) = lm_loss_sum::<B, _>(m, b, device);
        nll += sum.into_scalar().elem::<f64>();
        n += count;
        progress.inc(1);
    }
    progress.finish();
    nll / n.max(1) as f64
}

/// Perplexity of `m` on `batches`: `exp(`[`mean_nll`]`)`.
pub fn perplexity<B: Backend, M: LanguageModel<B>>(
    m: &M,
    batches: &[Batch],
    device: &B::Device,
) -> f64 {
    mean_nll(m, batches, device).exp()
}
