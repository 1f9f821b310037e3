//! GPT-2 (Radford et al. 2019) with every linear layer a [`LoraLinear`].
//!
//! Reference implementation: Hugging Face transformers `models/gpt2/modeling_gpt2.py`
//! (`GPT2LMHeadModel`, `GPT2Block`, `GPT2Attention`, `GPT2MLP`, `Conv1D`) and
//! `configuration_gpt2.py` (defaults). Weights are read from and written to a Hugging Face
//! directory (`config.json` + `model.safetensors`). GPT-2's `Conv1D` stores its weight
//! `[in, out]`, the layout of [`LoraLinear`], so nothing is transposed (`fan_in_fan_out = true`).
//!
//! The module also holds the helpers the Llama model shares: config-field readers, the causal
//! attention, tensor export and atomic file writing.

use crate::st::StFile;
use crate::{LanguageModel, ModelError};
use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor, TensorData};
use lora_core::{LoraLinear, NamedLinears};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// GPT-2 hyper-parameters, read from a Hugging Face `config.json` (transformers'
/// `GPT2Config`; a missing or `null` field takes transformers' default, given in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Vocabulary size `V` [50257].
    pub vocab_size: usize,
    /// Number of learned positions (maximum sequence length) [1024].
    pub n_positions: usize,
    /// Hidden size `d` [768].
    pub n_embd: usize,
    /// Number of transformer blocks [12].
    pub n_layer: usize,
    /// Attention heads; must divide `n_embd` [12].
    pub n_head: usize,
    /// Inner size of the MLP (`n_inner`, [`null` → 4·`n_embd`]).
    pub n_inner: usize,
    /// LayerNorm epsilon [1e-5].
    pub layer_norm_epsilon: f64,
    /// `activation_function` ["gelu_new"].
    pub activation_function: Gpt2Activation,
    /// Scale attention scores by 1/√head_dim (`scale_attn_weights`) [true].
    pub scale_attn_weights: bool,
    /// Also scale block `i`'s scores by 1/(i+1) (`scale_attn_by_inverse_layer_idx`) [false].
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Number of labels of a sequence-classification head: the size of `id2label` if present,
    /// else `num_labels`, else `None` (transformers then uses 2, and omits the default 2 labels
    /// when it saves a config).
    pub num_labels: Option<usize>,
    /// `pad_token_id`, if set (used by the classification head to find the last real token).
    pub pad_token_id: Option<u32>,
    /// The whole original `config.json`, written back (with the fields above overlaid) by
    /// [`Gpt2::save_hf`].
    pub raw: Value,
}

/// GPT-2's MLP activation (`activation_function` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpt2Activation {
    /// `"gelu_new"`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (transformers `NewGELUActivation`).
    GeluNew,
    /// `"gelu"`: exact `0.5·x·(1 + erf(x/√2))` (transformers `GELUActivation`).
    Gelu,
}

impl Gpt2Activation {
    /// The `config.json` spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Gpt2Activation::GeluNew => "gelu_new",
            Gpt2Activation::Gelu => "gelu",
        }
    }
}

impl Gpt2Config {
    /// The factor block `layer_idx` (0-based) multiplies its attention scores by:
    /// 1/√head_dim if `scale_attn_weights`, times 1/(layer_idx+1) if
    /// `scale_attn_by_inverse_layer_idx` (transformers `GPT2Attention._attn`). Unitless.
    pub fn attn_scale(&self, layer_idx: usize) -> f64 {
        let mut scale = 1.0;
        if self.scale_attn_weights {
            scale /= ((self.n_embd / self.n_head) as f64).sqrt();
        }
        if self.scale_attn_by_inverse_layer_idx {
            scale /= (layer_idx + 1) as f64;
        }
        scale
    }

