//! The model FLOP count of one training step (the numerator of MFU).

use lora_models::gpt2::Gpt2Config;

/// Model FLOPs of one training step of GPT-2 with LoRA (`benches/peft_bench.py` uses the same
/// formula). With `T = batch·seq`, `L` layers, width `d`, MLP width `f`, vocabulary `V`,
/// `N = L·(3d² + d² + 2·d·f)` block linear weights and `V·d` the tied LM head:
///
/// ```text
/// forward  = 2·T·(N + V·d)  +  4·L·T·seq·d  +  Σ_adapted 2·T·r·(d_in + d_out)
/// backward = 2·T·(N + V·d)  +  8·L·T·seq·d  +  Σ_adapted 4·T·r·(d_in + d_out)
/// ```
///
/// Backward computes activation gradients through every dense matmul (the same FLOPs as the
/// forward) but no weight gradient for the frozen base; attention's two matmuls have only
/// activation operands, so their backward is twice their forward (attention counted on the full
/// `seq×seq` square, no causal discount); each adapter matmul gets activation and weight
/// gradients. Element-wise work (softmax, LayerNorm, GELU, AdamW, NF4 dequantization) is not
/// counted. For GPT-2 124M at 8×1024 this is 4.99 (c_attn) to 5.03 (all) TFLOP a step.
///
/// `adapted` lists the `(d_in, d_out)` of every layer with an adapter of rank `r`.
pub fn train_flops(
    c: &Gpt2Config,
    batch: usize,
    seq: usize,
    r: usize,
    adapted: &[(usize, usize)],
) -> f64 {
    let t = (batch * seq) as f64;
    let (l, d, f, v) = (
        c.n_layer as f64,
        c.n_embd as f64,
        c.n_inner as f64,
        c.vocab_size as f64,
    );
    let n = l * (3.0 * d * d + d * d + 2.0 * d * f);
    let dense = 2.0 * t * (n + v * d);
    let attn = 4.0 * l * t * seq as f64 * d;
    let lora: f64 = adapted
        .iter()
        .map(|&(i, o)| 2.0 * t * r as f64 * (i + o) as f64)
        .sum();
    2.0 * dense + 3.0 * attn + 3.0 * lora
}
