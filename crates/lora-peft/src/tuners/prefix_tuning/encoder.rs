//! The prefix encoder (PEFT `peft/tuners/prefix_tuning/model.py`, `PrefixEncoder`) and its
//! conversion to a key/value cache (PEFT `peft_model.py`, `PeftModel.get_prompt`).
use super::config::PrefixGeometry;
use crate::PeftError;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use lora_models::{KvCache, LayerKv};

/// The two-layer MLP of `prefix_projection` (PEFT's `transform`: Linear → Tanh → Linear).
///
/// # Shapes
/// - `weight1` `[token_dim, encoder_hidden_size]`, `bias1` `[encoder_hidden_size]`
/// - `weight2` `[encoder_hidden_size, num_layers · 2 · token_dim]`, `bias2` its columns
///
/// (burn's `[d_in, d_out]` layout; PyTorch's `transform.{0,2}.weight` are the transposes.)
#[derive(Module, Debug)]
pub struct PrefixProjection<B: Backend> {
    /// First linear layer's weight `[token_dim, encoder_hidden_size]`.
    pub weight1: Param<Tensor<B, 2>>,
    /// First linear layer's bias `[encoder_hidden_size]`.
    pub bias1: Param<Tensor<B, 1>>,
    /// Second linear layer's weight `[encoder_hidden_size, num_layers · 2 · token_dim]`.
    pub weight2: Param<Tensor<B, 2>>,
    /// Second linear layer's bias `[num_layers · 2 · token_dim]`.
    pub bias2: Param<Tensor<B, 1>>,
}

impl<B: Backend> PrefixProjection<B> {
    /// `x` `[V, token_dim]` → `linear2(tanh(linear1(x)))` `[V, num_layers · 2 · token_dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        use burn::tensor::module::linear;
        let h = linear(x, self.weight1.val(), Some(self.bias1.val())).tanh();
        linear(h, self.weight2.val(), Some(self.bias2.val()))
    }
}

/// PEFT's `PrefixEncoder`: the trainable prefix of prefix tuning (Li & Liang 2021,
/// "Prefix-Tuning: Optimizing Continuous Prompts for Generation").
///
/// Without projection the prefix is the `embedding` itself, `[V, num_layers · 2 · token_dim]`.
/// With `prefix_projection` it is `transform(embedding)` with `embedding` `[V, token_dim]` and
/// `transform` a [`PrefixProjection`]. [`PrefixEncoder::past_key_values`] turns the prefix into
/// the key/value cache a forward pass starts from.
///
/// # Shapes
/// - `embedding`: `[V, num_layers · 2 · token_dim]`, or `[V, token_dim]` with a projection
/// - [`PrefixEncoder::prompt_embeddings`]: `[V, num_layers · 2 · token_dim]`
/// - [`PrefixEncoder::past_key_values`]: per layer key and value `[batch, heads, V, head_dim]`
#[derive(Module, Debug)]
pub struct PrefixEncoder<B: Backend> {
    /// The virtual-token embedding (trainable).
    pub embedding: Param<Tensor<B, 2>>,
    /// The projection MLP (`prefix_projection`), trainable.
    pub transform: Option<PrefixProjection<B>>,
    num_virtual_tokens: usize,
    num_layers: usize,
    num_heads: usize,
    head_dim: usize,
}

/// PyTorch's default `nn.Linear` init: weight and bias ~ U(−1/√fan_in, 1/√fan_in)
/// (`kaiming_uniform_(a=√5)`), in burn's `[d_in, d_out]` layout.
fn torch_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let k = 1.0 / (d_in as f64).sqrt();
    (
        Tensor::random([d_in, d_out], Distribution::Uniform(-k, k), device),
        Tensor::random([d_out], Distribution::Uniform(-k, k), device),
    )
}

impl<B: Backend> PrefixEncoder<B> {
    /// A fresh encoder of geometry `g` initialised as PEFT's (`torch.nn.Embedding`: N(0, 1);
    /// `torch.nn.Linear`: U(±1/√fan_in)); `zero` (`init_weights = "zero"`) zeroes the embedding,
    /// or with a projection its last linear layer, so that the prefix starts at 0. Draws use
    /// the backend's generator (seed it with `B::seed`).
    pub fn new(g: &PrefixGeometry, zero: bool, device: &B::Device) -> Self {
        let v = g.num_virtual_tokens;
        let (embedding, transform) = match g.encoder_hidden_size {
            None => {
                let e = if zero {
                    Tensor::zeros([v, g.flat_dim()], device)
                } else {
                    Tensor::random([v, g.flat_dim()], Distribution::Normal(0.0, 1.0), device)
                };
                (e, None)
            }
            Some(h) => {
                let e = Tensor::random([v, g.token_dim()], Distribution::Normal(0.0, 1.0), device);
                let (w1, b1) = torch_linear::<B>(g.token_dim(), h, device);
                let (mut w2, mut b2) = torch_linear::<B>(h, g.flat_dim(), device);
                if zero {
                    w2 = w2.zeros_like();
                    b2 = b2.zeros_like();
                }
                let t = PrefixProjection {
                    weight1: Param::from_tensor(w1),
                    bias1: Param::from_tensor(b1),
                    weight2: Param::from_tensor(w2),
                    bias2: Param::from_tensor(b2),
                };
                (e, Some(t))
            }
        };
        Self {
            embedding: Param::from_tensor(embedding),
            transform,
            num_virtual_tokens: v,
            num_layers: g.num_layers,
            num_heads: g.num_heads,
            head_dim: g.head_dim,
        }
    }