    /// Reads and validates `path` (a `config.json`).
    ///
    /// # Errors
    /// [`ModelError::Io`] if unreadable, [`ModelError::Format`] if not a JSON object,
    /// [`ModelError::Config`] naming the key for a wrong type, a zero size, `n_head` not
    /// dividing `n_embd`, or an `activation_function` other than `gelu_new`/`gelu`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let raw = read_json(path)?;
        Self::from_json(raw, path)
    }

    /// Parses a `config.json` value; `path` is only used in error messages. See
    /// [`Gpt2Config::from_file`] for the errors.
    pub fn from_json(raw: Value, path: &Path) -> Result<Self, ModelError> {
        let c = Cfg { v: &raw, path };
        let n_embd = c.usize_pos("n_embd", Some(768))?;
        let n_head = c.usize_pos("n_head", Some(12))?;
        if n_embd % n_head != 0 {
            return Err(c.err(
                "n_head",
                format!("n_head = {n_head} does not divide n_embd = {n_embd}"),
            ));
        }
        let activation_function = match c.str("activation_function", Some("gelu_new"))?.as_str() {
            "gelu_new" => Gpt2Activation::GeluNew,
            "gelu" => Gpt2Activation::Gelu,
            other => {
                return Err(c.err(
                    "activation_function",
                    format!("unsupported activation {other:?}; expected \"gelu_new\" or \"gelu\""),
                ))
            }
        };
        let n_inner = match c.opt_usize("n_inner")? {
            Some(0) => return Err(c.err("n_inner", "must be positive".into())),
            Some(n) => n,
            None => 4 * n_embd,
        };
        Ok(Self {
            vocab_size: c.usize_pos("vocab_size", Some(50257))?,
            n_positions: c.usize_pos("n_positions", Some(1024))?,
            n_embd,
            n_layer: c.usize_pos("n_layer", Some(12))?,
            n_head,
            n_inner,
            layer_norm_epsilon: c.f64("layer_norm_epsilon", Some(1e-5))?,
            activation_function,
            scale_attn_weights: c.bool("scale_attn_weights", Some(true))?,
            scale_attn_by_inverse_layer_idx: c
                .bool("scale_attn_by_inverse_layer_idx", Some(false))?,
            num_labels: c.num_labels()?,
            pad_token_id: c.pad_token_id()?,
            raw,
        })
    }

    /// The `config.json` to write: the original JSON with this struct's fields overlaid
    /// (`model_type` = `"gpt2"`, `architectures` kept or set to `["GPT2LMHeadModel"]`).
    pub fn to_json(&self) -> Value {
        let mut m = match &self.raw {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        m.insert("model_type".into(), "gpt2".into());
        m.entry("architectures")
            .or_insert_with(|| serde_json::json!(["GPT2LMHeadModel"]));
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("n_positions".into(), self.n_positions.into());
        m.insert("n_embd".into(), self.n_embd.into());
        m.insert("n_layer".into(), self.n_layer.into());
        m.insert("n_head".into(), self.n_head.into());
        m.insert(
            "n_inner".into(),
            if self.n_inner == 4 * self.n_embd {
                Value::Null
            } else {
                self.n_inner.into()
            },
        );
        m.insert("layer_norm_epsilon".into(), self.layer_norm_epsilon.into());
        m.insert(
            "activation_function".into(),
            self.activation_function.as_str().into(),
        );
        m.insert("scale_attn_weights".into(), self.scale_attn_weights.into());
        m.insert(
            "scale_attn_by_inverse_layer_idx".into(),
            self.scale_attn_by_inverse_layer_idx.into(),
        );
        m.insert("tie_word_embeddings".into(), true.into());
        if let Some(p) = self.pad_token_id {
            m.insert("pad_token_id".into(), p.into());
        }
        Value::Object(m)
    }
}

/// Typed access to the fields of a `config.json` object, with errors naming file and key.
pub(crate) struct Cfg<'a> {
    pub v: &'a Value,
    pub path: &'a Path,
}

