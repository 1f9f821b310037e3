//! Keys and values of earlier positions, per attention layer: the tokens already seen when
//! decoding incrementally (transformers' `DynamicCache`), and the virtual tokens of PEFT prefix
//! tuning, which enter as a cache before the first real token (`peft_model.py::get_prompt`).
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// One attention layer's keys and values.
///
/// # Shapes
/// `key`, `value` `[batch, kv_heads, len, head_dim]`; keys already rotated (RoPE) for the
/// positions they were computed at, except a PEFT prefix, whose keys take no rotation.
#[derive(Clone, Debug)]
pub struct LayerKv<B: Backend> {
    /// Keys `[batch, kv_heads, len, head_dim]`.
    pub key: Tensor<B, 4>,
    /// Values `[batch, kv_heads, len, head_dim]`.
    pub value: Tensor<B, 4>,
}

impl<B: Backend> LayerKv<B> {
    /// This layer's keys and values followed by `new` ones on the position axis.
    pub fn append(self, new: LayerKv<B>) -> LayerKv<B> {
        LayerKv {
            key: Tensor::cat(vec![self.key, new.key], 2),
            value: Tensor::cat(vec![self.value, new.value], 2),
        }
    }

    /// Positions held (`len`).
    pub fn len(&self) -> usize {
        self.key.dims()[2]
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The keys and values of every attention layer of a model, for the positions before the ones a
/// forward pass computes. An empty cache is a plain forward from position 0.
///
/// A forward through [`crate::LanguageModel::forward_cached`] reads layer `i`'s entry, attends
/// over it and the new positions, and stores both back, so the next call continues after them.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` attention layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// A cache holding given keys and values, one entry per layer (a PEFT prefix).
    pub fn from_layers(layers: Vec<LayerKv<B>>) -> Self {
        Self {
            layers: layers.into_iter().map(Some).collect(),
        }
    }

    /// Attention layers the cache is for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Positions held (the first layer's length; 0 when empty): the position the next forward
    /// pass starts at.
    pub fn past_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, LayerKv::len)
    }

    /// Layer `i`'s entry, taken out (the forward pass puts the extended one back with
    /// [`KvCache::put`]); `None` when empty or `i` is out of range.
    pub fn take(&mut self, i: usize) -> Option<LayerKv<B>> {
        self.layers.get_mut(i).and_then(Option::take)
    }

    /// Stores layer `i`'s entry (ignored when `i` is out of range, which a model never asks).
    pub fn put(&mut self, i: usize, kv: LayerKv<B>) {
        if let Some(slot) = self.layers.get_mut(i) {
            *slot = Some(kv);
        }
    }

    /// Layer `i`'s entry, if any.
    pub fn layer(&self, i: usize) -> Option<&LayerKv<B>> {
        self.layers.get(i).and_then(Option::as_ref)
    }
}
