//! The tensor keys of a bottleneck adapter in AdapterHub's `adapter.safetensors`
//! (`adapters` 1.3 `loading.py` `AdapterLoader.filter_func`: the model's state-dict keys that
//! contain `adapters.{name}.`), PyTorch `nn.Linear` layout:
//!
//! - `{layer}.{module}.adapters.{name}.adapter_down.0.weight` `[d_b, d]` and `….0.bias` `[d_b]`
//!   (`adapter_down` is an `nn.Sequential(Linear, activation)`);
//! - `{layer}.{module}.adapters.{name}.adapter_up.weight` `[d, d_b]` and `….bias` `[d]`;
//!
//! with `{layer}` the Hugging Face layer name (`transformer.h.3`, `model.layers.3`) and
//! `{module}` `attention_adapters` or `output_adapters`.
use lora_core::BottleneckLocation;

/// The four keys of one adapter, in the order down weight, down bias, up weight, up bias.
pub fn adapter_keys(layer: &str, location: BottleneckLocation, name: &str) -> [String; 4] {
    let p = format!("{layer}.{}.adapters.{name}", location.module_name());
    [
        format!("{p}.adapter_down.0.weight"),
        format!("{p}.adapter_down.0.bias"),
        format!("{p}.adapter_up.weight"),
        format!("{p}.adapter_up.bias"),
    ]
}

/// The shapes of [`adapter_keys`]' tensors (PyTorch order) for hidden size `d` and bottleneck
/// width `d_b`.
pub fn adapter_shapes(d: usize, d_b: usize) -> [Vec<usize>; 4] {
    [vec![d_b, d], vec![d_b], vec![d, d_b], vec![d]]
}
