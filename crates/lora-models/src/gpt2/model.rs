//! The GPT-2 modules (transformers `modeling_gpt2.py`): attention, MLP, block and the LM head
//! model, and random initialisation for benchmarks.
use super::config::{Gpt2Activation, Gpt2Config};
use super::names::{BlockLinear, BlockNorm};
use crate::layers::{causal_attention, causal_mask, frozen, gelu_new, KvCache, LayerKv, LayerNorm};
use crate::{AttentionShape, LanguageModel, ModelError};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use lora_core::{BottleneckAdapter, LoraLinear};

/// GPT-2 self-attention (`GPT2Attention`): fused QKV projection, causal softmax attention,
/// output projection.
#[derive(Module, Debug)]
pub struct Gpt2Attention<B: Backend> {
    /// `c_attn`: `[n_embd, 3·n_embd]` + bias, output split as q | k | v.
    pub c_attn: LoraLinear<B>,
    /// `c_proj`: `[n_embd, n_embd]` + bias.
    pub c_proj: LoraLinear<B>,
    /// Number of heads.
    pub n_head: usize,
    /// Score scale: `1/√head_dim` (if `scale_attn_weights`) times `1/(layer+1)` (if
    /// `scale_attn_by_inverse_layer_idx`).
    pub scale: f64,
}

impl<B: Backend> Gpt2Attention<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`, and this layer's keys and values over `past`
    /// followed by the new positions; `mask` from [`causal_mask`] (groups 1) with `past`'s
    /// length.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 4>,
        past: Option<LayerKv<B>>,
    ) -> (Tensor<B, 3>, LayerKv<B>) {
        let [b, s, d] = x.dims();
        let h = self.n_head;
        let hd = d / h;
        let qkv = self.c_attn.forward(x);
        let heads = |t: Tensor<B, 3>| t.reshape([b, s, h, hd]).swap_dims(1, 2);
        let q = heads(qkv.clone().narrow(2, 0, d)).mul_scalar(self.scale);
        let new = LayerKv {
            key: heads(qkv.clone().narrow(2, d, d)),
            value: heads(qkv.narrow(2, 2 * d, d)),
        };
        let kv = match past {
            Some(p) => p.append(new),
            None => new,
        };
        let ctx = causal_attention(q, kv.key.clone(), kv.value.clone(), mask)
            .swap_dims(1, 2)
            .reshape([b, s, d]);
        (self.c_proj.forward(ctx), kv)
    }
}

/// GPT-2 MLP (`GPT2MLP`): `c_proj(act(c_fc(x)))`.
#[derive(Module, Debug)]
pub struct Gpt2Mlp<B: Backend> {
    /// `c_fc`: `[n_embd, n_inner]` + bias.
    pub c_fc: LoraLinear<B>,
    /// `c_proj`: `[n_inner, n_embd]` + bias.
    pub c_proj: LoraLinear<B>,
    /// True for exact (erf) GELU, false for `gelu_new` (tanh approximation).
    pub gelu_exact: bool,
}

impl<B: Backend> Gpt2Mlp<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.c_fc.forward(x);
        let h = if self.gelu_exact {
            burn::tensor::activation::gelu(h)
        } else {
            gelu_new(h)
        };
        self.c_proj.forward(h)
    }
}

/// Where [`Gpt2Block::build`] gets a block's parts: a checkpoint, or random initialisation.
pub(crate) trait BlockParts<B: Backend> {
    /// The LayerNorm of `slot`.
    fn norm(&mut self, slot: &BlockNorm<B>) -> Result<LayerNorm<B>, ModelError>;
    /// The Conv1D layer of `slot`, `[in, out]` = `(slot.dims)(config)`.
    fn linear(&mut self, slot: &BlockLinear<B>) -> Result<LoraLinear<B>, ModelError>;
}

/// One transformer block (`GPT2Block`, pre-norm): `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Module, Debug)]
pub struct Gpt2Block<B: Backend> {
    /// `ln_1`.
    pub ln_1: LayerNorm<B>,
    /// `attn`.
    pub attn: Gpt2Attention<B>,
    /// `ln_2`.
    pub ln_2: LayerNorm<B>,
    /// `mlp`.
    pub mlp: Gpt2Mlp<B>,
    /// AdapterHub bottleneck adapter after attention (`attention_adapters`), if any; it
    /// replaces the residual addition `x + attn(...)` (AdapterHub `modeling_gpt2.py`).
    pub attention_adapters: Option<BottleneckAdapter<B>>,
    /// AdapterHub bottleneck adapter after the MLP (`output_adapters`), if any.
    pub output_adapters: Option<BottleneckAdapter<B>>,
}

