//! Shared test helpers: a toy model implementing `NamedLinears` and fixture access.
#![allow(dead_code)]

pub mod prompt;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lora_core::{count_parameters, LoraLinear, NamedLinears, ParamCount};
use safetensors::SafeTensors;
use std::path::PathBuf;

pub type B = burn::backend::NdArray<f32>;
pub type AB = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

/// A "model" that is just a list of named linear layers.
#[derive(Clone, Debug)]
pub struct Toy<Bk: Backend> {
    pub layers: Vec<LoraLinear<Bk>>,
    pub names: Vec<String>,
}

impl<Bk: Backend> NamedLinears<Bk> for Toy<Bk> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<Bk>)) {
        for (n, l) in self.names.iter().zip(&self.layers) {
            f(n, l);
        }
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<Bk>)) {
        for (n, l) in self.names.iter().zip(self.layers.iter_mut()) {
            f(n, l);
        }
    }
}

impl<Bk: Backend> Toy<Bk> {
    /// Layers `(name, d_in, d_out, bias, fan_in_fan_out)` with weights and biases uniform in
    /// [-0.35, 0.35) from a local generator seeded by `seed` (no global RNG: tests run in
    /// parallel).
    pub fn new(spec: &[(&str, usize, usize, bool, bool)], seed: u64, device: &Bk::Device) -> Self {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.7
        };
        let mut layers = Vec::new();
        let mut names = Vec::new();
        for (n, i, o, bias, fifo) in spec {
            let w: Vec<f32> = (0..i * o).map(|_| next()).collect();
            let w = Tensor::from_data(TensorData::new(w, [*i, *o]), device);
            let b = bias.then(|| {
                let b: Vec<f32> = (0..*o).map(|_| next()).collect();
                Tensor::from_data(TensorData::new(b, [*o]), device)
            });
            layers.push(LoraLinear::new(w, b, *fifo).unwrap());
            names.push(n.to_string());
        }
        Self { layers, names }
    }

    /// Each layer applied to its own deterministic input `[3, d_in]`.
    pub fn outputs(&self, device: &Bk::Device) -> Vec<Vec<f32>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let (i, _) = l.dims();
                let x: Vec<f32> = (0..3 * i)
                    .map(|j| (((j * 7 + k * 13) % 17) as f32 - 8.0) / 8.0)
                    .collect();
                let x = Tensor::<Bk, 2>::from_data(TensorData::new(x, [3, i]), device);
                l.forward(x)
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .unwrap()
            })
            .collect()
    }

    pub fn layer(&self, name: &str) -> &LoraLinear<Bk> {
        let i = self.names.iter().position(|n| n == name).expect(name);
        &self.layers[i]
    }
}

/// Names and sizes of `gpt2_a` (n_embd 48, 2 layers), GPT-2 Conv1D layout.
pub fn gpt2_a_spec() -> Vec<(&'static str, usize, usize, bool, bool)> {
    const NAMES: [[&str; 4]; 2] = [
        [
            "transformer.h.0.attn.c_attn",
            "transformer.h.0.attn.c_proj",
            "transformer.h.0.mlp.c_fc",
            "transformer.h.0.mlp.c_proj",
        ],
        [
            "transformer.h.1.attn.c_attn",
            "transformer.h.1.attn.c_proj",
            "transformer.h.1.mlp.c_fc",
            "transformer.h.1.mlp.c_proj",
        ],
    ];
    let mut v = Vec::new();
    for l in NAMES {
        v.push((l[0], 48, 144, true, true));
        v.push((l[1], 48, 48, true, true));
        v.push((l[2], 48, 192, true, true));
        v.push((l[3], 192, 48, true, true));
    }
    v
}

/// gpt2_a's layers plus a classification head `score` (nn.Linear, no bias) and an `lm_head`.
pub fn gpt2_cls_spec() -> Vec<(&'static str, usize, usize, bool, bool)> {
    let mut v = gpt2_a_spec();
    v.push(("lm_head", 48, 101, false, false));
    v.push(("score", 48, 2, false, false));
    v
}

/// One layer as a model: a `Module` implementing `NamedLinears`, what `count_parameters` counts.
/// (The generic is named `B` as burn's `Module` derive expects; it shadows the alias above.)
#[derive(Module, Debug)]
pub struct One<B: Backend> {
    pub layer: LoraLinear<B>,
}

impl<Bk: Backend> NamedLinears<Bk> for One<Bk> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<Bk>)) {
        f("layer", &self.layer);
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<Bk>)) {
        f("layer", &mut self.layer);
    }
}

/// `count_parameters` of one layer.
pub fn count_layer<Bk: Backend>(l: &LoraLinear<Bk>) -> ParamCount {
    count_parameters(&One { layer: l.clone() })
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `(shape, f32 values)` of every tensor of a safetensors file, sorted by key.
pub fn read_st(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(k, t)| {
            let vals = match t.dtype() {
                safetensors::Dtype::F32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                _ => vec![],
            };
            (k, t.shape().to_vec(), vals)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn to_vec<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}