impl Cfg<'_> {
    pub fn err(&self, key: &str, msg: String) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            key: key.into(),
            msg,
        }
    }
    /// The value of `key`, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.v.get(key).filter(|x| !x.is_null())
    }
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {x}"))),
        }
    }
    /// A positive integer; `default` when absent (an error naming the key if no default).
    pub fn usize_pos(&self, key: &str, default: Option<usize>) -> Result<usize, ModelError> {
        let n = match (self.opt_usize(key)?, default) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(ModelError::MissingKey {
                    path: self.path.to_path_buf(),
                    key: key.into(),
                })
            }
        };
        if n == 0 {
            return Err(self.err(key, "must be positive, got 0".into()));
        }
        Ok(n)
    }
    pub fn f64(&self, key: &str, default: Option<f64>) -> Result<f64, ModelError> {
        match (self.get(key), default) {
            (Some(x), _) => x
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.err(key, format!("expected a number, got {x}"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ModelError::MissingKey {
                path: self.path.to_path_buf(),
                key: key.into(),
            }),
        }
    }
    pub fn bool(&self, key: &str, default: Option<bool>) -> Result<bool, ModelError> {
        match (self.get(key), default) {
            (Some(x), _) => x
                .as_bool()
                .ok_or_else(|| self.err(key, format!("expected true or false, got {x}"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ModelError::MissingKey {
                path: self.path.to_path_buf(),
                key: key.into(),
            }),
        }
    }
    pub fn str(&self, key: &str, default: Option<&str>) -> Result<String, ModelError> {
        match (self.get(key), default) {
            (Some(x), _) => x
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.err(key, format!("expected a string, got {x}"))),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(ModelError::MissingKey {
                path: self.path.to_path_buf(),
                key: key.into(),
            }),
        }
    }
    /// `id2label`'s size, else `num_labels`, else `None` (transformers `PretrainedConfig`).
    pub fn num_labels(&self) -> Result<Option<usize>, ModelError> {
        match self.get("id2label") {
            Some(Value::Object(m)) => Ok(Some(m.len())),
            Some(x) => Err(self.err("id2label", format!("expected an object, got {x}"))),
            None => self.opt_usize("num_labels"),
        }
    }
    /// `pad_token_id` as a token id, if set.
    pub fn pad_token_id(&self) -> Result<Option<u32>, ModelError> {
        match self.get("pad_token_id") {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.err("pad_token_id", format!("expected a token id, got {x}"))),
        }
    }
}

/// Reads a JSON object from `path`.
pub(crate) fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(path, format!("invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ModelError::format(path, "expected a JSON object"));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Shared building blocks
// ---------------------------------------------------------------------------------------------

/// LayerNorm over the last dimension: `(x − mean)/√(var + eps)·weight + bias`, biased variance
/// (PyTorch `nn.LayerNorm`). Parameters are frozen.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale `[d]` (HF `…ln_*.weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Shift `[d]` (HF `…ln_*.bias`).
    pub bias: Param<Tensor<B, 1>>,
    /// Epsilon added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let xhat = (x - mean) * var.add_scalar(self.eps).sqrt().recip();
        xhat * self.weight.val().unsqueeze::<3>() + self.bias.val().unsqueeze::<3>()
    }
}

/// Frozen parameter from a tensor.
pub(crate) fn frozen<B: Backend, const D: usize>(t: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(t).set_require_grad(false)
}

/// Additive causal mask `[1, 1, groups·seq, seq]`: row `r` is query position `r mod seq`; entry
/// `(r, c)` is `0` if `c ≤ r mod seq`, else `−∞`. `groups` query heads share one key head
/// (grouped-query attention with the query heads folded into the row axis); 1 for GPT-2.
pub(crate) fn causal_mask<B: Backend>(
    seq: usize,
    groups: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut m = vec![0f32; groups * seq * seq];
    for r in 0..groups * seq {
        let q = r % seq;
        for c in (q + 1)..seq {
            m[r * seq + c] = f32::NEG_INFINITY;
        }
    }
    Tensor::from_data(TensorData::new(m, [1, 1, groups * seq, seq]), device)
}

