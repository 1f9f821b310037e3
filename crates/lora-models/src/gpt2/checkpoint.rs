//! GPT-2 from and to a Hugging Face directory (`config.json` + `model.safetensors` or its
//! shards), keys from the table in `names.rs`.
use super::config::Gpt2Config;
use super::model::{BlockParts, Gpt2, Gpt2Block};
use super::names::{block, is_ignored, BlockLinear, BlockNorm, LN_F, PREFIX, WPE, WTE};
use crate::export::{ensure_dir, put_tensor, save_json, save_safetensors, StTensors};
use crate::layers::{frozen, LayerNorm};
use crate::weights::Weights;
use crate::ModelError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_core::LoraLinear;
use std::collections::HashSet;
use std::path::Path;

/// Reads tensors `{prefix}{module}.{part}` from a checkpoint, remembering every key it read.
struct Keys<'a, B: Backend> {
    st: &'a Weights,
    prefix: &'static str,
    device: &'a B::Device,
    used: HashSet<String>,
    config: &'a Gpt2Config,
    /// Module name of the block being read (`h.{i}`).
    block: String,
}

impl<B: Backend> Keys<'_, B> {
    fn tensor<const D: usize>(
        &mut self,
        module: &str,
        part: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, ModelError> {
        let key = format!("{}{module}.{part}", self.prefix);
        let t = self.st.tensor::<B, D>(&key, shape, self.device)?;
        self.used.insert(key);
        Ok(t)
    }

    fn layer_norm(&mut self, module: &str) -> Result<LayerNorm<B>, ModelError> {
        let c = self.config;
        Ok(LayerNorm {
            weight: frozen(self.tensor(module, "weight", [c.n_embd])?),
            bias: frozen(self.tensor(module, "bias", [c.n_embd])?),
            eps: c.layer_norm_epsilon,
        })
    }

    /// A Conv1D layer: weight `[in, out]` (no transpose) and bias `[out]`.
    fn conv(&mut self, module: &str, [din, dout]: [usize; 2]) -> Result<LoraLinear<B>, ModelError> {
        let w = self.tensor(module, "weight", [din, dout])?;
        let b = self.tensor(module, "bias", [dout])?;
        Ok(LoraLinear::new(w, Some(b), true)?)
    }
}

impl<B: Backend> BlockParts<B> for Keys<'_, B> {
    fn norm(&mut self, slot: &BlockNorm<B>) -> Result<LayerNorm<B>, ModelError> {
        self.layer_norm(&format!("{}.{}", self.block, slot.name))
    }

    fn linear(&mut self, slot: &BlockLinear<B>) -> Result<LoraLinear<B>, ModelError> {
        let dims = (slot.dims)(self.config);
        self.conv(&format!("{}.{}", self.block, slot.name), dims)
    }
}

impl<B: Backend> Gpt2<B> {
    /// Loads `dir/config.json` and `dir/model.safetensors`, or the shards of
    /// `dir/model.safetensors.index.json` ([`Weights::open_dir`]; F32, F16 or BF16 tensors,
    /// widened to f32) (transformers `GPT2LMHeadModel`,
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
        let st = Weights::open_dir(dir)?;
        let model = Self::from_safetensors(&st, &config, device)?;
        Ok((model, config))
    }

    /// Builds the model from an open checkpoint (one file or shards) and its config. Errors as [`Gpt2::load`].
    pub fn from_safetensors(
        st: &Weights,
        c: &Gpt2Config,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let prefix = if st.contains(&format!("{PREFIX}{WTE}.weight")) {
            PREFIX
        } else {
            ""
        };
        let mut keys = Keys::<B> {
            st,
            prefix,
            device,
            used: HashSet::new(),
            config: c,
            block: String::new(),
        };
        // Not `with_capacity(layer count)`: the count comes from the file, and a bogus one
        // must fail at the first missing layer tensor, not allocate for it.
        let mut h = Vec::new();
        for i in 0..c.n_layer {
            keys.block = block(i);
            h.push(Gpt2Block::build(c, i, &mut keys)?);
        }
        let ln_f = keys.layer_norm(LN_F)?;
        let wte = keys.tensor(WTE, "weight", [c.vocab_size, c.n_embd])?;
        let wpe = keys.tensor(WPE, "weight", [c.n_positions, c.n_embd])?;
        // Every other tensor must be one we know to ignore: never skip weights silently.
        for name in st.names() {
            if !keys.used.contains(&name) && !is_ignored(&name) {
                return Err(ModelError::format(
                    st.path_of(&name),
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

    /// Writes `dir/model.safetensors` (transformers `GPT2LMHeadModel` layout: keys
    /// `transformer.…`, Conv1D weights `[in, out]`, tied `lm_head` not stored, metadata
    /// `{"format":"pt"}`) and `dir/config.json` ([`Gpt2Config::to_json`]), each atomically.
    /// Attached adapters are merged into the written weights (the model itself is unchanged);
    /// quantized bases are written dequantized, so the file holds dense f32 weights.
    ///
    /// # Errors
    /// [`ModelError::Write`] if `dir` cannot be created or a file cannot be written;
    /// [`ModelError::Format`] if serialization fails.
    pub fn save_hf(&self, config: &Gpt2Config, dir: &Path) -> Result<(), ModelError> {
        ensure_dir(dir)?;
        let path = dir.join("model.safetensors");
        let p = &path;
        let mut t = StTensors::new();
        let put_ln = |t: &mut StTensors, module: &str, l: &LayerNorm<B>| {
            put_tensor(t, &format!("{module}.weight"), l.weight.val(), p)?;
            put_tensor(t, &format!("{module}.bias"), l.bias.val(), p)
        };
        put_tensor(&mut t, &format!("{PREFIX}{WTE}.weight"), self.wte.val(), p)?;
        put_tensor(&mut t, &format!("{PREFIX}{WPE}.weight"), self.wpe.val(), p)?;
        for (i, blk) in self.h.iter().enumerate() {
            let pre = format!("{PREFIX}{}", block(i));
            for n in &Gpt2Block::<B>::NORMS {
                put_ln(&mut t, &format!("{pre}.{}", n.name), (n.get)(blk))?;
            }
            for s in &Gpt2Block::<B>::LINEARS {
                let (w, bias) = (s.get)(blk).merged_base()?;
                put_tensor(&mut t, &format!("{pre}.{}.weight", s.name), w, p)?;
                if let Some(b) = bias {
                    put_tensor(&mut t, &format!("{pre}.{}.bias", s.name), b, p)?;
                }
            }
        }
        put_ln(&mut t, &format!("{PREFIX}{LN_F}"), &self.ln_f)?;
        save_safetensors(&path, &t)?;
        save_json(&dir.join("config.json"), &config.to_json())
    }
}
