//! Llama-family decoder (Touvron et al. 2023) with every linear layer a [`LoraLinear`]:
//! RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU MLP, tied or untied LM
//! head.
//!
//! Reference implementation: Hugging Face transformers `models/llama/modeling_llama.py`
//! (`LlamaForCausalLM`, `LlamaRMSNorm`, `LlamaRotaryEmbedding`, `rotate_half`,
//! `apply_rotary_pos_emb`, `repeat_kv`, `LlamaMLP`) and `configuration_llama.py` (defaults).
//! Weights come from a Hugging Face directory (`config.json` + `model.safetensors`) or a GGUF file
//! (llama.cpp's `convert_hf_to_gguf.py` tensor names; its Q/K row permutation is undone on load,
//! as transformers' GGUF loader does). HF `nn.Linear` stores `[out, in]`; [`LoraLinear`] holds
//! `[in, out]`, so linear weights are transposed on load and on save (`fan_in_fan_out = false`).

use crate::gguf::GgufFile;
use crate::gpt2::{
    causal_attention, causal_mask, ensure_dir, frozen, put_tensor, read_json,
    save_json, save_safetensors, transpose_vec, Cfg, StTensors,
};
use crate::st::StFile;
use crate::{LanguageModel, ModelError};
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor, TensorData};
use lora_core::{LoraLinear, NamedLinears};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Llama hyper-parameters (transformers `LlamaConfig`; a missing or `null` field in
/// `config.json` takes transformers' default, given in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size [32000].
    pub vocab_size: usize,
    /// Hidden size `d` [4096].
    pub hidden_size: usize,
    /// MLP inner size [11008].
    pub intermediate_size: usize,
    /// Number of decoder layers [32].
    pub num_hidden_layers: usize,
    /// Query heads [32].
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); divides `num_attention_heads`
    /// [`num_attention_heads`].
    pub num_key_value_heads: usize,
    /// Per-head size, even [`hidden_size / num_attention_heads`].
    pub head_dim: usize,
    /// RMSNorm epsilon [1e-6].
    pub rms_norm_eps: f64,
    /// RoPE base θ (`rope_parameters.rope_theta` in transformers 5, `rope_theta` before) [10000].
    pub rope_theta: f64,
    /// Context length the model was trained for [2048] (informational; not enforced).
    pub max_position_embeddings: usize,
    /// LM head tied to `embed_tokens` [false].
    pub tie_word_embeddings: bool,
    /// Number of labels of a sequence-classification head: size of `id2label`, else
    /// `num_labels`, else `None` (transformers then uses 2, and omits the default 2 labels when
    /// it saves a config).
    pub num_labels: Option<usize>,
    /// `pad_token_id`, if set.
    pub pad_token_id: Option<u32>,
    /// The original `config.json` (for GGUF: one built from the metadata), written back with the
    /// fields above overlaid by [`Llama::save_hf`].
    pub raw: Value,
}