/// Causal scaled dot-product attention, `softmax(q·kᵀ + mask)·v`.
///
/// `q` `[batch, kv_heads, groups·seq, head_dim]`, already multiplied by the score scale;
/// `k`, `v` `[batch, kv_heads, seq, head_dim]`; `mask` from [`causal_mask`] with the same
/// `groups`. Returns `[batch, kv_heads, groups·seq, head_dim]`.
pub(crate) fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let scores = q.matmul(k.swap_dims(2, 3)) + mask;
    softmax(scores, 3).matmul(v)
}


/// Row-major `[rows, cols]` → `[cols, rows]`.
pub(crate) fn transpose_vec(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// A tensor's values as f32 (any float dtype is converted) with its shape.
pub(crate) fn tensor_values<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    path: &Path,
) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
    let shape = t.dims().to_vec();
    let vals = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::format(path, format!("cannot read tensor values: {e:?}")))?;
    Ok((vals, shape))
}

/// Adds tensor `x` under `key` to `t` (`path` names the destination in errors).
pub(crate) fn put_tensor<B: Backend, const D: usize>(
    t: &mut StTensors,
    key: &str,
    x: Tensor<B, D>,
    path: &Path,
) -> Result<(), ModelError> {
    let (v, s) = tensor_values(x, path)?;
    t.insert(key.to_string(), (s, v));
    Ok(())
}

/// Tensors to be written into a safetensors file: name → (shape, f32 values).
pub(crate) type StTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    lora_core::atomic_write(path, bytes).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes F32 tensors to a safetensors file atomically, with metadata `{"format": "pt"}` (what
/// transformers' `save_pretrained` writes).
pub(crate) fn save_safetensors(path: &Path, tensors: &StTensors) -> Result<(), ModelError> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, vals))| {
            (
                k.clone(),
                shape.clone(),
                vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, shape, b) in &bytes {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .map_err(|e| ModelError::format(path, format!("tensor `{k}`: {e}")))?;
        views.push((k.as_str(), view));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::format(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &out)
}

/// Writes `config` as pretty JSON to `path` atomically.
pub(crate) fn save_json(path: &Path, config: &Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(config)
        .map_err(|e| ModelError::format(path, format!("cannot serialize JSON: {e}")))?;
    write_atomic(path, text.as_bytes())
}

/// Creates `dir` (and parents) if needed.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

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
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`; `mask` from [`causal_mask`] (groups 1).
    pub fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let h = self.n_head;
        let hd = d / h;
        let qkv = self.c_attn.forward(x);
        let heads = |t: Tensor<B, 3>| t.reshape([b, s, h, hd]).swap_dims(1, 2);
        let q = heads(qkv.clone().narrow(2, 0, d)).mul_scalar(self.scale);
        let k = heads(qkv.clone().narrow(2, d, d));
        let v = heads(qkv.narrow(2, 2 * d, d));
        let ctx = causal_attention(q, k, v, mask)
            .swap_dims(1, 2)
            .reshape([b, s, d]);
        self.c_proj.forward(ctx)
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

/// `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (transformers `NewGELUActivation`).
pub fn gelu_new<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const C: f64 = 0.797_884_560_802_865_4; // √(2/π)
    let inner = x.clone() * (x.clone().square().mul_scalar(0.044715).add_scalar(1.0)) * C;
    x * (inner.tanh().add_scalar(1.0)) * 0.5
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
}

