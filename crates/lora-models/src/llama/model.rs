//! The Llama modules (transformers `modeling_llama.py`): attention with RoPE and grouped-query
//! attention, SwiGLU MLP, decoder layer and the causal LM.
use super::config::LlamaConfig;
use super::names::{LayerLinear, LayerNormSlot};
use crate::layers::{
    apply_rope, causal_attention, causal_mask, swiglu, KvCache, LayerKv, RmsNorm, Rope,
};
use crate::{AttentionShape, LanguageModel, ModelError};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use lora_core::{BottleneckAdapter, LoraLinear};

/// Self-attention (`LlamaAttention`) with RoPE and grouped-query attention; no biases.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    /// `q_proj` `[hidden, heads·head_dim]`.
    pub q_proj: LoraLinear<B>,
    /// `k_proj` `[hidden, kv_heads·head_dim]`.
    pub k_proj: LoraLinear<B>,
    /// `v_proj` `[hidden, kv_heads·head_dim]`.
    pub v_proj: LoraLinear<B>,
    /// `o_proj` `[heads·head_dim, hidden]`.
    pub o_proj: LoraLinear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head size.
    pub head_dim: usize,
}

impl<B: Backend> LlamaAttention<B> {
    /// `x` `[batch, seq, hidden]` → `[batch, seq, hidden]`, and this layer's keys and values
    /// over `past` followed by the new positions (the new keys rotated, `past`'s as given);
    /// `rope` for the new positions, `mask` from [`causal_mask`] with
    /// `groups = num_heads / num_kv_heads` and `past`'s length.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: Tensor<B, 4>,
        past: Option<LayerKv<B>>,
    ) -> (Tensor<B, 3>, LayerKv<B>) {
        let [b, s, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x.clone()).reshape([b, s, h, hd]);
        let k = self.k_proj.forward(x.clone()).reshape([b, s, kvh, hd]);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, s, kvh, hd])
            .swap_dims(1, 2);
        // Query heads kv·g … kv·g+g−1 share key head kv (transformers `repeat_kv`): fold the g
        // heads into the row axis instead of copying keys and values.
        let q = apply_rope(q, &rope.cos_q, &rope.sin_q)
            .swap_dims(1, 2)
            .reshape([b, kvh, (h / kvh) * s, hd]);
        let k = apply_rope(k, &rope.cos_k, &rope.sin_k).swap_dims(1, 2);
        let new = LayerKv { key: k, value: v };
        let kv = match past {
            Some(p) => p.append(new),
            None => new,
        };
        let ctx = causal_attention(q, kv.key.clone(), kv.value.clone(), mask)
            .reshape([b, h, s, hd])
            .swap_dims(1, 2)
            .reshape([b, s, h * hd]);
        (self.o_proj.forward(ctx), kv)
    }
}

/// SwiGLU MLP (`LlamaMLP`): `down_proj(silu(gate_proj(x)) · up_proj(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    /// `gate_proj` `[hidden, intermediate]`.
    pub gate_proj: LoraLinear<B>,
    /// `up_proj` `[hidden, intermediate]`.
    pub up_proj: LoraLinear<B>,
    /// `down_proj` `[intermediate, hidden]`.
    pub down_proj: LoraLinear<B>,
}

impl<B: Backend> LlamaMlp<B> {
    /// `x` `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward(x.clone());
        self.down_proj
            .forward(swiglu(gate, self.up_proj.forward(x)))
    }
}

/// Where [`LlamaLayer::build`] gets a decoder layer's parts (a Hugging Face checkpoint or a
/// GGUF file).
pub(crate) trait LayerParts<B: Backend> {
    /// The RMSNorm of `slot`.
    fn norm(&mut self, slot: &LayerNormSlot<B>) -> Result<RmsNorm<B>, ModelError>;
    /// The linear layer of `slot` (`[in, out]`, the transpose of `(slot.shape)(config)`).
    fn linear(&mut self, slot: &LayerLinear<B>) -> Result<LoraLinear<B>, ModelError>;
}

/// One decoder layer (`LlamaDecoderLayer`, pre-norm).
#[derive(Module, Debug)]
pub struct LlamaLayer<B: Backend> {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm<B>,
    /// `self_attn`.
    pub self_attn: LlamaAttention<B>,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm<B>,
    /// `mlp`.
    pub mlp: LlamaMlp<B>,
    /// AdapterHub bottleneck adapter after self-attention (`attention_adapters`), if any; it
    /// replaces the residual addition `x + attn(...)` (AdapterHub `modeling_llama.py`).
    pub attention_adapters: Option<BottleneckAdapter<B>>,
    /// AdapterHub bottleneck adapter after the MLP (`output_adapters`), if any.
    pub output_adapters: Option<BottleneckAdapter<B>>,
}