impl LlamaConfig {
    /// Reads and validates a Llama `config.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`], [`ModelError::Format`] (bad JSON), [`ModelError::Config`] naming the
    /// key for a wrong type or value: zero sizes, heads not dividing, odd `head_dim`,
    /// `hidden_act` other than `silu`, RoPE scaling other than `default`, `attention_bias` or
    /// `mlp_bias` true (not supported).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        Self::from_json(read_json(path)?, path)
    }

    /// Parses a `config.json` value; `path` only names the file in errors (see
    /// [`LlamaConfig::from_file`]).
    pub fn from_json(raw: Value, path: &Path) -> Result<Self, ModelError> {
        let c = Cfg { v: &raw, path };
        let hidden_size = c.usize_pos("hidden_size", Some(4096))?;
        let heads = c.usize_pos("num_attention_heads", Some(32))?;
        let kv = c.usize_pos("num_key_value_heads", Some(heads))?;
        let head_dim = match c.opt_usize("head_dim")? {
            Some(h) => h,
            None => hidden_size / heads,
        };
        let act = c.str("hidden_act", Some("silu"))?;
        if act != "silu" {
            return Err(c.err(
                "hidden_act",
                format!("unsupported activation {act:?}; expected \"silu\""),
            ));
        }
        for key in ["attention_bias", "mlp_bias"] {
            if c.bool(key, Some(false))? {
                return Err(c.err(key, "biases in Llama projections are not supported".into()));
            }
        }
        // transformers 5: rope_parameters {rope_theta, rope_type}; before: rope_theta + rope_scaling.
        let rope_theta = match c.get("rope_parameters") {
            Some(p @ Value::Object(_)) => {
                let pc = Cfg { v: p, path };
                let ty = pc.str("rope_type", Some("default"))?;
                if ty != "default" {
                    return Err(c.err(
                        "rope_parameters",
                        format!("rope_type {ty:?} is not supported (only \"default\")"),
                    ));
                }
                pc.f64("rope_theta", Some(c.f64("rope_theta", Some(10000.0))?))?
            }
            Some(other) => {
                return Err(c.err(
                    "rope_parameters",
                    format!("expected an object, got {other}"),
                ))
            }
            None => {
                if let Some(s) = c.get("rope_scaling") {
                    let ty = s
                        .get("rope_type")
                        .or_else(|| s.get("type"))
                        .and_then(Value::as_str);
                    if ty != Some("default") {
                        return Err(
                            c.err("rope_scaling", format!("RoPE scaling {s} is not supported"))
                        );
                    }
                }
                c.f64("rope_theta", Some(10000.0))?
            }
        };
        let config = Self {
            vocab_size: c.usize_pos("vocab_size", Some(32000))?,
            hidden_size,
            intermediate_size: c.usize_pos("intermediate_size", Some(11008))?,
            num_hidden_layers: c.usize_pos("num_hidden_layers", Some(32))?,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: c.f64("rms_norm_eps", Some(1e-6))?,
            rope_theta,
            max_position_embeddings: c.usize_pos("max_position_embeddings", Some(2048))?,
            tie_word_embeddings: c.bool("tie_word_embeddings", Some(false))?,
            num_labels: c.num_labels()?,
            pad_token_id: c.pad_token_id()?,
            raw,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the relations between sizes. `path` names the source in errors.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the offending key.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let err = |key: &str, msg: String| ModelError::Config {
            path: path.to_path_buf(),
            key: key.into(),
            msg,
        };
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return Err(err(
                "head_dim",
                format!("must be positive and even for RoPE, got {}", self.head_dim),
            ));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(err(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads = {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.rope_theta.is_finite() || self.rope_theta <= 0.0 {
            return Err(err(
                "rope_theta",
                format!("must be positive, got {}", self.rope_theta),
            ));
        }
        Ok(())
    }

    /// The `config.json` to write: the original JSON with this struct's fields overlaid
    /// (`model_type` `"llama"`, `architectures` kept or `["LlamaForCausalLM"]`, RoPE written both
    /// as transformers 5's `rope_parameters` and the older top-level `rope_theta`).
    pub fn to_json(&self) -> Value {
        let mut m = match &self.raw {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        m.insert("model_type".into(), "llama".into());
        m.entry("architectures")
            .or_insert_with(|| json!(["LlamaForCausalLM"]));
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("hidden_size".into(), self.hidden_size.into());
        m.insert("intermediate_size".into(), self.intermediate_size.into());
        m.insert("num_hidden_layers".into(), self.num_hidden_layers.into());
        m.insert(
            "num_attention_heads".into(),
            self.num_attention_heads.into(),
        );
        m.insert(
            "num_key_value_heads".into(),
            self.num_key_value_heads.into(),
        );
        m.insert("head_dim".into(), self.head_dim.into());
        m.insert("hidden_act".into(), "silu".into());
        m.insert("rms_norm_eps".into(), self.rms_norm_eps.into());
        m.insert(
            "rope_parameters".into(),
            json!({"rope_theta": self.rope_theta, "rope_type": "default"}),
        );
        m.insert("rope_theta".into(), self.rope_theta.into());
        m.remove("rope_scaling");
        m.insert(
            "max_position_embeddings".into(),
            self.max_position_embeddings.into(),
        );
        m.insert(
            "tie_word_embeddings".into(),
            self.tie_word_embeddings.into(),
        );
        m.insert("attention_bias".into(), false.into());
        m.insert("mlp_bias".into(), false.into());
        if let Some(p) = self.pad_token_id {
            m.insert("pad_token_id".into(), p.into());
        }
        Value::Object(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// RMSNorm (`LlamaRMSNorm`): `x · rsqrt(mean(x²) + eps) · weight` over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale `[d]`, frozen.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv = x
            .clone()
            .square()
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * inv * self.weight.val().unsqueeze::<3>()
    }
}

/// RoPE tables for one forward pass, each `[1, seq, 1, head_dim/2]` (the two halves of
/// transformers' `cos`/`sin` are equal, so only one is kept). The query tables carry the
/// attention scale `1/√head_dim` (RoPE is linear, so scaling the rotated query is the same as
/// scaling the scores).
struct Rope<B: Backend> {
    cos_q: Tensor<B, 4>,
    sin_q: Tensor<B, 4>,
    cos_k: Tensor<B, 4>,
    sin_k: Tensor<B, 4>,
}

impl<B: Backend> Rope<B> {
    /// `inv_freq[i] = 1/θ^(2i/d)`, angle `= pos · inv_freq[i]`, computed in f32 as transformers'
    /// `LlamaRotaryEmbedding` (default rope type) does.
    fn new(seq: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
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

/// `x·cos + rotate_half(x)·sin` with `rotate_half([x1, x2]) = [−x2, x1]`, for `x`
/// `[batch, seq, heads, head_dim]` and tables `[1, seq, 1, head_dim/2]`.
fn apply_rope<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let o1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let o2 = x2 * cos.clone() + x1 * sin.clone();
    Tensor::cat(vec![o1, o2], 3)
}

/// The linear layers of a Llama decoder layer, as PEFT names them: every attention and MLP
/// projection (the default LoRA targets of `finetune`; PEFT's own default is `q_proj`, `v_proj`).
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

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
    fn forward(&self, x: Tensor<B, 3>, rope: &Rope<B>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
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
        let ctx = causal_attention(q, k, v, mask)
            .reshape([b, h, s, hd])
            .swap_dims(1, 2)
            .reshape([b, s, h * hd]);
        self.o_proj.forward(ctx)
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
        let g = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(g * self.up_proj.forward(x))
    }
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
}

impl<B: Backend> LlamaLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, rope: &Rope<B>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, mask);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
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

/// One tensor the model needs: its Hugging Face and GGUF names and its PyTorch-order shape.
struct Slot {
    hf: String,
    gguf: String,
    shape: Vec<usize>,
    /// For `attn_q`/`attn_k` in GGUF: the head count llama.cpp permuted the rows with.
    rope_heads: Option<usize>,
}

impl<B: Backend> Llama<B> {
    /// Loads `dir/config.json` and `dir/model.safetensors` (transformers `LlamaForCausalLM`
    /// layout, keys `model.…`, `lm_head.weight` when untied; a `LlamaModel` checkpoint without the
    /// `model.` prefix also works). A classification head `score.weight`, the obsolete
    /// `rotary_emb.inv_freq` buffers and a redundant `lm_head.weight` of a tied model are ignored.
    ///
    /// # Errors
    /// [`ModelError::Io`] (missing file), [`ModelError::Format`] (truncated/invalid file, or an
    /// unexpected tensor), [`ModelError::Config`], [`ModelError::MissingKey`],
    /// [`ModelError::Shape`], [`ModelError::Dtype`]; each names the file and key.
    pub fn load_hf(dir: &Path, device: &B::Device) -> Result<(Self, LlamaConfig), ModelError> {
        let config = LlamaConfig::from_file(dir.join("config.json"))?;
        let st = StFile::open(dir.join("model.safetensors"))?;
        let prefix =
            if !st.contains("model.embed_tokens.weight") && st.contains("embed_tokens.weight") {
                ""
            } else {
                "model."
            };
        let mut used = HashSet::new();
        let model = Self::build(&config, device, &mut |slot: &Slot| {
            let key = match slot.hf.strip_prefix("model.") {
                Some(rest) => format!("{prefix}{rest}"),
                None => slot.hf.clone(),
            };
            let (vals, shape) = st.f32(&key)?;
            if shape != slot.shape {
                return Err(ModelError::Shape {
                    path: st.path.clone(),
                    key,
                    expected: slot.shape.clone(),
                    got: shape,
                });
            }
            used.insert(key);
            Ok(vals)
        })?;
        for name in st.names() {
            let ignored = name == "score.weight"
                || name.ends_with("rotary_emb.inv_freq")
                || (name == "lm_head.weight" && config.tie_word_embeddings);
            if !used.contains(&name) && !ignored {
                return Err(ModelError::format(
                    &st.path,
                    format!(
                        "unexpected tensor `{name}` for a Llama model with {} layers",
                        config.num_hidden_layers
                    ),
                ));
            }
        }
        Ok((model, config))
    }

    /// Builds the model from a GGUF file (`general.architecture` = `llama`), dequantizing every
    /// tensor to f32.
    ///
    /// Metadata: `llama.block_count`, `llama.embedding_length`, `llama.feed_forward_length`,
    /// `llama.attention.head_count`, `llama.attention.head_count_kv` (default: head_count),
    /// `llama.attention.layer_norm_rms_epsilon`, `llama.rope.freq_base` (default 10000),
    /// `llama.context_length`, `llama.attention.key_length` (default embedding/heads); vocabulary
    /// = rows of `token_embd.weight` (checked against `llama.vocab_size` if present). The LM head
    /// is untied iff `output.weight` exists. `attn_q`/`attn_k` rows are un-permuted back to the
    /// Hugging Face layout (inverse of llama.cpp's `permute`: `reshape(n_head, head_dim/2, 2, in)
    /// .swapaxes(1, 2)`), as transformers' `_reverse_permute_weights` does.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`], [`ModelError::Config`] (wrong architecture, inconsistent
    /// sizes, RoPE scaling), [`ModelError::Shape`], and the reader's errors for unsupported
    /// tensor types.
    pub fn from_gguf(g: &GgufFile, device: &B::Device) -> Result<(Self, LlamaConfig), ModelError> {
        let path = g.path().to_path_buf();
        let cfg_err = |key: &str, msg: String| ModelError::Config {
            path: path.clone(),
            key: key.into(),
            msg,
        };
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(cfg_err(
                "general.architecture",
                format!("expected \"llama\", got {arch:?}"),
            ));
        }
        let opt_u64 = |key: &str| match g.get_u64(key) {
            Ok(v) => Ok(Some(v as usize)),
            Err(ModelError::MissingKey { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        let opt_f32 = |key: &str| match g.get_f32(key) {
            Ok(v) => Ok(Some(v as f64)),
            Err(ModelError::MissingKey { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        let pos = |key: &str, v: usize| {
            if v == 0 {
                Err(cfg_err(key, "must be positive, got 0".into()))
            } else {
                Ok(v)
            }
        };
        match g.get_str("llama.rope.scaling.type") {
            Ok(t) if t != "none" => {
                return Err(cfg_err(
                    "llama.rope.scaling.type",
                    format!("RoPE scaling {t:?} is not supported"),
                ))
            }
            Ok(_) | Err(ModelError::MissingKey { .. }) => {}
            Err(e) => return Err(e),
        }
        let layers = pos(
            "llama.block_count",
            g.get_u64("llama.block_count")? as usize,
        )?;
        let hidden = pos(
            "llama.embedding_length",
            g.get_u64("llama.embedding_length")? as usize,
        )?;
        let ffn = pos(
            "llama.feed_forward_length",
            g.get_u64("llama.feed_forward_length")? as usize,
        )?;
        let heads = pos(
            "llama.attention.head_count",
            g.get_u64("llama.attention.head_count")? as usize,
        )?;
        let kv = pos(
            "llama.attention.head_count_kv",
            opt_u64("llama.attention.head_count_kv")?.unwrap_or(heads),
        )?;
        let head_dim = opt_u64("llama.attention.key_length")?.unwrap_or(hidden / heads);
        let eps = g.get_f32("llama.attention.layer_norm_rms_epsilon")? as f64;
        let theta = opt_f32("llama.rope.freq_base")?.unwrap_or(10000.0);
        let ctx = opt_u64("llama.context_length")?.unwrap_or(2048);

        let (embed, embed_shape) = g.tensor_f32("token_embd.weight")?;
        if embed_shape.len() != 2 || embed_shape[1] != hidden {
            return Err(ModelError::Shape {
                path: path.clone(),
                key: "token_embd.weight".into(),
                expected: vec![embed_shape.first().copied().unwrap_or(0), hidden],
                got: embed_shape,
            });
        }
        let vocab = embed_shape[0];
        if let Some(v) = opt_u64("llama.vocab_size")? {
            if v != vocab {
                return Err(cfg_err(
                    "llama.vocab_size",
                    format!("{v} differs from the {vocab} rows of token_embd.weight"),
                ));
            }
        }
        let tied = g.tensor_info("output.weight").is_none();
        let id = |key: &str| opt_u64(key).map(|o| o.map(|v| json!(v)).unwrap_or(Value::Null));
        let pad = opt_u64("tokenizer.ggml.padding_token_id")?;
        let raw = json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "bos_token_id": id("tokenizer.ggml.bos_token_id")?,
            "eos_token_id": id("tokenizer.ggml.eos_token_id")?,
            "pad_token_id": pad,
            "dtype": "float32",
        });
        let config = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: ffn,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: eps,
            rope_theta: theta,
            max_position_embeddings: ctx,
            tie_word_embeddings: tied,
            num_labels: None,
            pad_token_id: pad.and_then(|p| u32::try_from(p).ok()),
            raw,
        };
        config.validate(&path)?;
        let mut embed = Some(embed);
        let mut used = std::collections::HashSet::new();
        used.insert("token_embd.weight".to_string());
        let model = Self::build(&config, device, &mut |slot: &Slot| {
            used.insert(slot.gguf.clone());
            if slot.gguf == "token_embd.weight" {
                if let Some(e) = embed.take() {
                    return Ok(e);
                }
            }
            let (vals, shape) = g.tensor_f32(&slot.gguf)?;
            if shape != slot.shape {
                return Err(ModelError::Shape {
                    path: path.clone(),
                    key: slot.gguf.clone(),
                    expected: slot.shape.clone(),
                    got: shape,
                });
            }
            Ok(match slot.rope_heads {
                Some(n) => unpermute_rope_rows(&vals, n, slot.shape[0], slot.shape[1]),
                None => vals,
            })
        })?;
        // A tensor this architecture does not use (e.g. Llama 3.1's `rope_freqs.weight`) would
        // change the model's function: refuse it rather than ignore it.
        if let Some(extra) = g.tensors().iter().find(|t| !used.contains(&t.name)) {
            return Err(ModelError::format(
                &path,
                format!(
                    "unexpected tensor `{}`: not part of the supported Llama architecture",
                    extra.name
                ),
            ));
        }
        Ok((model, config))
    }

    /// Builds the model from a source of tensors in Hugging Face layout (`fetch` checks shapes).
    fn build(
        c: &LlamaConfig,
        device: &B::Device,
        fetch: &mut dyn FnMut(&Slot) -> Result<Vec<f32>, ModelError>,
    ) -> Result<Self, ModelError> {
        let (d, hd) = (c.hidden_size, c.head_dim);
        let slot = |hf: String, gguf: String, shape: Vec<usize>| Slot {
            hf,
            gguf,
            shape,
            rope_heads: None,
        };
        let norm = |hf: String,
                    gguf: String,
                    fetch: &mut dyn FnMut(&Slot) -> Result<Vec<f32>, ModelError>|
         -> Result<RmsNorm<B>, ModelError> {
            let v = fetch(&slot(hf, gguf, vec![d]))?;
            Ok(RmsNorm {
                weight: frozen(Tensor::from_data(TensorData::new(v, [d]), device)),
                eps: c.rms_norm_eps,
            })
        };
        // HF nn.Linear weight [out, in] → LoraLinear [in, out].
        let linear = |s: Slot,
                      fetch: &mut dyn FnMut(&Slot) -> Result<Vec<f32>, ModelError>|
         -> Result<LoraLinear<B>, ModelError> {
            let (out, inp) = (s.shape[0], s.shape[1]);
            let v = fetch(&s)?;
            let w = Tensor::from_data(
                TensorData::new(transpose_vec(&v, out, inp), [inp, out]),
                device,
            );
            Ok(LoraLinear::new(w, None, false)?)
        };
        let embed = fetch(&slot(
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            vec![c.vocab_size, d],
        ))?;
        let embed_tokens = frozen(Tensor::from_data(
            TensorData::new(embed, [c.vocab_size, d]),
            device,
        ));
        let (h, kv) = (c.num_attention_heads, c.num_key_value_heads);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let hf = |n: &str| format!("model.layers.{i}.{n}.weight");
            let gg = |n: &str| format!("blk.{i}.{n}.weight");
            let lin =
                |hf_name: &str, gg_name: &str, out: usize, inp: usize, rope: Option<usize>| Slot {
                    hf: hf(hf_name),
                    gguf: gg(gg_name),
                    shape: vec![out, inp],
                    rope_heads: rope,
                };
            layers.push(LlamaLayer {
                input_layernorm: norm(hf("input_layernorm"), gg("attn_norm"), fetch)?,
                self_attn: LlamaAttention {
                    q_proj: linear(lin("self_attn.q_proj", "attn_q", h * hd, d, Some(h)), fetch)?,
                    k_proj: linear(
                        lin("self_attn.k_proj", "attn_k", kv * hd, d, Some(kv)),
                        fetch,
                    )?,
                    v_proj: linear(lin("self_attn.v_proj", "attn_v", kv * hd, d, None), fetch)?,
                    o_proj: linear(
                        lin("self_attn.o_proj", "attn_output", d, h * hd, None),
                        fetch,
                    )?,
                    num_heads: h,
                    num_kv_heads: kv,
                    head_dim: hd,
                },
                post_attention_layernorm: norm(
                    hf("post_attention_layernorm"),
                    gg("ffn_norm"),
                    fetch,
                )?,
                mlp: LlamaMlp {
                    gate_proj: linear(
                        lin("mlp.gate_proj", "ffn_gate", c.intermediate_size, d, None),
                        fetch,
                    )?,
                    up_proj: linear(
                        lin("mlp.up_proj", "ffn_up", c.intermediate_size, d, None),
                        fetch,
                    )?,
                    down_proj: linear(
                        lin("mlp.down_proj", "ffn_down", d, c.intermediate_size, None),
                        fetch,
                    )?,
                },
            });
        }
        let final_norm = norm(
            "model.norm.weight".into(),
            "output_norm.weight".into(),
            fetch,
        )?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(linear(
                slot(
                    "lm_head.weight".into(),
                    "output.weight".into(),
                    vec![c.vocab_size, d],
                ),
                fetch,
            )?)
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm: final_norm,
            lm_head,
            rope_theta: c.rope_theta,
        })
    }

    /// Writes `dir/model.safetensors` (transformers `LlamaForCausalLM` layout: keys `model.…`,
    /// linear weights `[out, in]`, `lm_head.weight` only when untied, metadata
    /// `{"format":"pt"}`) and `dir/config.json` ([`LlamaConfig::to_json`]), each atomically.
    /// Attached adapters are merged into the written weights (the model itself is unchanged);
    /// quantized bases are written dequantized, so the file holds dense f32 weights.
    ///
    /// # Errors
    /// [`ModelError::Io`] if `dir` cannot be created or written; [`ModelError::Format`] if
    /// serialization fails.
    pub fn save_hf(&self, config: &LlamaConfig, dir: &Path) -> Result<(), ModelError> {
        ensure_dir(dir)?;
        let path = dir.join("model.safetensors");
        let p = &path;
        let mut t = StTensors::new();
        // LoraLinear [in, out] → HF [out, in].
        let lin = |t: &mut StTensors, key: String, l: &LoraLinear<B>| {
            put_tensor(t, &key, l.merged_weight().transpose(), p)
        };
        put_tensor(
            &mut t,
            "model.embed_tokens.weight",
            self.embed_tokens.val(),
            p,
        )?;
        for (i, l) in self.layers.iter().enumerate() {
            let pre = format!("model.layers.{i}");
            put_tensor(
                &mut t,
                &format!("{pre}.input_layernorm.weight"),
                l.input_layernorm.weight.val(),
                p,
            )?;
            put_tensor(
                &mut t,
                &format!("{pre}.post_attention_layernorm.weight"),
                l.post_attention_layernorm.weight.val(),
                p,
            )?;
            let a = &l.self_attn;
            for (n, x) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("o_proj", &a.o_proj),
            ] {
                lin(&mut t, format!("{pre}.self_attn.{n}.weight"), x)?;
            }
            let m = &l.mlp;
            for (n, x) in [
                ("gate_proj", &m.gate_proj),
                ("up_proj", &m.up_proj),
                ("down_proj", &m.down_proj),
            ] {
                lin(&mut t, format!("{pre}.mlp.{n}.weight"), x)?;
            }
        }
        put_tensor(&mut t, "model.norm.weight", self.norm.weight.val(), p)?;
        if let Some(h) = &self.lm_head {
            lin(&mut t, "lm_head.weight".into(), h)?;
        }
        save_safetensors(&path, &t)?;
        save_json(&dir.join("config.json"), &config.to_json())
    }
}

/// Inverse of llama.cpp's `permute` for `attn_q`/`attn_k` (`convert_hf_to_gguf.py`):
/// GGUF row `h·hd + 2j + t` holds HF row `h·hd + t·hd/2 + j` (`hd = rows/n_head`, `t ∈ {0,1}`,
/// `j < hd/2`). `w` is `[rows, cols]` row-major; returns the HF order.
pub fn unpermute_rope_rows(w: &[f32], n_head: usize, rows: usize, cols: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for j in 0..half {
            for t in 0..2 {
                let src = h * hd + 2 * j + t;
                let dst = h * hd + t * half + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl<B: Backend> LanguageModel<B> for Llama<B> {
    fn hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, s] = input_ids.dims();
        let device = input_ids.device();
        let mut x = embedding(self.embed_tokens.val(), input_ids);
        if let Some(first) = self.layers.first() {
            let a = &first.self_attn;
            let rope = Rope::new(s, a.head_dim, self.rope_theta, &device);
            let mask = causal_mask::<B>(s, a.num_heads / a.num_kv_heads, &device);
            for layer in &self.layers {
                x = layer.forward(x, &rope, mask.clone());
            }
        }
        self.norm.forward(x)
    }

    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(h) => h.forward(hidden),
            None => burn::tensor::module::linear(hidden, self.embed_tokens.val().transpose(), None),
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

impl<B: Backend> NamedLinears<B> for Llama<B> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        for (i, l) in self.layers.iter().enumerate() {
            let (a, m) = (&l.self_attn, &l.mlp);
            f(&format!("model.layers.{i}.self_attn.q_proj"), &a.q_proj);
            f(&format!("model.layers.{i}.self_attn.k_proj"), &a.k_proj);
            f(&format!("model.layers.{i}.self_attn.v_proj"), &a.v_proj);
            f(&format!("model.layers.{i}.self_attn.o_proj"), &a.o_proj);
            f(&format!("model.layers.{i}.mlp.gate_proj"), &m.gate_proj);
            f(&format!("model.layers.{i}.mlp.up_proj"), &m.up_proj);
            f(&format!("model.layers.{i}.mlp.down_proj"), &m.down_proj);
        }
        if let Some(h) = &self.lm_head {
            f("lm_head", h);
        }
    }

    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            f(&format!("model.layers.{i}.self_attn.q_proj"), &mut a.q_proj);
            f(&format!("model.layers.{i}.self_attn.k_proj"), &mut a.k_proj);
            f(&format!("model.layers.{i}.self_attn.v_proj"), &mut a.v_proj);
            f(&format!("model.layers.{i}.self_attn.o_proj"), &mut a.o_proj);
            f(&format!("model.layers.{i}.mlp.gate_proj"), &mut m.gate_proj);
            f(&format!("model.layers.{i}.mlp.up_proj"), &mut m.up_proj);
            f(&format!("model.layers.{i}.mlp.down_proj"), &mut m.down_proj);
        }
        if let Some(h) = &mut self.lm_head {
            f("lm_head", h);
        }
    }
}
