//! Llama from a GGUF file (llama.cpp's `convert_hf_to_gguf.py` layout), dequantized to f32;
//! tensor names from the table in `names.rs`.
use super::checkpoint::Slot;
use super::config::LlamaConfig;
use super::model::Llama;
use super::names::{EMBED, LM_HEAD};
use crate::gguf::GgufFile;
use crate::ModelError;
use burn::tensor::backend::Backend;
use serde_json::{json, Value};

impl<B: Backend> Llama<B> {
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
        // The count comes from the metadata: every block must have tensors in the file (found
        // before anything is built for them; at most one more lookup than the blocks present).
        let blocks: std::collections::HashSet<usize> = g
            .tensors()
            .iter()
            .filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse().ok())
            .collect();
        if let Some(missing) = (0..layers).find(|i| !blocks.contains(i)) {
            return Err(cfg_err(
                "llama.block_count",
                format!(
                    "is {layers}, but the file has no tensors of block {missing} (blk.{missing}.*; \
                     {} blocks have tensors)",
                    blocks.len()
                ),
            ));
        }
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

        let (embed, embed_shape) = g.tensor_f32(EMBED.gguf)?;
        if embed_shape.len() != 2 || embed_shape[1] != hidden {
            return Err(ModelError::Shape {
                path: path.clone(),
                key: EMBED.gguf.into(),
                expected: vec![embed_shape.first().copied().unwrap_or(0), hidden],
                got: embed_shape,
            });
        }
        let vocab = embed_shape[0];
        if let Some(v) = opt_u64("llama.vocab_size")? {
            if v != vocab {
                return Err(cfg_err(
                    "llama.vocab_size",
                    format!("{v} differs from the {vocab} rows of {}", EMBED.gguf),
                ));
            }
        }
        let tied = g.tensor_info(LM_HEAD.gguf).is_none();
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
        used.insert(EMBED.gguf.to_string());
        let model = Self::build(&config, device, &mut |slot: &Slot| {
            used.insert(slot.gguf.clone());
            if slot.gguf == EMBED.gguf {
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
