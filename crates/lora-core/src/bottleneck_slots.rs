//! The seam between a model family and bottleneck adapters: per-layer slots a tuner fills by
//! layer index (AdapterHub's `attention_adapters` / `output_adapters` `BottleneckLayer`s of each
//! transformer layer, `models/*/mixin_*.py`).
use burn::tensor::backend::Backend;

use crate::{BottleneckAdapter, LoraError};

/// Where in a transformer layer a bottleneck adapter sits (AdapterHub's location keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BottleneckLocation {
    /// After self-attention (`mh_adapter`; module `attention_adapters`).
    Attention,
    /// After the MLP (`output_adapter`; module `output_adapters`).
    Output,
}

impl BottleneckLocation {
    /// Both locations, in the order of a layer's forward pass.
    pub const ALL: [BottleneckLocation; 2] = [Self::Attention, Self::Output];

    /// AdapterHub's module name in the layer: `"attention_adapters"` or `"output_adapters"`.
    pub fn module_name(self) -> &'static str {
        match self {
            Self::Attention => "attention_adapters",
            Self::Output => "output_adapters",
        }
    }

    /// AdapterHub's `BnConfig` switch for this location: `"mh_adapter"` or `"output_adapter"`.
    pub fn config_field(self) -> &'static str {
        match self {
            Self::Attention => "mh_adapter",
            Self::Output => "output_adapter",
        }
    }
}

/// A model with a bottleneck-adapter slot at each [`BottleneckLocation`] of each transformer
/// layer. Implemented by the model families (`lora-models`); used by `lora-peft` to attach,
/// save and load AdapterHub bottleneck adapters.
pub trait BottleneckLayers<B: Backend> {
    /// Number of transformer layers.
    fn num_layers(&self) -> usize;

    /// The hidden size `d` every adapter must have.
    fn hidden_size(&self) -> usize;

    /// The Hugging Face name of layer `layer` (`transformer.h.{layer}`, `model.layers.{layer}`),
    /// the prefix of its adapter keys.
    fn layer_name(&self, layer: usize) -> String;

    /// The transformers `model_type` (`"gpt2"`, `"llama"`).
    fn model_type(&self) -> &'static str;

    /// The transformers class name of the model (`"GPT2LMHeadModel"`, `"LlamaForCausalLM"`).
    fn model_class(&self) -> &'static str;

    /// The adapter at `location` of layer `layer`, if any (`None` also for a layer out of range).
    fn bottleneck(
        &self,
        layer: usize,
        location: BottleneckLocation,
    ) -> Option<&BottleneckAdapter<B>>;

    /// Puts `adapter` (or nothing) at `location` of layer `layer`; returns what was there.
    ///
    /// # Errors
    /// [`LoraError::Bottleneck`] when `layer` is out of range or the adapter's hidden size is
    /// not the model's.
    fn set_bottleneck(
        &mut self,
        layer: usize,
        location: BottleneckLocation,
        adapter: Option<BottleneckAdapter<B>>,
    ) -> Result<Option<BottleneckAdapter<B>>, LoraError>;
}

/// The checks every [`BottleneckLayers::set_bottleneck`] makes: `layer < num_layers` and the
/// adapter's hidden size equals `hidden_size`.
///
/// # Errors
/// [`LoraError::Bottleneck`] naming the layer or both sizes.
pub fn check_bottleneck_slot<B: Backend>(
    layer: usize,
    num_layers: usize,
    hidden_size: usize,
    adapter: Option<&BottleneckAdapter<B>>,
) -> Result<(), LoraError> {
    if layer >= num_layers {
        return Err(LoraError::Bottleneck(format!(
            "layer {layer} out of range: the model has {num_layers} layers"
        )));
    }
    if let Some(a) = adapter {
        let d = a.config().hidden_size;
        if d != hidden_size {
            return Err(LoraError::Bottleneck(format!(
                "adapter hidden size {d} differs from the model's hidden size {hidden_size}"
            )));
        }
    }
    Ok(())
}