impl<B: Backend> LlamaLayer<B> {
    /// `x` `[batch, seq, hidden]` → `[batch, seq, hidden]` (pre-norm residual attention, then
    /// MLP), and the layer's keys and values; `rope`, `mask` and `past` as
    /// [`LlamaAttention::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: Tensor<B, 4>,
        past: Option<LayerKv<B>>,
    ) -> (Tensor<B, 3>, LayerKv<B>) {
        let (a, kv) =
            self.self_attn
                .forward(self.input_layernorm.forward(x.clone()), rope, mask, past);
        let x = match &self.attention_adapters {
            Some(adapter) => adapter.forward(a, x),
            None => x + a,
        };
        let m = self
            .mlp
            .forward(self.post_attention_layernorm.forward(x.clone()));
        let x = match &self.output_adapters {
            Some(adapter) => adapter.forward(m, x),
            None => x + m,
        };
        (x, kv)
    }

    /// Builds a decoder layer from `parts`, asked for each slot of [`LlamaLayer::NORMS`] and
    /// [`LlamaLayer::LINEARS`] in module order.
    ///
    /// # Errors
    /// The first error `parts` returns.
    pub(crate) fn build(
        c: &LlamaConfig,
        parts: &mut dyn LayerParts<B>,
    ) -> Result<Self, ModelError> {
        let [input_ln, post_ln] = &Self::NORMS;
        let [q, k, v, o, gate, up, down] = &Self::LINEARS;
        Ok(Self {
            input_layernorm: parts.norm(input_ln)?,
            self_attn: LlamaAttention {
                q_proj: parts.linear(q)?,
                k_proj: parts.linear(k)?,
                v_proj: parts.linear(v)?,
                o_proj: parts.linear(o)?,
                num_heads: c.num_attention_heads,
                num_kv_heads: c.num_key_value_heads,
                head_dim: c.head_dim,
            },
            post_attention_layernorm: parts.norm(post_ln)?,
            mlp: LlamaMlp {
                gate_proj: parts.linear(gate)?,
                up_proj: parts.linear(up)?,
                down_proj: parts.linear(down)?,
            },
            attention_adapters: None,
            output_adapters: None,
        })
    }
}

/// Llama causal LM (`LlamaForCausalLM`).
///
/// Base parameters are frozen. Linear layers are named `model.layers.{i}.self_attn.{q,k,v,o}_proj`,
/// `model.layers.{i}.mlp.{gate,up,down}_proj` and, when the head is untied, `lm_head`
/// (`fan_in_fan_out = false`).
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// `embed_tokens` `[vocab, hidden]` (also the LM head when tied).
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// Decoder layers.
    pub layers: Vec<LlamaLayer<B>>,
    /// Final `norm`.
    pub norm: RmsNorm<B>,
    /// Untied `lm_head` `[hidden, vocab]`, or `None` when tied to `embed_tokens`.
    pub lm_head: Option<LoraLinear<B>>,
    /// RoPE base θ.
    pub rope_theta: f64,
}

impl<B: Backend> LanguageModel<B> for Llama<B> {
    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        embedding(self.embed_tokens.val(), input_ids)
    }

    fn forward_cached(&self, embeds: Tensor<B, 3>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        let [_, s, _] = embeds.dims();
        let device = embeds.device();
        let past = cache.past_len();
        let mut x = embeds;
        if let Some(first) = self.layers.first() {
            let a = &first.self_attn;
            let rope = Rope::at(past, s, a.head_dim, self.rope_theta, &device);
            let mask = causal_mask::<B>(s, a.num_heads / a.num_kv_heads, past, &device);
            for (i, layer) in self.layers.iter().enumerate() {
                let (y, kv) = layer.forward(x, &rope, mask.clone(), cache.take(i));
                cache.put(i, kv);
                x = y;
            }
        }
        self.norm.forward(x)
    }

    fn attention_shape(&self) -> AttentionShape {
        let (num_heads, num_kv_heads, head_dim) = self.layers.first().map_or((0, 0, 0), |l| {
            let a = &l.self_attn;
            (a.num_heads, a.num_kv_heads, a.head_dim)
        });
        AttentionShape {
            num_layers: self.layers.len(),
            num_heads,
            num_kv_heads,
            head_dim,
        }
    }

    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(h) => h.forward(hidden),
            None => burn::tensor::module::linear(hidden, self.embed_tokens.val().transpose(), None),
        }
    }

    /// `embed_tokens` when tied; an untied `lm_head` only while it is frozen and has no adapter,
    /// bias or quantized base (its f32 weight transposed to `[vocab, hidden]`, also when the
    /// head computes in bf16: the loss then runs in f32).
    fn lm_head_weight(&self) -> Option<Tensor<B, 2>> {
        match &self.lm_head {
            None => Some(self.embed_tokens.val()),
            Some(h) => {
                // A trainable head's weight is transposed here, so the chunked loss could not
                // hand it a gradient: such a head keeps the full logits.
                let plain = h.attached_adapter().is_none()
                    && h.bias().is_none()
                    && !h.is_quantized()
                    && !h.is_base_trainable();
                plain.then(|| h.base_weight().transpose())
            }
        }
    }

    fn output_embedding_rows(&self, ids: &[u32]) -> Tensor<B, 2> {
        let device = self.embed_tokens.device();
        let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(idx, [ids.len()]),
            &device,
        );
        match &self.lm_head {
            Some(h) => h.base_weight().transpose().select(0, idx),
            None => self.embed_tokens.val().select(0, idx),
        }
    }

    fn hidden_size(&self) -> usize {
        self.embed_tokens.dims()[1]
    }

    fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }
}