impl<B: Backend> Gpt2Block<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`, and the layer's keys and values; `mask` and
    /// `past` as [`Gpt2Attention::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 4>,
        past: Option<LayerKv<B>>,
    ) -> (Tensor<B, 3>, LayerKv<B>) {
        let (a, kv) = self.attn.forward(self.ln_1.forward(x.clone()), mask, past);
        let x = match &self.attention_adapters {
            Some(adapter) => adapter.forward(a, x),
            None => x + a,
        };
        let m = self.mlp.forward(self.ln_2.forward(x.clone()));
        let x = match &self.output_adapters {
            Some(adapter) => adapter.forward(m, x),
            None => x + m,
        };
        (x, kv)
    }

    /// Builds block `layer_idx` from `parts`, asked for each slot of [`Gpt2Block::NORMS`] and
    /// [`Gpt2Block::LINEARS`] in module order.
    ///
    /// # Errors
    /// The first error `parts` returns.
    pub(crate) fn build(
        c: &Gpt2Config,
        layer_idx: usize,
        parts: &mut dyn BlockParts<B>,
    ) -> Result<Self, ModelError> {
        let [ln_1, ln_2] = &Self::NORMS;
        let [c_attn, attn_proj, c_fc, mlp_proj] = &Self::LINEARS;
        Ok(Self {
            ln_1: parts.norm(ln_1)?,
            attn: Gpt2Attention {
                c_attn: parts.linear(c_attn)?,
                c_proj: parts.linear(attn_proj)?,
                n_head: c.n_head,
                scale: c.attn_scale(layer_idx),
            },
            ln_2: parts.norm(ln_2)?,
            mlp: Gpt2Mlp {
                c_fc: parts.linear(c_fc)?,
                c_proj: parts.linear(mlp_proj)?,
                gelu_exact: c.activation_function == Gpt2Activation::Gelu,
            },
            attention_adapters: None,
            output_adapters: None,
        })
    }
}

/// GPT-2 language model (`GPT2LMHeadModel`) with the LM head tied to `wte`.
///
/// All base parameters are frozen; adapters are attached through [`lora_core::NamedLinears`]
/// with the module names `transformer.h.{i}.attn.c_attn`, `transformer.h.{i}.attn.c_proj`,
/// `transformer.h.{i}.mlp.c_fc`, `transformer.h.{i}.mlp.c_proj` (all `fan_in_fan_out = true`).
#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    /// Token embedding `wte` `[vocab, n_embd]`, also the LM head.
    pub wte: Param<Tensor<B, 2>>,
    /// Position embedding `wpe` `[n_positions, n_embd]`.
    pub wpe: Param<Tensor<B, 2>>,
    /// Blocks `h.0 … h.{n_layer−1}`.
    pub h: Vec<Gpt2Block<B>>,
    /// Final LayerNorm `ln_f`.
    pub ln_f: LayerNorm<B>,
}

impl<B: Backend> Gpt2<B> {
    /// Maximum sequence length (rows of `wpe`).
    pub fn n_positions(&self) -> usize {
        self.wpe.dims()[0]
    }
}

