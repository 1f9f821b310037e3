//! Cross-entropy of a linear head over a large vocabulary, computed in row chunks so that the
//! `[rows, vocab]` logits and their gradient never exist at once.
//!
//! Source: the "fused linear cross-entropy" of Liger-Kernel (`ops/fused_linear_cross_entropy.py`:
//! chunked over rows, the input gradient formed during the forward) and Wijmans et al. 2024,
//! *Cut Your Losses in Large-Vocabulary Language Models* §3 (the logits are not materialised).

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, IndexingUpdateOp, Int, Tensor};

use crate::TrainError;

/// Logit elements one chunk may hold: 2²⁶ (256 MiB in f32), whatever the vocabulary.
const CHUNK_ELEMENTS: usize = 1 << 26;

/// Rows of one chunk for a vocabulary of `vocab` entries: as many as keep a chunk's logits
/// within 2²⁶ elements (256 MiB in f32), rounded down to a multiple of 64 when there are at
/// least 64, and at least 1.
pub fn default_chunk_rows(vocab: usize) -> usize {
    let rows = CHUNK_ELEMENTS / vocab.max(1);
    if rows >= 64 {
        rows / 64 * 64
    } else {
        rows.max(1)
    }
}

/// `Σᵢ mᵢ · (logsumexp(hᵢ·Wᵀ) − (hᵢ·Wᵀ)[yᵢ])`: the summed, weighted next-token cross-entropy
/// of the linear head `W`, computed `chunk_rows` rows at a time.
///
/// Each chunk's logits live only while that chunk is processed: the forward forms the
/// gradients with respect to `hidden` (`(softmax − onehot(y))·m·W`) and, when `weight` is
/// tracked, with respect to `weight`, and returns a loss whose backward hands exactly those
/// gradients (times the upstream gradient) to `hidden` and `weight`. The work is the same as
/// the full-logits path (one product for the logits, one for each gradient); the memory is
/// a few `chunk_rows × vocab` f32 tensors alive at once (logits, their exponentials and the
/// logits' gradient: about 1 GiB at the default chunk) instead of several `rows × vocab` ones.
/// The gradient of `weight` is formed only when it is a trainable parameter's own value
/// (`Tensor::is_require_grad`); pass a frozen head, or a trainable one as its parameter's value
/// (not transposed or cast: a weight computed from a parameter would get no gradient).
/// `row_weights` gets none. The gradient is formed for
/// a loss that is used linearly afterwards (scaled, divided by a token count, summed with
/// other terms), which is every use in training; a second derivative is not available.
///
/// Divide by `Σ mᵢ` for the mean; with `mᵢ ∈ {0, 1}` masked rows count for nothing.
/// `hidden` and `weight` must both be f32 (or both f64); the logits are reduced in f32.
///
/// # Shapes
/// - `hidden` `[rows, d]` float, `weight` `[vocab, d]` float (the head `logits = hidden·Wᵀ`,
///   no bias), `targets` `[rows]` Int in `[0, vocab)`, `row_weights` `[rows]` float.
/// - Returns `[1]` (nats, summed over rows).
///
/// Targets outside `[0, vocab)` are not checked here (that would read them back to the host);
/// what `gather` does with them depends on the backend.
///
/// # Errors
/// [`TrainError::InvalidConfig`] when there are no rows, the shapes disagree (naming each
/// shape), `chunk_rows` is 0, or the dtypes are not both f32 (or both f64).
pub fn linear_cross_entropy_sum<B: AutodiffBackend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    row_weights: Tensor<B, 1>,
    chunk_rows: usize,
) -> Result<Tensor<B, 1>, TrainError> {
    let [rows, d] = hidden.dims();
    let dw = weight.dims()[1];
    let (dt, wt) = (hidden.dtype(), weight.dtype());
    if dt != wt || !matches!(dt, DType::F32 | DType::F64) {
        return Err(TrainError::InvalidConfig(format!(
            "linear cross-entropy: hidden is {dt:?} and weight {wt:?}; expected both f32 (or \
             both f64)"
        )));
    }
    if rows == 0
        || dw != d
        || targets.dims()[0] != rows
        || row_weights.dims()[0] != rows
        || chunk_rows == 0
    {
        return Err(TrainError::InvalidConfig(format!(
            "linear cross-entropy: hidden {:?}, weight {:?}, targets {:?}, row_weights {:?}, \
             chunk_rows {chunk_rows}; expected hidden [rows ≥ 1, d], weight [vocab, d], targets \
             [rows], row_weights [rows] and chunk_rows ≥ 1",
            hidden.dims(),
            weight.dims(),
            targets.dims(),
            row_weights.dims()
        )));
    }
    // `is_require_grad` is true only for a trainable leaf, not for a tensor computed from one
    // (the hidden states always are): the hidden gradient is always formed.
    let track_weight = weight.is_require_grad();
    let parts = chunked::<B::InnerBackend>(
        hidden.clone().inner(),
        weight.clone().inner(),
        targets.inner(),
        row_weights.inner(),
        chunk_rows,
        track_weight,
    );
    // `x − detach(x)` is exactly zero, so the value is the loss; its gradient is the identity,
    // so the backward gives `hidden` (and `weight`) the gradients formed above.
    let mut loss = Tensor::<B, 1>::from_inner(parts.loss)
        + (hidden.clone() - hidden.detach())
            .mul(Tensor::from_inner(parts.grad_hidden))
            .sum();
    if let Some(gw) = parts.grad_weight {
        loss = loss
            + (weight.clone() - weight.detach())
                .mul(Tensor::from_inner(gw))
                .sum();
    }
    Ok(loss)
}

