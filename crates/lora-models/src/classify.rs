//! Sequence classification with transformers' `GPT2ForSequenceClassification` /
//! `LlamaForSequenceClassification` semantics: a linear `score` layer without bias applied to
//! the hidden state of the last non-padding token of each sequence.
//!
//! Source: transformers `modeling_gpt2.py` / `modeling_llama.py` (`*ForSequenceClassification`):
//! `logits = score(hidden_states)`, then the row at the last non-pad token (the right-most
//! position whose id is not `pad_token_id`). Sequences here are right-padded and passed with their
//! lengths, which picks the same position.

use crate::weights::Weights;
use crate::{LanguageModel, ModelError};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use lora_core::{LoraLinear, NamedLinears};
use std::path::Path;

/// A language model with a `score` head: `[batch, seq]` ids → `[batch, num_labels]` logits.
#[derive(Module, Debug)]
pub struct SequenceClassifier<B: Backend, M: Module<B>> {
    /// The backbone (GPT-2 or Llama).
    pub model: M,
    /// `score`: weight `[hidden, num_labels]` (burn layout; transformers stores
    /// `[num_labels, hidden]`), no bias. PEFT trains it fully as a `modules_to_save` module.
    pub score: LoraLinear<B>,
}

impl<B: Backend, M: LanguageModel<B>> SequenceClassifier<B, M> {
    /// A head initialised as transformers does (`normal_(std=initializer_range)`, 0.02 by
    /// default), from the backend's random generator.
    pub fn new_random(model: M, num_labels: usize, std: f64, device: &B::Device) -> Self {
        let w = Tensor::random(
            [model.hidden_size(), num_labels],
            Distribution::Normal(0.0, std),
            device,
        );
        // Cannot fail: no bias.
        let score = LoraLinear::new(w, None, false).expect("no bias");
        Self { model, score }
    }

    /// A head with given weight `[hidden, num_labels]`.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the first dimension is not the model's hidden size.
    pub fn with_score(model: M, weight: Tensor<B, 2>) -> Result<Self, ModelError> {
        let [h, n] = weight.dims();
        if h != model.hidden_size() {
            return Err(ModelError::Shape {
                path: "score".into(),
                key: "score.weight".into(),
                expected: vec![n, model.hidden_size()],
                got: vec![n, h],
            });
        }
        Ok(Self {
            model,
            score: LoraLinear::new(weight, None, false)?,
        })
    }

    /// Reads `score.weight` (`[num_labels, hidden]`, transformers' layout) from a
    /// `*ForSequenceClassification` checkpoint `dir/model.safetensors` or its shards
    /// ([`Weights::open_dir`]).
    ///
    /// # Errors
    /// [`ModelError::Io`], [`ModelError::Format`], [`ModelError::MissingKey`] (not a
    /// classification checkpoint), [`ModelError::Shape`].
    pub fn load_score(model: M, dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let st = Weights::open_dir(dir)?;
        let (vals, shape) = st.f32("score.weight")?;
        if shape.len() != 2 || shape[1] != model.hidden_size() {
            return Err(ModelError::Shape {
                path: st.path_of("score.weight").to_path_buf(),
                key: "score.weight".into(),
                expected: vec![shape.first().copied().unwrap_or(0), model.hidden_size()],
                got: shape,
            });
        }
        let w: Tensor<B, 2> =
            Tensor::from_data(TensorData::new(vals, [shape[0], shape[1]]), device);
        Self::with_score(model, w.transpose())
    }

    /// Number of labels.
    pub fn num_labels(&self) -> usize {
        self.score.dims().1
    }

    /// `input_ids` `[batch, seq]` right-padded, `lengths` (one per row, 1..=seq) → logits
    /// `[batch, num_labels]` from the hidden state at position `length − 1`.
    ///
    /// # Panics
    /// Never on valid tensors; `lengths.len()` must equal the batch size and each length must be
    /// in `1..=seq` (checked by the data pipeline that builds batches).
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, lengths: &[usize]) -> Tensor<B, 2> {
        let device = input_ids.device();
        let hidden = self.model.hidden_states(input_ids); // [b, s, h]
        let [b, _s, h] = hidden.dims();
        let idx: Vec<i64> = lengths
            .iter()
            .flat_map(|&l| std::iter::repeat_n(l.saturating_sub(1) as i64, h))
            .collect();
        let idx = Tensor::<B, 3, Int>::from_data(TensorData::new(idx, [b, 1, h]), &device);
        let last: Tensor<B, 2> = hidden.gather(1, idx).reshape([b, h]);
        self.score.forward(last)
    }
}

impl<B: Backend, M: Module<B> + NamedLinears<B>> NamedLinears<B> for SequenceClassifier<B, M> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        self.model.visit_linears(f);
        f("score", &self.score);
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        self.model.visit_linears_mut(f);
        f("score", &mut self.score);
    }
}

/// The backbone's bottleneck slots (the head has none).
impl<B: Backend, M: Module<B> + lora_core::BottleneckLayers<B>> lora_core::BottleneckLayers<B>
    for SequenceClassifier<B, M>
{
    fn num_layers(&self) -> usize {
        self.model.num_layers()
    }
    fn hidden_size(&self) -> usize {
        lora_core::BottleneckLayers::hidden_size(&self.model)
    }
    fn layer_name(&self, layer: usize) -> String {
        self.model.layer_name(layer)
    }
    fn model_type(&self) -> &'static str {
        self.model.model_type()
    }
    fn model_class(&self) -> &'static str {
        self.model.model_class()
    }
    fn bottleneck(
        &self,
        layer: usize,
        location: lora_core::BottleneckLocation,
    ) -> Option<&lora_core::BottleneckAdapter<B>> {
        self.model.bottleneck(layer, location)
    }
    fn set_bottleneck(
        &mut self,
        layer: usize,
        location: lora_core::BottleneckLocation,
        adapter: Option<lora_core::BottleneckAdapter<B>>,
    ) -> Result<Option<lora_core::BottleneckAdapter<B>>, lora_core::LoraError> {
        self.model.set_bottleneck(layer, location, adapter)
    }
}
