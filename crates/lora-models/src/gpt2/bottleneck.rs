//! GPT-2's bottleneck-adapter slots (AdapterHub `models/gpt2/mixin_gpt2.py`:
//! `attention_adapters` and `output_adapters` on every `GPT2Block`).
use super::model::Gpt2;
use crate::LanguageModel;
use burn::tensor::backend::Backend;
use lora_core::{
    check_bottleneck_slot, BottleneckAdapter, BottleneckLayers, BottleneckLocation, LoraError,
};

impl<B: Backend> BottleneckLayers<B> for Gpt2<B> {
    fn num_layers(&self) -> usize {
        self.h.len()
    }

    fn hidden_size(&self) -> usize {
        LanguageModel::hidden_size(self)
    }

    fn layer_name(&self, layer: usize) -> String {
        format!("transformer.h.{layer}")
    }

    fn model_type(&self) -> &'static str {
        "gpt2"
    }

    fn model_class(&self) -> &'static str {
        "GPT2LMHeadModel"
    }

    fn bottleneck(
        &self,
        layer: usize,
        location: BottleneckLocation,
    ) -> Option<&BottleneckAdapter<B>> {
        let block = self.h.get(layer)?;
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
        check_bottleneck_slot(layer, self.h.len(), d, adapter.as_ref())?;
        let block = &mut self.h[layer];
        let slot = match location {
            BottleneckLocation::Attention => &mut block.attention_adapters,
            BottleneckLocation::Output => &mut block.output_adapters,
        };
        Ok(std::mem::replace(slot, adapter))
    }
}