impl<B: Backend> Gpt2Block<B> {
    /// `x` `[batch, seq, d]` → `[batch, seq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

/// GPT-2 language model (`GPT2LMHeadModel`) with the LM head tied to `wte`.
///
/// All base parameters are frozen; adapters are attached through [`NamedLinears`] with the module
/// names `transformer.h.{i}.attn.c_attn`, `transformer.h.{i}.attn.c_proj`,
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
    /// Loads `dir/config.json` and `dir/model.safetensors` (transformers `GPT2LMHeadModel`,
    /// `GPT2Model` or `GPT2ForSequenceClassification` layout: keys with or without the
    /// `transformer.` prefix). The buffers `attn.bias` / `attn.masked_bias`, the tied
    /// `lm_head.weight` and a classification head `score.weight` are ignored.
    ///
    /// # Errors
    /// [`ModelError::Io`] (missing file), [`ModelError::Format`] (truncated or invalid
    /// safetensors or JSON, or an unexpected tensor), [`ModelError::Config`] (bad config value),
    /// [`ModelError::MissingKey`], [`ModelError::Shape`] (tensor shape differs from the config),
    /// [`ModelError::Dtype`]; each names the file and key.
    pub fn load(dir: &Path, device: &B::Device) -> Result<(Self, Gpt2Config), ModelError> {
        let config = Gpt2Config::from_file(dir.join("config.json"))?;
        let st = StFile::open(dir.join("model.safetensors"))?;
        let model = Self::from_safetensors(&st, &config, device)?;
        Ok((model, config))
    }

