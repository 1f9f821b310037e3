//! Llama's bottleneck-adapter slots (AdapterHub `models/llama/mixin_llama.py`:
//! `attention_adapters` and `output_adapters` on every `LlamaDecoderLayer`).
use super::model::Llama;
use crate::LanguageModel;
use burn::tensor::backend::Backend;
use lora_core::{
    check_bottleneck_slot, BottleneckAdapter, BottleneckLayers, BottleneckLocation, LoraError,
};

impl<B: Backend> BottleneckLayers<B> for Llama<B> {
    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn hidden_size(&self) -> usize {
        LanguageModel::hidden_size(self)
    }

    fn layer_name(&self, layer: usize) -> String {
        format!("model.layers.{layer}")
    }

    fn model_type(&self) -> &'static str {
        "llama"
    }

    fn model_class(&self) -> &'static str {
        "LlamaForCausalLM"
    }

    fn bottleneck(
        &self,
        layer: usize,
        location: BottleneckLocation,
    ) -> Option<&BottleneckAdapter<B>> {
        let block = self.layers.get(layer)?;
        match location {
            BottleneckLocation::Attention => block.attention_adapters.as_ref(),
            BottleneckLocation::Output => block.output_adapters.as_ref(),
        }
    }

    fn set_bottleneck(
        &mut self,
        layer: usize,
        location: BottleneckLocation,
        adapter: Option<BottleneckAdapter<B>>,
    ) -> Result<Option<BottleneckAdapter<B>>, LoraError> {
        let d = LanguageModel::hidden_size(self);
        check_bottleneck_slot(layer, self.layers.len(), d, adapter.as_ref())?;
        let block = &mut self.layers[layer];
        let slot = match location {
            BottleneckLocation::Attention => &mut block.attention_adapters,
            BottleneckLocation::Output => &mut block.output_adapters,
        };
        Ok(std::mem::replace(slot, adapter))
    }
}
