//! lora-burn patch (vendor/PATCHES.md): scaled dot-product attention whose backward keeps no
//! score-sized tensor between the forward and the backward pass.
//!
//! burn 0.21 differentiates attention through its decomposed fallback, so autodiff keeps the
//! scores, the masked scores and the softmax output of every layer until the backward pass:
//! four `[batch, heads, seq_q, seq_k]` f32 tensors a layer (1.5 GiB a layer for GPT-2 at
//! 8 × 1024). This op keeps only what FlashAttention's backward needs (Dao et al. 2022,
//! "FlashAttention", Algorithm 2; Dao 2023, "FlashAttention-2", §3.1.2): the inputs `q`, `k`,
//! `v`, the output `o` and the row log-sum-exp `lse` (`[batch, heads, seq_q, 1]`), and
//! recomputes the probabilities in the backward pass as `p = exp(s − lse)`:
//!
//! - `dv = pᵀ·do`, `dp = do·vᵀ`, `δ = rowsum(do ∘ o)`, `ds = p ∘ (dp − δ)`,
//! - `dq = scale · ds·k`, `dk = scale · dsᵀ·q`.
//!
//! The score-sized tensors now live only inside one layer's forward or backward. The price is
//! one more `q·kᵀ` product and one `exp` per layer in the backward pass. A bool mask and a
//! constant additive bias are applied exactly as the fallback applies them; a softcap,
//! `is_causal` (callers pass their causal mask as a bias or a bool mask), a bias that needs its
//! own gradient, broadcast batch or head dims, and inputs narrower than f32 (the log-sum-exp is
//! kept in the input dtype) still take the fallback.
//! `LORA_BURN_ATTENTION=fallback` (read once) takes the fallback everywhere, for A/B runs.

use crate::Autodiff;
use crate::checkpoint::base::Checkpointer;
use crate::checkpoint::strategy::CheckpointStrategy;
use crate::grads::Gradients;
use crate::ops::{Backward, Ops, OpsKind};

use burn_backend::Backend;
use burn_backend::DType;
use burn_backend::TensorMetadata;
use burn_backend::ops::AttentionModuleOptions;
use burn_backend::ops::attention::attention_fallback;
use burn_backend::tensor::{BoolTensor, FloatTensor};

/// Whether `LORA_BURN_ATTENTION=fallback` asks for burn's decomposed attention; any other value
/// than `fallback` or `recompute` (the default) panics with this list.
#[cfg(feature = "std")]
fn use_fallback() -> bool {
    static FALLBACK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FALLBACK.get_or_init(|| match std::env::var("LORA_BURN_ATTENTION").as_deref() {
        Err(_) | Ok("recompute") => false,
        Ok("fallback") => true,
        Ok(other) => {
            panic!("LORA_BURN_ATTENTION={other:?}: expected recompute (or unset) or fallback")
        }
    })
}

#[cfg(not(feature = "std"))]
fn use_fallback() -> bool {
    false
}

/// The score scale: `options.scale`, else `1/√head_dim`.
fn scale_of<B: Backend>(query: &FloatTensor<B>, options: &AttentionModuleOptions) -> f64 {
    let dims = query.shape().dims::<4>();
    options
        .scale
        .unwrap_or_else(|| 1.0 / (dims[3] as f64).sqrt())
}

/// Masked, scaled scores `s = scale·q·kᵀ` with the bool mask and the bias applied in the
/// fallback's order. `[batch, heads, seq_q, seq_k]`.
fn scores<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    bias: Option<FloatTensor<B>>,
    scale: f64,
) -> FloatTensor<B> {
    let mut s = B::float_matmul(query, B::float_transpose(key));
    if scale != 1.0 {
        s = B::float_mul_scalar(s, scale.into());
    }
    if let Some(mask) = mask {
        s = B::float_mask_fill(s, mask, f32::NEG_INFINITY.into());
    }
    if let Some(bias) = bias {
        s = B::float_add(s, bias);
    }
    s
}

/// Forward pass: the output `[batch, heads, seq_q, val_dim]` and the row log-sum-exp
/// `[batch, heads, seq_q, 1]`. Fully masked rows give a zero output, as in the fallback: the
/// row maximum is clamped to the dtype's lowest finite value and the row sum to its smallest
/// positive normal value.
fn forward<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    value: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    bias: Option<FloatTensor<B>>,
    scale: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = scores::<B>(query, key, mask, bias, scale);
    let finfo = s.dtype().finfo().expect("float tensor");
    let max = B::float_clamp_min(B::float_max_dim(s.clone(), 3), finfo.min.into());
    let e = B::float_exp(B::float_sub(s, max.clone()));
    let sum = B::float_clamp_min(B::float_sum_dim(e.clone(), 3), finfo.min_positive.into());
    // Normalise the `[.., val_dim]` output rather than the `[.., seq_k]` probabilities.
    let out = B::float_div(B::float_matmul(e, value), sum.clone());
    let lse = B::float_add(max, B::float_log(sum));
    (out, lse)
}