    /// Builds the model from an open checkpoint and its config. Errors as [`Gpt2::load`].
    pub fn from_safetensors(
        st: &StFile,
        c: &Gpt2Config,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let prefix = if st.contains("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        let mut used = std::collections::HashSet::new();
        let mut get1 = |key: String, n: usize| -> Result<Tensor<B, 1>, ModelError> {
            let t = st.tensor::<B, 1>(&key, [n], device)?;
            used.insert(key);
            Ok(t)
        };
        let d = c.n_embd;
        let mut ln = |name: &str| -> Result<LayerNorm<B>, ModelError> {
            Ok(LayerNorm {
                weight: frozen(get1(format!("{prefix}{name}.weight"), d)?),
                bias: frozen(get1(format!("{prefix}{name}.bias"), d)?),
                eps: c.layer_norm_epsilon,
            })
        };
        let mut lns = Vec::new();
        for i in 0..c.n_layer {
            lns.push((ln(&format!("h.{i}.ln_1"))?, ln(&format!("h.{i}.ln_2"))?));
        }
        let ln_f = ln("ln_f")?;
        let mut used2 = std::collections::HashSet::new();
        let mut conv =
            |name: String, din: usize, dout: usize| -> Result<LoraLinear<B>, ModelError> {
                let wk = format!("{prefix}{name}.weight");
                let bk = format!("{prefix}{name}.bias");
                let w = st.tensor::<B, 2>(&wk, [din, dout], device)?;
                let b = st.tensor::<B, 1>(&bk, [dout], device)?;
                used2.insert(wk);
                used2.insert(bk);
                Ok(LoraLinear::new(w, Some(b), true)?)
            };
        let mut h = Vec::with_capacity(c.n_layer);
        for (i, (ln_1, ln_2)) in lns.into_iter().enumerate() {
            let scale = c.attn_scale(i);
            h.push(Gpt2Block {
                ln_1,
                attn: Gpt2Attention {
                    c_attn: conv(format!("h.{i}.attn.c_attn"), d, 3 * d)?,
                    c_proj: conv(format!("h.{i}.attn.c_proj"), d, d)?,
                    n_head: c.n_head,
                    scale,
                },
                ln_2,
                mlp: Gpt2Mlp {
                    c_fc: conv(format!("h.{i}.mlp.c_fc"), d, c.n_inner)?,
                    c_proj: conv(format!("h.{i}.mlp.c_proj"), c.n_inner, d)?,
                    gelu_exact: c.activation_function == Gpt2Activation::Gelu,
                },
            });
        }
        let wte_k = format!("{prefix}wte.weight");
        let wpe_k = format!("{prefix}wpe.weight");
        let wte = st.tensor::<B, 2>(&wte_k, [c.vocab_size, d], device)?;
        let wpe = st.tensor::<B, 2>(&wpe_k, [c.n_positions, d], device)?;
        // Every other tensor must be one we know to ignore: never skip weights silently.
        for name in st.names() {
            let known = used.contains(&name)
                || used2.contains(&name)
                || name == wte_k
                || name == wpe_k
                || name == "lm_head.weight"
                || name == "score.weight"
                || name.ends_with(".attn.bias")
                || name.ends_with(".attn.masked_bias");
            if !known {
                return Err(ModelError::format(
                    &st.path,
                    format!(
                        "unexpected tensor `{name}` for a GPT-2 model with {} layers",
                        c.n_layer
                    ),
                ));
            }
        }
        Ok(Self {
            wte: frozen(wte),
            wpe: frozen(wpe),
            h,
            ln_f,
        })
    }

    /// Maximum sequence length (rows of `wpe`).
    pub fn n_positions(&self) -> usize {
        self.wpe.dims()[0]
    }

    /// Writes `dir/model.safetensors` (transformers `GPT2LMHeadModel` layout: keys
    /// `transformer.…`, Conv1D weights `[in, out]`, tied `lm_head` not stored, metadata
    /// `{"format":"pt"}`) and `dir/config.json` ([`Gpt2Config::to_json`]), each atomically.
    /// Attached adapters are merged into the written weights (the model itself is unchanged);
    /// quantized bases are written dequantized, so the file holds dense f32 weights.
    ///
    /// # Errors
    /// [`ModelError::Io`] if `dir` cannot be created or a file cannot be written;
    /// [`ModelError::Format`] if serialization fails.
    pub fn save_hf(&self, config: &Gpt2Config, dir: &Path) -> Result<(), ModelError> {
        ensure_dir(dir)?;
        let path = dir.join("model.safetensors");
        let mut t = StTensors::new();
        let p = &path;
        put_tensor(&mut t, "transformer.wte.weight", self.wte.val(), p)?;
        put_tensor(&mut t, "transformer.wpe.weight", self.wpe.val(), p)?;
        let mut lns: Vec<(String, &LayerNorm<B>)> = Vec::new();
        for (i, blk) in self.h.iter().enumerate() {
            let pre = format!("transformer.h.{i}");
            lns.push((format!("{pre}.ln_1"), &blk.ln_1));
            lns.push((format!("{pre}.ln_2"), &blk.ln_2));
            for (name, l) in [
                ("attn.c_attn", &blk.attn.c_attn),
                ("attn.c_proj", &blk.attn.c_proj),
                ("mlp.c_fc", &blk.mlp.c_fc),
                ("mlp.c_proj", &blk.mlp.c_proj),
            ] {
                put_tensor(&mut t, &format!("{pre}.{name}.weight"), l.merged_weight(), p)?;
                if let Some(b) = l.bias() {
                    put_tensor(&mut t, &format!("{pre}.{name}.bias"), b, p)?;
                }
            }
        }
        lns.push(("transformer.ln_f".into(), &self.ln_f));
        for (name, l) in lns {
            put_tensor(&mut t, &format!("{name}.weight"), l.weight.val(), p)?;
            put_tensor(&mut t, &format!("{name}.bias"), l.bias.val(), p)?;
        }
        save_safetensors(&path, &t)?;
        save_json(&dir.join("config.json"), &config.to_json())
    }
}

/// The linear (Conv1D) layers of a GPT-2 block, as PEFT names them (`c_proj` matches both
/// `attn.c_proj` and `mlp.c_proj`): the default LoRA targets of `finetune`; PEFT's own default
/// is `c_attn`.
pub const LORA_TARGETS: [&str; 3] = ["c_attn", "c_proj", "c_fc"];

impl<B: Backend> LanguageModel<B> for Gpt2<B> {
    /// # Panics
    /// If `seq` exceeds `n_positions` (GPT-2 has no position embedding beyond it).
    fn hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, s] = input_ids.dims();
        assert!(
            s <= self.n_positions(),
            "GPT-2: sequence length {s} exceeds n_positions = {}",
            self.n_positions()
        );
        let device = input_ids.device();
        let pos = self.wpe.val().narrow(0, 0, s).unsqueeze::<3>();
        let mut x = embedding(self.wte.val(), input_ids) + pos;
        let mask = causal_mask::<B>(s, 1, &device);
        for blk in &self.h {
            x = blk.forward(x, mask.clone());
        }
        self.ln_f.forward(x)
    }

    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        burn::tensor::module::linear(hidden, self.wte.val().transpose(), None)
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

