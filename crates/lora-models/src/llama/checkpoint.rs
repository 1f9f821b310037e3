//! Llama from and to a Hugging Face directory (`config.json` + `model.safetensors` or its
//! shards), keys from the table in `names.rs`; [`Llama::build`] also serves the GGUF loader.
use super::config::LlamaConfig;
use super::model::{LayerParts, Llama, LlamaLayer};
use super::names::{
    gguf_layer, is_ignored, layer, LayerLinear, LayerNormSlot, EMBED, FINAL_NORM, LM_HEAD,
};
use crate::export::{
    ensure_dir, put_tensor, save_json, save_safetensors, transpose_vec, StTensors,
};
use crate::layers::{frozen, RmsNorm};
use crate::weights::Weights;
use crate::ModelError;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lora_core::LoraLinear;
use std::collections::HashSet;
use std::path::Path;

/// One tensor the model needs: its Hugging Face and GGUF names and its PyTorch-order shape.
pub(crate) struct Slot {
    /// Hugging Face key (`model.layers.0.self_attn.q_proj.weight`).
    pub hf: String,
    /// GGUF name (`blk.0.attn_q.weight`).
    pub gguf: String,
    /// Shape in PyTorch order (`[out, in]` for a linear weight).
    pub shape: Vec<usize>,
    /// For `attn_q`/`attn_k` in GGUF: the head count llama.cpp permuted the rows with.
    pub rope_heads: Option<usize>,
}

/// A source of tensors in Hugging Face layout, asked by [`Slot`] (it checks the shape).
pub(crate) type Fetch<'a> = dyn FnMut(&Slot) -> Result<Vec<f32>, ModelError> + 'a;

/// [`LayerParts`] over a [`Fetch`]: the slots of decoder layer `layer`.
struct FetchParts<'a, 'f, B: Backend> {
    c: &'a LlamaConfig,
    device: &'a B::Device,
    fetch: &'a mut Fetch<'f>,
    layer: usize,
}

impl<B: Backend> FetchParts<'_, '_, B> {
    fn norm_from(&mut self, hf: String, gguf: String) -> Result<RmsNorm<B>, ModelError> {
        let d = self.c.hidden_size;
        let v = (self.fetch)(&Slot {
            hf,
            gguf,
            shape: vec![d],
            rope_heads: None,
        })?;
        Ok(RmsNorm {
            weight: frozen(Tensor::from_data(TensorData::new(v, [d]), self.device)),
            eps: self.c.rms_norm_eps,
        })
    }

    /// HF nn.Linear weight `[out, in]` → LoraLinear `[in, out]`.
    fn linear_from(&mut self, s: Slot) -> Result<LoraLinear<B>, ModelError> {
        let (out, inp) = (s.shape[0], s.shape[1]);
        let v = (self.fetch)(&s)?;
        let w = Tensor::from_data(
            TensorData::new(transpose_vec(&v, out, inp), [inp, out]),
            self.device,
        );
        Ok(LoraLinear::new(w, None, false)?)
    }
}

impl<B: Backend> LayerParts<B> for FetchParts<'_, '_, B> {
    fn norm(&mut self, slot: &LayerNormSlot<B>) -> Result<RmsNorm<B>, ModelError> {
        let i = self.layer;
        self.norm_from(
            format!("{}.{}.weight", layer(i), slot.name),
            format!("{}.{}.weight", gguf_layer(i), slot.gguf),
        )
    }

    fn linear(&mut self, slot: &LayerLinear<B>) -> Result<LoraLinear<B>, ModelError> {
        let i = self.layer;
        let s = Slot {
            hf: format!("{}.{}.weight", layer(i), slot.name),
            gguf: format!("{}.{}.weight", gguf_layer(i), slot.gguf),
            shape: (slot.shape)(self.c).to_vec(),
            rope_heads: (slot.rope_heads)(self.c),
        };
        self.linear_from(s)
    }
}

