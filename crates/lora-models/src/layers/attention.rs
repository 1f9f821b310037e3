//! Causal scaled dot-product attention (Vaswani et al. 2017, §3.2.1) with an additive mask;
//! grouped-query attention folds the query heads sharing a key head into the row axis.
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Additive causal mask: row `r` is query position `r mod seq`; entry `(r, c)` is `0` if
/// `c ≤ r mod seq`, else `−∞`. `groups` query heads share one key head (grouped-query attention
/// with the query heads folded into the row axis); 1 for GPT-2.
///
/// # Shapes
/// Returns `[1, 1, groups·seq, seq]`.
pub fn causal_mask<B: Backend>(seq: usize, groups: usize, device: &B::Device) -> Tensor<B, 4> {
    let mut m = vec![0f32; groups * seq * seq];
    for r in 0..groups * seq {
        let q = r % seq;
        for c in (q + 1)..seq {
            m[r * seq + c] = f32::NEG_INFINITY;
        }
    }
    Tensor::from_data(TensorData::new(m, [1, 1, groups * seq, seq]), device)
}

/// Causal scaled dot-product attention, `softmax(q·kᵀ + mask)·v`; `q` is already multiplied by
/// the score scale.
///
/// # Shapes
/// `q` `[batch, kv_heads, groups·seq, head_dim]`; `k`, `v` `[batch, kv_heads, seq, head_dim]`;
/// `mask` from [`causal_mask`] with the same `groups`. Returns
/// `[batch, kv_heads, groups·seq, head_dim]`.
pub fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let scores = q.matmul(k.swap_dims(2, 3)) + mask;
    softmax(scores, 3).matmul(v)
}
