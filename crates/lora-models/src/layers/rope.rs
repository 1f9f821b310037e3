//! Rotary position embeddings (Su et al. 2021, RoFormer), as transformers'
//! `LlamaRotaryEmbedding` (default rope type), `rotate_half` and `apply_rotary_pos_emb`.
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// RoPE tables for one forward pass (the two halves of transformers' `cos`/`sin` are equal, so
/// only one is kept). The query tables carry the attention scale `1/√head_dim` (RoPE is linear,
/// so scaling the rotated query is the same as scaling the scores).
///
/// # Shapes
/// Each table `[1, seq, 1, head_dim/2]`.
pub struct Rope<B: Backend> {
    /// `cos(pos·inv_freq)/√head_dim`, for queries.
    pub cos_q: Tensor<B, 4>,
    /// `sin(pos·inv_freq)/√head_dim`, for queries.
    pub sin_q: Tensor<B, 4>,
    /// `cos(pos·inv_freq)`, for keys.
    pub cos_k: Tensor<B, 4>,
    /// `sin(pos·inv_freq)`, for keys.
    pub sin_k: Tensor<B, 4>,
}

impl<B: Backend> Rope<B> {
    /// Tables for positions `0 … seq−1`; see [`Rope::at`].
    pub fn new(seq: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        Self::at(0, seq, head_dim, theta, device)
    }

    /// Tables for positions `start … start+seq−1` (incremental decoding, or real tokens after
    /// a PEFT prefix): `inv_freq[i] = 1/θ^(2i/d)`, angle `= pos · inv_freq[i]`, computed in f32
    /// as transformers' `LlamaRotaryEmbedding` (default rope type) does. `head_dim` must be even.
    pub fn at(start: usize, seq: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in start..start + seq {
            for &f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let scale = 1.0 / (head_dim as f32).sqrt();
        let t =
            |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [1, seq, 1, half]), device);
        Self {
            cos_q: t(cos.iter().map(|x| x * scale).collect()),
            sin_q: t(sin.iter().map(|x| x * scale).collect()),
            cos_k: t(cos),
            sin_k: t(sin),
        }
    }
}

/// `x·cos + rotate_half(x)·sin` with `rotate_half([x1, x2]) = [−x2, x1]`.
///
/// # Shapes
/// `x` `[batch, seq, heads, head_dim]`, tables `[1, seq, 1, head_dim/2]` → same as `x`.
pub fn apply_rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let o1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let o2 = x2 * cos.clone() + x1 * sin.clone();
    Tensor::cat(vec![o1, o2], 3)
}