impl<B: Backend> LanguageModel<B> for Gpt2<B> {
    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        embedding(self.wte.val(), input_ids)
    }

    /// # Panics
    /// If `past + seq` exceeds `n_positions` (GPT-2 has no position embedding beyond it;
    /// callers check [`LanguageModel::max_positions`] first).
    fn forward_cached(&self, embeds: Tensor<B, 3>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        let [_, s, _] = embeds.dims();
        let past = cache.past_len();
        assert!(
            past + s <= self.n_positions(),
            "GPT-2: position {} exceeds n_positions = {}",
            past + s,
            self.n_positions()
        );
        let device = embeds.device();
        let pos = self.wpe.val().narrow(0, past, s).unsqueeze::<3>();
        let mut x = embeds + pos;
        let mask = causal_mask::<B>(s, 1, past, &device);
        for (i, blk) in self.h.iter().enumerate() {
            let (y, kv) = blk.forward(x, mask.clone(), cache.take(i));
            cache.put(i, kv);
            x = y;
        }
        self.ln_f.forward(x)
    }

    fn attention_shape(&self) -> AttentionShape {
        let n_head = self.h.first().map_or(0, |b| b.attn.n_head);
        let d = self.hidden_size();
        AttentionShape {
            num_layers: self.h.len(),
            num_heads: n_head,
            num_kv_heads: n_head,
            head_dim: d.checked_div(n_head).unwrap_or(0),
        }
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.n_positions())
    }

    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        burn::tensor::module::linear(hidden, self.wte.val().transpose(), None)
    }

    /// `wte` `[vocab, n_embd]`: the head is tied to it.
    fn lm_head_weight(&self) -> Option<Tensor<B, 2>> {
        Some(self.wte.val())
    }

    fn output_embedding_rows(&self, ids: &[u32]) -> Tensor<B, 2> {
        let device = self.wte.device();
        let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(idx, [ids.len()]),
            &device,
        );
        self.wte.val().select(0, idx)
    }

    fn hidden_size(&self) -> usize {
        self.wte.dims()[1]
    }

    fn vocab_size(&self) -> usize {
        self.wte.dims()[0]
    }
}

impl<B: Backend> Gpt2<B> {
    /// A GPT-2 of shape `config` with random weights, initialised as transformers'
    /// `GPT2PreTrainedModel._init_weights`: embeddings and Conv1D weights ~ N(0, 0.02), every
    /// `c_proj` weight ~ N(0, 0.02/√(2·n_layer)), biases 0, LayerNorm weight 1 and bias 0.
    /// Draws use the backend's generator (seed it with `B::seed`). All parameters are frozen,
    /// as after [`Gpt2::load`]. Meant for speed benchmarks (`examples/train_bench.rs`), where
    /// the values do not matter but must not be zeros.
    ///
    /// # Errors
    /// [`ModelError::Lora`] if a layer refuses its weight (cannot happen for a config that
    /// [`Gpt2Config::from_json`] accepted; kept so that no shape error can panic).
    pub fn random(c: &Gpt2Config, device: &B::Device) -> Result<Self, ModelError> {
        use burn::tensor::Distribution;
        let d = c.n_embd;
        let normal = |shape: [usize; 2], std: f64| {
            Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, std), device)
        };
        let mut init = RandomParts { c, device };
        let mut h = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            h.push(Gpt2Block::build(c, i, &mut init)?);
        }
        Ok(Self {
            wte: frozen(normal([c.vocab_size, d], 0.02)),
            wpe: frozen(normal([c.n_positions, d], 0.02)),
            h,
            ln_f: init.layer_norm(),
        })
    }
}

/// transformers' `GPT2PreTrainedModel._init_weights` for the parts of a block.
struct RandomParts<'a, B: Backend> {
    c: &'a Gpt2Config,
    device: &'a B::Device,
}

impl<B: Backend> RandomParts<'_, B> {
    /// Weight 1, bias 0.
    fn layer_norm(&self) -> LayerNorm<B> {
        let d = self.c.n_embd;
        LayerNorm {
            weight: frozen(Tensor::<B, 1>::ones([d], self.device)),
            bias: frozen(Tensor::<B, 1>::zeros([d], self.device)),
            eps: self.c.layer_norm_epsilon,
        }
    }
}

impl<B: Backend> BlockParts<B> for RandomParts<'_, B> {
    fn norm(&mut self, _: &BlockNorm<B>) -> Result<LayerNorm<B>, ModelError> {
        Ok(self.layer_norm())
    }

    fn linear(&mut self, slot: &BlockLinear<B>) -> Result<LoraLinear<B>, ModelError> {
        use burn::tensor::Distribution;
        let [din, dout] = (slot.dims)(self.c);
        // transformers scales the init of every `c_proj` (the residual projections).
        let std = if slot.name.ends_with("c_proj") {
            0.02 / ((2 * self.c.n_layer) as f64).sqrt()
        } else {
            0.02
        };
        let w = Tensor::<B, 2>::random([din, dout], Distribution::Normal(0.0, std), self.device);
        Ok(LoraLinear::new(
            w,
            Some(Tensor::<B, 1>::zeros([dout], self.device)),
            true,
        )?)
    }
}