impl<B: Backend> Llama<B> {
    /// Loads `dir/config.json` and `dir/model.safetensors`, or the shards of
    /// `dir/model.safetensors.index.json` ([`Weights::open_dir`]; F32, F16 or BF16 tensors,
    /// widened to f32) (transformers `LlamaForCausalLM` layout, keys `model.…`, `lm_head.weight` when untied; a `LlamaModel` checkpoint without the
    /// `model.` prefix also works). A classification head `score.weight`, the obsolete
    /// `rotary_emb.inv_freq` buffers and a redundant `lm_head.weight` of a tied model are ignored.
    ///
    /// # Errors
    /// [`ModelError::Io`] (missing file), [`ModelError::Format`] (truncated/invalid file, or an
    /// unexpected tensor), [`ModelError::Config`], [`ModelError::MissingKey`],
    /// [`ModelError::Shape`], [`ModelError::Dtype`]; each names the file and key.
    pub fn load_hf(dir: &Path, device: &B::Device) -> Result<(Self, LlamaConfig), ModelError> {
        let config = LlamaConfig::from_file(dir.join("config.json"))?;
        let st = Weights::open_dir(dir)?;
        let prefix = if !st.contains(EMBED.hf) && st.contains(EMBED.hf.trim_start_matches("model."))
        {
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
                    path: st.path_of(&key).to_path_buf(),
                    key,
                    expected: slot.shape.clone(),
                    got: shape,
                });
            }
            used.insert(key);
            Ok(vals)
        })?;
        for name in st.names() {
            if !used.contains(&name) && !is_ignored(&name, config.tie_word_embeddings) {
                return Err(ModelError::format(
                    st.path_of(&name),
                    format!(
                        "unexpected tensor `{name}` for a Llama model with {} layers",
                        config.num_hidden_layers
                    ),
                ));
            }
        }
        Ok((model, config))
    }

    /// Builds the model from a source of tensors in Hugging Face layout (`fetch` checks shapes),
    /// asking for them in module order: embedding, each layer's table slots, final norm, head.
    pub(crate) fn build(
        c: &LlamaConfig,
        device: &B::Device,
        fetch: &mut Fetch<'_>,
    ) -> Result<Self, ModelError> {
        let d = c.hidden_size;
        let embed = fetch(&Slot {
            hf: EMBED.hf.into(),
            gguf: EMBED.gguf.into(),
            shape: vec![c.vocab_size, d],
            rope_heads: None,
        })?;
        let embed_tokens = frozen(Tensor::from_data(
            TensorData::new(embed, [c.vocab_size, d]),
            device,
        ));
        let mut parts = FetchParts {
            c,
            device,
            fetch,
            layer: 0,
        };
        // Not `with_capacity(layer count)`: the count comes from the file, and a bogus one
        // must fail at the first missing layer tensor, not allocate for it.
        let mut layers = Vec::new();
        for i in 0..c.num_hidden_layers {
            parts.layer = i;
            layers.push(LlamaLayer::build(c, &mut parts)?);
        }
        let final_norm = parts.norm_from(FINAL_NORM.hf.into(), FINAL_NORM.gguf.into())?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(parts.linear_from(Slot {
                hf: LM_HEAD.hf.into(),
                gguf: LM_HEAD.gguf.into(),
                shape: vec![c.vocab_size, d],
                rope_heads: None,
            })?)
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
    /// [`ModelError::Write`] if `dir` cannot be created or written; [`ModelError::Format`] if
    /// serialization fails.
    pub fn save_hf(&self, config: &LlamaConfig, dir: &Path) -> Result<(), ModelError> {
        ensure_dir(dir)?;
        let path = dir.join("model.safetensors");
        let p = &path;
        let mut t = StTensors::new();
        // LoraLinear [in, out] → HF [out, in].
        let lin = |t: &mut StTensors, key: String, l: &LoraLinear<B>| {
            put_tensor(t, &key, l.merged_base()?.0.transpose(), p)
        };
        put_tensor(&mut t, EMBED.hf, self.embed_tokens.val(), p)?;
        for (i, l) in self.layers.iter().enumerate() {
            let pre = layer(i);
            for n in &LlamaLayer::<B>::NORMS {
                let key = format!("{pre}.{}.weight", n.name);
                put_tensor(&mut t, &key, (n.get)(l).weight.val(), p)?;
            }
            for s in &LlamaLayer::<B>::LINEARS {
                lin(&mut t, format!("{pre}.{}.weight", s.name), (s.get)(l))?;
            }
        }
        put_tensor(&mut t, FINAL_NORM.hf, self.norm.weight.val(), p)?;
        if let Some(h) = &self.lm_head {
            lin(&mut t, LM_HEAD.hf.into(), h)?;
        }
        save_safetensors(&path, &t)?;
        save_json(&dir.join("config.json"), &config.to_json())
    }
}