impl<B: Backend> NamedLinears<B> for Gpt2<B> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        for (i, blk) in self.h.iter().enumerate() {
            f(&format!("transformer.h.{i}.attn.c_attn"), &blk.attn.c_attn);
            f(&format!("transformer.h.{i}.attn.c_proj"), &blk.attn.c_proj);
            f(&format!("transformer.h.{i}.mlp.c_fc"), &blk.mlp.c_fc);
            f(&format!("transformer.h.{i}.mlp.c_proj"), &blk.mlp.c_proj);
        }
    }

    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        for (i, blk) in self.h.iter_mut().enumerate() {
            f(
                &format!("transformer.h.{i}.attn.c_attn"),
                &mut blk.attn.c_attn,
            );
            f(
                &format!("transformer.h.{i}.attn.c_proj"),
                &mut blk.attn.c_proj,
            );
            f(&format!("transformer.h.{i}.mlp.c_fc"), &mut blk.mlp.c_fc);
            f(
                &format!("transformer.h.{i}.mlp.c_proj"),
                &mut blk.mlp.c_proj,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random initialisation (benchmarks)
// ---------------------------------------------------------------------------------------------

impl Gpt2Config {
    /// The configuration of transformers' `GPT2Config()` defaults, the 124M-parameter GPT-2
    /// ("gpt2"): vocab 50257, n_positions 1024, n_embd 768, n_layer 12, n_head 12, gelu_new.
    pub fn gpt2_124m() -> Self {
        Self::from_json(serde_json::json!({}), Path::new("<GPT2Config() defaults>"))
            .expect("transformers' GPT2Config defaults are a valid config")
    }

    /// A GPT-2 with the given sizes and transformers' defaults for everything else (used for
    /// small CPU benchmarks and tests: e.g. `sized(1000, 128, 64, 2, 4)`).
    ///
    /// # Errors
    /// [`ModelError::Config`] for a zero size or `n_head` not dividing `n_embd`.
    pub fn sized(
        vocab_size: usize,
        n_positions: usize,
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
    ) -> Result<Self, ModelError> {
        Self::from_json(
            serde_json::json!({
                "vocab_size": vocab_size,
                "n_positions": n_positions,
                "n_embd": n_embd,
                "n_layer": n_layer,
                "n_head": n_head,
            }),
            Path::new("<Gpt2Config::sized>"),
        )
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
        let ln = || LayerNorm {
            weight: frozen(Tensor::<B, 1>::ones([d], device)),
            bias: frozen(Tensor::<B, 1>::zeros([d], device)),
            eps: c.layer_norm_epsilon,
        };
        let proj_std = 0.02 / ((2 * c.n_layer) as f64).sqrt();
        let conv = |din: usize, dout: usize, std: f64| -> Result<LoraLinear<B>, ModelError> {
            Ok(LoraLinear::new(
                normal([din, dout], std),
                Some(Tensor::<B, 1>::zeros([dout], device)),
                true,
            )?)
        };
        let mut h = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let scale = c.attn_scale(i);
            h.push(Gpt2Block {
                ln_1: ln(),
                attn: Gpt2Attention {
                    c_attn: conv(d, 3 * d, 0.02)?,
                    c_proj: conv(d, d, proj_std)?,
                    n_head: c.n_head,
                    scale,
                },
                ln_2: ln(),
                mlp: Gpt2Mlp {
                    c_fc: conv(d, c.n_inner, 0.02)?,
                    c_proj: conv(c.n_inner, d, proj_std)?,
                    gelu_exact: c.activation_function == Gpt2Activation::Gelu,
                },
            });
        }
        Ok(Self {
            wte: frozen(normal([c.vocab_size, d], 0.02)),
            wpe: frozen(normal([c.n_positions, d], 0.02)),
            h,
            ln_f: ln(),
        })
    }
}
