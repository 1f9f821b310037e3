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
//!
//! Both passes run over groups of whole batch entries, so that one group's score-sized
//! tensors hold at most 2²⁶ elements (256 MiB in f32; GPT-2 at 8 × 1024: groups of 5 and 3
//! entries); the outputs and gradients of the groups are concatenated along the batch.
//!
//! `LORA_BURN_ATTENTION` (read once): `recompute` (the default), `recompute:N` (groups of at
//! most N score elements), `whole` (the same without the batch groups), or `fallback` (burn's
//! decomposed path everywhere), for A/B runs.

use alloc::{vec, vec::Vec};

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
use burn_std::Slice;

/// What `LORA_BURN_ATTENTION` asks for (no_std builds have no environment: always the default).
#[derive(Clone, Copy, PartialEq)]
#[cfg_attr(not(feature = "std"), allow(dead_code))]
enum Mode {
    /// The recomputing op over batch groups of at most this many score elements (2²⁶ by
    /// default; `recompute:N` for another bound, as the group test uses).
    Recompute(usize),
    /// The recomputing op over the whole batch at once.
    Whole,
    /// burn's decomposed attention.
    Fallback,
}

/// `LORA_BURN_ATTENTION`, read once; any value other than `recompute` (or unset),
/// `recompute:N`, `whole` or `fallback` panics with this list.
#[cfg(feature = "std")]
fn mode() -> Mode {
    static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();
    // The examples check the value first (crates/lora-recipes/src/switches.rs): keep both in step.
    *MODE.get_or_init(|| match std::env::var("LORA_BURN_ATTENTION").as_deref() {
        Err(_) | Ok("recompute") => Mode::Recompute(GROUP_SCORE_ELEMENTS),
        Ok("whole") => Mode::Whole,
        Ok("fallback") => Mode::Fallback,
        Ok(other) => match other.strip_prefix("recompute:").map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => Mode::Recompute(n),
            _ => panic!(
                "LORA_BURN_ATTENTION={other:?}: expected recompute (or unset), recompute:N \
                 (N ≥ 1 score elements a group), whole or fallback"
            ),
        },
    })
}

#[cfg(not(feature = "std"))]
fn mode() -> Mode {
    Mode::Recompute(GROUP_SCORE_ELEMENTS)
}

/// Most elements one group's score tensor may hold: 2²⁶.
const GROUP_SCORE_ELEMENTS: usize = 1 << 26;

/// The batch ranges the passes run over: groups of whole entries whose scores
/// `[group, heads, seq_q, seq_k]` hold at most [`GROUP_SCORE_ELEMENTS`] (or `recompute:N`'s N;
/// at least one entry a group); one range for the whole batch with `LORA_BURN_ATTENTION=whole`.
fn batch_groups(query: [usize; 4], seq_k: usize) -> Vec<core::ops::Range<usize>> {
    let [batch, heads, seq_q, _] = query;
    if batch == 0 {
        return vec![0..0];
    }
    let per_entry = (heads * seq_q * seq_k).max(1);
    let group = match mode() {
        Mode::Recompute(n) => (n / per_entry).clamp(1, batch.max(1)),
        _ => batch.max(1),
    };
    (0..batch)
        .step_by(group)
        .map(|start| start..(start + group).min(batch))
        .collect()
}

/// The slices that take entries `r` of a tensor's batch (first) dim, or `None` when the tensor
/// is taken whole: `r` covers the batch, or the tensor is broadcast over it (first dim 1
/// while the batch is larger).
fn batch_slice(first_dim: usize, r: &core::ops::Range<usize>, batch: usize) -> Option<[Slice; 4]> {
    (first_dim == batch && !(r.start == 0 && r.end == batch)).then(|| {
        [
            Slice::from(r.clone()),
            Slice::full(),
            Slice::full(),
            Slice::full(),
        ]
    })
}

/// Entries `r` of a float tensor's batch dim ([`batch_slice`]).
fn rows<B: Backend>(
    t: &FloatTensor<B>,
    r: &core::ops::Range<usize>,
    batch: usize,
) -> FloatTensor<B> {
    match batch_slice(t.shape().dims::<4>()[0], r, batch) {
        Some(s) => B::float_slice(t.clone(), &s),
        None => t.clone(),
    }
}

/// [`rows`] for a bool mask.
fn mask_rows<B: Backend>(
    t: &BoolTensor<B>,
    r: &core::ops::Range<usize>,
    batch: usize,
) -> BoolTensor<B> {
    match batch_slice(t.shape().dims::<4>()[0], r, batch) {
        Some(s) => B::bool_slice(t.clone(), &s),
        None => t.clone(),
    }
}

/// The tensors of each group concatenated along the batch (no copy for a single group).
fn cat_rows<B: Backend>(mut parts: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        B::float_cat(parts, 0)
    }
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
    let dq = query.shape().dims::<4>();
    let seq_k = key.shape().dims::<4>()[2];
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for r in batch_groups(dq, seq_k) {
        let (o, l) = forward_group::<B>(
            rows::<B>(&query, &r, dq[0]),
            rows::<B>(&key, &r, dq[0]),
            rows::<B>(&value, &r, dq[0]),
            mask.as_ref().map(|m| mask_rows::<B>(m, &r, dq[0])),
            bias.as_ref().map(|b| rows::<B>(b, &r, dq[0])),
            scale,
        );
        outs.push(o);
        lses.push(l);
    }
    (cat_rows::<B>(outs), cat_rows::<B>(lses))
}

/// [`forward`] of one batch group.
fn forward_group<B: Backend>(
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
        let need_qk = node_q.is_some() || node_k.is_some();
        let dq = query.shape().dims::<4>();
        let seq_k = key.shape().dims::<4>()[2];
        let (mut gq, mut gk, mut gv) = (Vec::new(), Vec::new(), Vec::new());
        for r in batch_groups(dq, seq_k) {
            let at = |t: &FloatTensor<B>| rows::<B>(t, &r, dq[0]);
            let (q, k, v) = (at(&query), at(&key), at(&value));
            let s = scores::<B>(
                q.clone(),
                k.clone(),
                mask.as_ref().map(|m| mask_rows::<B>(m, &r, dq[0])),
                bias.as_ref().map(|b| at(b)),
                scale,
            );
            let p = B::float_exp(B::float_sub(s, at(&lse)));
            let g = at(&grad_out);
            if node_v.is_some() {
                gv.push(B::float_matmul(B::float_transpose(p.clone()), g.clone()));
            }
            if !need_qk {
                continue;
            }
            let dp = B::float_matmul(g.clone(), B::float_transpose(v));
            let delta = B::float_sum_dim(B::float_mul(g, at(&out)), 3);
            let mut ds = B::float_mul(p, B::float_sub(dp, delta));
            if scale != 1.0 {
                ds = B::float_mul_scalar(ds, scale.into());
            }
            if node_q.is_some() {
                gq.push(B::float_matmul(ds.clone(), k));
            }
            if node_k.is_some() {
                gk.push(B::float_matmul(B::float_transpose(ds), q));
            }
        }
        for (node, parts) in [(node_q, gq), (node_k, gk), (node_v, gv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, cat_rows::<B>(parts));
            }
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
        || mode() == Mode::Fallback
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
