//! [`LlamaConfig`]: Llama hyper-parameters from a Hugging Face `config.json`
//! (transformers `configuration_llama.py`) or built from GGUF metadata.
use crate::config_json::{read_json, Cfg};
use crate::ModelError;
use serde_json::{json, Map, Value};
use std::path::Path;

/// Llama hyper-parameters (transformers `LlamaConfig`; a missing or `null` field in
/// `config.json` takes transformers' default, given in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (default 32000).
    pub vocab_size: usize,
    /// Hidden size `d` (default 4096).
    pub hidden_size: usize,
    /// MLP inner size (default 11008).
    pub intermediate_size: usize,
    /// Number of decoder layers (default 32).
    pub num_hidden_layers: usize,
    /// Query heads (default 32).
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); divides `num_attention_heads`
    /// (default `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// Per-head size, even (default `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// RMSNorm epsilon [1e-6].
    pub rms_norm_eps: f64,
    /// RoPE base θ, default 10000 (`rope_parameters.rope_theta` in transformers 5, `rope_theta`
    /// before).
    pub rope_theta: f64,
    /// Context length the model was trained for, default 2048 (informational; not enforced).
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
    /// fields above overlaid by [`Llama::save_hf`](super::Llama::save_hf).
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