#[derive(Debug)]
struct RecomputeAttention;

/// What the backward pass needs: `q`, `k`, `v`, the mask, the constant bias, the output, the
/// log-sum-exp and the scale.
type State<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    Option<BoolTensor<B>>,
    Option<FloatTensor<B>>,
    FloatTensor<B>,
    FloatTensor<B>,
    f64,
);

impl<B: Backend> Backward<B, 3> for RecomputeAttention {
    type State = State<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad_out = grads.consume::<B>(&ops.node);
        let (query, key, value, mask, bias, out, lse, scale) = ops.state;

        let s = scores::<B>(query.clone(), key.clone(), mask, bias, scale);
        let p = B::float_exp(B::float_sub(s, lse));

        if let Some(node) = node_v {
            let grad_v = B::float_matmul(B::float_transpose(p.clone()), grad_out.clone());
            grads.register::<B>(node.id, grad_v);
        }
        if node_q.is_none() && node_k.is_none() {
            return;
        }
        let dp = B::float_matmul(grad_out.clone(), B::float_transpose(value));
        let delta = B::float_sum_dim(B::float_mul(grad_out, out), 3);
        let mut ds = B::float_mul(p, B::float_sub(dp, delta));
        if scale != 1.0 {
            ds = B::float_mul_scalar(ds, scale.into());
        }
        if let Some(node) = node_q {
            let grad_q = B::float_matmul(ds.clone(), key);
            grads.register::<B>(node.id, grad_q);
        }
        if let Some(node) = node_k {
            let grad_k = B::float_matmul(B::float_transpose(ds), query);
            grads.register::<B>(node.id, grad_k);
        }
    }
}

/// `ModuleOps::attention` for the autodiff backend: the recomputing op above, or burn's
/// fallback for a softcap, `is_causal`, a bias that needs a gradient, `q`, `k`, `v` whose batch
/// or head dims differ (broadcast), inputs other than f32 / f64, or
/// `LORA_BURN_ATTENTION=fallback`.
///
/// # Shapes
/// `query` `[batch, heads, seq_q, head_dim]`; `key` `[batch, heads, seq_k, head_dim]`; `value`
/// `[batch, heads, seq_k, val_dim]`; `mask` and `attn_bias` broadcastable to
/// `[batch, heads, seq_q, seq_k]`. Returns `[batch, heads, seq_q, val_dim]`.
pub(crate) fn attention<B: Backend, C: CheckpointStrategy>(
    query: FloatTensor<Autodiff<B, C>>,
    key: FloatTensor<Autodiff<B, C>>,
    value: FloatTensor<Autodiff<B, C>>,
    mask: Option<BoolTensor<Autodiff<B, C>>>,
    attn_bias: Option<FloatTensor<Autodiff<B, C>>>,
    options: AttentionModuleOptions,
) -> FloatTensor<Autodiff<B, C>> {
    let bias_tracked = attn_bias
        .as_ref()
        .is_some_and(|b| !b.node.requirement.is_none());
    // The backward's products assume one batch and head layout for q, k and v (no broadcast),
    // and the log-sum-exp kept in the input dtype is exact enough only in f32 or f64.
    let dims = |t: &FloatTensor<B>| t.shape().dims::<4>();
    let (dq, dk, dv) = (
        dims(&query.primitive),
        dims(&key.primitive),
        dims(&value.primitive),
    );
    let same_layout = dq[..2] == dk[..2] && dk[..2] == dv[..2];
    let wide = matches!(query.primitive.dtype(), DType::F32 | DType::F64);
    if options.softcap.is_some()
        || options.is_causal
        || bias_tracked
        || !same_layout
        || !wide
        || use_fallback()
    {
        return attention_fallback::<Autodiff<B, C>>(query, key, value, mask, attn_bias, options);
    }
    let scale = scale_of::<B>(&query.primitive, &options);
    let bias = attn_bias.map(|b| b.primitive);
    match RecomputeAttention
        .prepare::<C>([query.node.clone(), key.node.clone(), value.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, lse) = forward::<B>(
                query.primitive.clone(),
                key.primitive.clone(),
                value.primitive.clone(),
                mask.clone(),
                bias.clone(),
                scale,
            );
            let state = (
                query.primitive,
                key.primitive,
                value.primitive,
                mask,
                bias,
                out.clone(),
                lse,
                scale,
            );
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = forward::<B>(
                query.primitive,
                key.primitive,
                value.primitive,
                mask,
                bias,
                scale,
            );
            prep.finish(out)
        }
    }
}
