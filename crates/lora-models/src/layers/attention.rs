//! Causal scaled dot-product attention (Vaswani et al. 2017, §3.2.1) with an additive mask;
//! grouped-query attention folds the query heads sharing a key head into the row axis. Keys and
//! values of earlier positions (a PEFT prefix, or the tokens already generated) come first on
//! the key axis and are visible to every query.
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData};

/// Additive causal mask over `past` earlier key positions and `seq` new ones: row `r` is query
/// position `q = r mod seq` (absolute position `past + q`); entry `(r, c)` is `0` if
/// `c ≤ past + q`, else `−∞`. `groups` query heads share one key head (grouped-query attention
/// with the query heads folded into the row axis); 1 for GPT-2.
///
/// # Shapes
/// Returns `[1, 1, groups·seq, past + seq]`.
pub fn causal_mask<B: Backend>(
    seq: usize,
    groups: usize,
    past: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let cols = past + seq;
    let mut m = vec![0f32; groups * seq * cols];
    for r in 0..groups * seq {
        let q = past + r % seq;
        for c in (q + 1)..cols {
            m[r * cols + c] = f32::NEG_INFINITY;
        }
    }
    Tensor::from_data(TensorData::new(m, [1, 1, groups * seq, cols]), device)
}

/// Causal scaled dot-product attention, `softmax(q·kᵀ + mask)·v`; `q` is already multiplied by
/// the score scale.
///
/// Runs as burn's attention op with `mask` as its additive bias, so a training backend computes
/// the gradient without keeping the scores or probabilities: the workspace's patched autodiff
/// (vendor/PATCHES.md) keeps `q`, `k`, `v`, the mask, the output and the row log-sum-exp, and
/// recomputes the probabilities in the backward pass (FlashAttention-2, Dao 2023, §3.1.2).
/// Float tensors of the backend's float dtype (f32 in the models: scores and softmax stay f32
/// under bf16 compute). Panics at the first call if `LORA_BURN_ATTENTION` is set to a value
/// other than `recompute`, `recompute:N`, `whole` or `fallback` (vendor/PATCHES.md); the
/// examples check it before they start (`lora_recipes::switches`).
///
/// # Shapes
/// `q` `[batch, kv_heads, groups·seq, head_dim]`; `k`, `v` `[batch, kv_heads, past + seq,
/// head_dim]`; `mask` from [`causal_mask`] with the same `groups` and `past`. Returns
/// `[batch, kv_heads, groups·seq, head_dim]`.
pub fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let options = AttentionModuleOptions {
        scale: Some(1.0),
        softcap: None,
        is_causal: false,
    };
    attention(q, k, v, None, Some(mask), options)
}