    /// An encoder holding the prefix itself, `prompt_embeddings` `[V, num_layers · 2 · token_dim]`
    /// (what PEFT saves, and what it loads into a plain embedding even for a
    /// `prefix_projection` adapter). Trainable.
    ///
    /// # Errors
    /// [`PeftError::Shape`] (key `prompt_embeddings`) when the shape is not `[V, flat_dim]` of `g`.
    pub fn from_prompt_embeddings(
        prompt_embeddings: Tensor<B, 2>,
        g: &PrefixGeometry,
    ) -> Result<Self, PeftError> {
        check_shape(
            "prompt_embeddings",
            &prompt_embeddings,
            [g.num_virtual_tokens, g.flat_dim()],
        )?;
        Ok(Self {
            embedding: Param::from_tensor(prompt_embeddings),
            transform: None,
            num_virtual_tokens: g.num_virtual_tokens,
            num_layers: g.num_layers,
            num_heads: g.num_heads,
            head_dim: g.head_dim,
        })
    }

    /// An encoder with a projection from given tensors (e.g. PEFT's `embedding.weight` and
    /// `transform.{0,2}.{weight,bias}`, weights transposed to `[d_in, d_out]`): `embedding`
    /// `[V, token_dim]` and `transform` with `g.encoder_hidden_size` hidden units.
    ///
    /// # Errors
    /// [`PeftError::Shape`] naming the tensor (`embedding`, `transform.weight1`, ...) whose shape
    /// does not fit `g`; [`PeftError::Config`] when `g` has no `encoder_hidden_size`.
    pub fn with_projection(
        embedding: Tensor<B, 2>,
        transform: PrefixProjection<B>,
        g: &PrefixGeometry,
    ) -> Result<Self, PeftError> {
        let h = g.encoder_hidden_size.ok_or_else(|| PeftError::Config {
            field: "encoder_hidden_size".into(),
            value: "null".into(),
            msg: "a projection needs prefix_projection = true and encoder_hidden_size".into(),
        })?;
        let (td, flat) = (g.token_dim(), g.flat_dim());
        check_shape("embedding", &embedding, [g.num_virtual_tokens, td])?;
        check_shape("transform.weight1", &transform.weight1.val(), [td, h])?;
        check_shape("transform.bias1", &transform.bias1.val(), [h])?;
        check_shape("transform.weight2", &transform.weight2.val(), [h, flat])?;
        check_shape("transform.bias2", &transform.bias2.val(), [flat])?;
        Ok(Self {
            embedding: Param::from_tensor(embedding),
            transform: Some(transform),
            num_virtual_tokens: g.num_virtual_tokens,
            num_layers: g.num_layers,
            num_heads: g.num_heads,
            head_dim: g.head_dim,
        })
    }

    /// Virtual tokens `V`.
    pub fn num_virtual_tokens(&self) -> usize {
        self.num_virtual_tokens
    }

    /// Whether the prefix is computed through a projection MLP.
    pub fn has_projection(&self) -> bool {
        self.transform.is_some()
    }

    /// The prefix `[V, num_layers · 2 · token_dim]`: the embedding, or the projection of it
    /// (PEFT's `prompt_encoder(prompt_tokens)`, what `get_prompt_embedding_to_save` saves).
    pub fn prompt_embeddings(&self) -> Tensor<B, 2> {
        match &self.transform {
            None => self.embedding.val(),
            Some(t) => t.forward(self.embedding.val()),
        }
    }

    /// The prefix as the key/value cache of a batch of `batch` rows, as PEFT's `get_prompt`:
    /// the prefix viewed `[batch, V, 2·num_layers, heads, head_dim]`, permuted
    /// `[2, 0, 3, 1, 4]` and split in pairs, so layer `l`'s keys are slot `2l` and its values
    /// slot `2l + 1`, each `[batch, heads, V, head_dim]`. Keys enter unrotated (no RoPE), as in
    /// transformers' cache. Gradients flow back to the encoder.
    pub fn past_key_values(&self, batch: usize) -> KvCache<B> {
        let (v, h, d) = (self.num_virtual_tokens, self.num_heads, self.head_dim);
        let p = self
            .prompt_embeddings()
            .reshape([v, 2 * self.num_layers, h, d]);
        // [V, heads, head_dim] of slot s → [batch, heads, V, head_dim].
        let slot = |s: usize| {
            p.clone()
                .narrow(1, s, 1)
                .reshape([v, h, d])
                .swap_dims(0, 1)
                .unsqueeze_dim::<4>(0)
                .repeat_dim(0, batch)
        };
        KvCache::from_layers(
            (0..self.num_layers)
                .map(|l| LayerKv {
                    key: slot(2 * l),
                    value: slot(2 * l + 1),
                })
                .collect(),
        )
    }
}

fn check_shape<B: Backend, const D: usize>(
    key: &str,
    t: &Tensor<B, D>,
    expected: [usize; D],
) -> Result<(), PeftError> {
    let got = t.dims();
    if got != expected {
        return Err(PeftError::Shape {
            path: "<PrefixEncoder>".into(),
            key: key.into(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}
