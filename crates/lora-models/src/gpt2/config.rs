//! [`Gpt2Config`]: GPT-2's hyper-parameters, read from and written to a Hugging Face
//! `config.json` (transformers `configuration_gpt2.py`).
use crate::config_json::{read_json, Cfg};
use crate::ModelError;
use serde_json::{Map, Value};
use std::path::Path;

/// GPT-2 hyper-parameters, read from a Hugging Face `config.json` (transformers'
/// `GPT2Config`; a missing or `null` field takes transformers' default, given in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Vocabulary size `V` (default 50257).
    pub vocab_size: usize,
    /// Number of learned positions (maximum sequence length) (default 1024).
    pub n_positions: usize,
    /// Hidden size `d` (default 768).
    pub n_embd: usize,
    /// Number of transformer blocks (default 12).
    pub n_layer: usize,
    /// Attention heads; must divide `n_embd` (default 12).
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
    /// [`Gpt2::save_hf`](super::Gpt2::save_hf).
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
