//! The pieces of a layer: the frozen base alone, the adapter seam, and parameter counting over
//! a model of several layers.
mod common;

use burn::backend::{Autodiff, NdArray};
use common::{lcg, t1, t2, vals};
use lora_core::*;

type NB = NdArray<f32>;
type AB = Autodiff<NdArray<f32>>;

const N: usize = 3;
const DIN: usize = 16;
const DOUT: usize = 8;

#[test]
fn frozen_base_forward_is_the_layer_without_adapter_bit_for_bit() {
    let (w, b, x) = (lcg(DIN * DOUT, 1), lcg(DOUT, 2), lcg(N * DIN, 3));
    let base = FrozenLinear::<NB>::new(t2(&w, DIN, DOUT), Some(t1(&b)), true).unwrap();
    let layer = LoraLinear::from_base(base.clone());
    assert_eq!(base.dims(), (DIN, DOUT));
    assert!(base.fan_in_fan_out() && !base.is_trainable() && !base.is_quantized());
    let want = burn::tensor::module::linear(t2::<NB>(&x, N, DIN), t2(&w, DIN, DOUT), Some(t1(&b)));
    assert_eq!(vals(base.forward(t2(&x, N, DIN))), vals(want.clone()));
    assert_eq!(vals(layer.forward(t2(&x, N, DIN))), vals(want));
}

#[test]
fn adapter_seam_holds_the_lora_adapter() {
    let mut l = LoraLinear::<NB>::new(t2(&lcg(DIN * DOUT, 4), DIN, DOUT), None, false).unwrap();
    assert!(l.attached_adapter().is_none() && l.adapter().is_none());
    let cfg = LoraLayerConfig {
        r: 2,
        lora_alpha: 4.0,
        ..Default::default()
    };
    l.attach_tensors(
        t2(&lcg(DIN * 2, 5), DIN, 2),
        t2(&lcg(2 * DOUT, 6), 2, DOUT),
        &cfg,
    )
    .unwrap();
    let lora = l.attached_adapter().and_then(Adapter::as_lora).unwrap();
    assert_eq!((lora.r(), lora.scaling()), (2, 2.0));
    // The seam's merge is LoRA's additive update: W + scaling·A·B, bias kept.
    let w = l.base_weight();
    let (merged, bias) = l
        .attached_adapter()
        .unwrap()
        .merge_into(w.clone(), None)
        .unwrap();
    assert!(bias.is_none());
    assert_eq!(vals(merged), vals(w + l.adapter().unwrap().delta_weight()));
}

/// A dense layer and a quantized one.
#[derive(burn::module::Module, Debug)]
struct Two<B: burn::tensor::backend::Backend> {
    dense: LoraLinear<B>,
    quant: LoraLinear<B>,
}

impl NamedLinears<AB> for Two<AB> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<AB>)) {
        f("dense", &self.dense);
        f("quant", &self.quant);
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<AB>)) {
        f("dense", &mut self.dense);
        f("quant", &mut self.quant);
    }
}

#[test]
fn counts_add_up_over_layers_with_quantized_bases_at_their_values() {
    let new = || {
        let w = t2::<AB>(&lcg(DIN * DOUT, 7), DIN, DOUT);
        let mut l = LoraLinear::new(w, Some(t1(&lcg(DOUT, 8))), false).unwrap();
        let cfg = LoraLayerConfig {
            r: 2,
            ..Default::default()
        };
        l.attach(&cfg, &Default::default()).unwrap();
        l
    };
    let mut quant = new();
    quant.quantize(&QuantKind::NF4).unwrap();
    let one = count_parameters(&quant);
    // 128 NF4 codes (16 words), 8 bias values, adapter 16·2 + 2·8; absmax not counted.
    assert_eq!(
        one,
        ParamCount {
            trainable: 48,
            all: 128 + 8 + 48
        }
    );
    let dense = new();
    assert_eq!(count_parameters(&dense), one);
    let m = Two { dense, quant };
    assert_eq!(
        count_parameters(&m),
        ParamCount {
            trainable: 2 * one.trainable,
            all: 2 * one.all
        }
    );
}