/// The loss and its gradients, computed without autodiff.
struct Parts<B: Backend> {
    loss: Tensor<B, 1>,
    grad_hidden: Tensor<B, 2>,
    grad_weight: Option<Tensor<B, 2>>,
}

/// The chunk loop of [`linear_cross_entropy_sum`] on a backend without autodiff.
fn chunked<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    row_weights: Tensor<B, 1>,
    chunk_rows: usize,
    with_weight_grad: bool,
) -> Parts<B> {
    let rows = hidden.dims()[0];
    let device = hidden.device();
    let weight_t = weight.clone().transpose();
    let mut loss = Tensor::<B, 1>::zeros([1], &device);
    let mut grad_hidden = Vec::with_capacity(rows.div_ceil(chunk_rows));
    let mut grad_weight: Option<Tensor<B, 2>> = None;
    for start in (0..rows).step_by(chunk_rows) {
        let n = chunk_rows.min(rows - start);
        let h = hidden.clone().narrow(0, start, n);
        let y = targets.clone().narrow(0, start, n).reshape([n, 1]);
        let m = row_weights.clone().narrow(0, start, n).reshape([n, 1]);
        let logits = h.clone().matmul(weight_t.clone()).cast(FloatDType::F32); // [n, vocab]
        let shifted = logits.clone() - logits.max_dim(1);
        let e = shifted.clone().exp();
        let z = e.clone().sum_dim(1); // [n, 1]
        let nll = z.clone().log() - shifted.gather(1, y.clone()); // [n, 1]
        loss = loss + (nll * m.clone()).sum();
        // d loss / d logits = m · (softmax − onehot(y)).
        let dlogits = (e * (m.clone() / z)).scatter(1, y, m.neg(), IndexingUpdateOp::Add);
        let dlogits = dlogits.cast(FloatDType::from(h.dtype()));
        if with_weight_grad {
            let gw = dlogits.clone().transpose().matmul(h);
            grad_weight = Some(match grad_weight {
                Some(acc) => acc + gw,
                None => gw,
            });
        }
        grad_hidden.push(dlogits.matmul(weight.clone()));
    }
    Parts {
        loss,
        grad_hidden: Tensor::cat(grad_hidden, 0),
        grad_weight,
    }
}
