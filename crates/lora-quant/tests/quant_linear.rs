//! QuantLinear / QLoraLinear on NdArray and Autodiff<NdArray>: dequantization equal to
//! bitsandbytes, forward = x·dequant(W), gradients reach only the LoRA factors and the input.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor, TensorData};
use common::{assert_bits_eq, fixture};
use lora_core::{count_parameters, LoraLayerConfig};
use lora_quant::*;

type B = NdArray<f32>;
type AB = Autodiff<NdArray<f32>>;

fn to_vec<Bk: burn::tensor::backend::Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn w_nf4(double: bool) -> (Nf4Tensor, Vec<f32>) {
    let nf = fixture("nf4.safetensors");
    let t = quantize_nf4_shaped(&nf.f32("w33x70"), &[33, 70], 64, double).unwrap();
    let deq = if double {
        fixture("dq.safetensors").f32("w33x70.b64.dq.deq")
    } else {
        nf.f32("w33x70.b64.deq")
    };
    (t, deq)
}

#[test]
fn device_dequantization_equals_bnb_and_codes_stay_packed() {
    let dev = Default::default();
    let nf = fixture("nf4.safetensors");
    for double in [false, true] {
        let (t, deq) = w_nf4(double);
        let q = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
        assert_eq!(q.dims(), (70, 33));
        assert_bits_eq(
            &to_vec(q.dequantize_weight()),
            &deq,
            "device dequantize_weight",
        );
        assert_eq!(q.packed_bytes().unwrap(), nf.u8("w33x70.b64.packed"));
        assert_eq!(
            q.storage_dtype(),
            DType::I32,
            "NdArray holds the words as I32"
        );
        // 1155 packed bytes → 289 words of 4 bytes; 37 absmax of 4 bytes
        assert_eq!(q.storage_bytes(), 289 * 4 + 37 * 4);
        println!(
            "QuantLinear 33x70 bs64 (double={double}): {} B on device vs {} B f32",
            q.storage_bytes(),
            33 * 70 * 4
        );
    }
    // other blocksizes, incl. one (4096) larger than the tensor
    for bs in [32, 128, 256, 4096] {
        let t = quantize_nf4_shaped(&nf.f32("w33x70"), &[33, 70], bs, false).unwrap();
        let q = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
        assert_bits_eq(
            &to_vec(q.dequantize_weight()),
            &nf.f32(&format!("w33x70.b{bs}.deq")),
            &format!("bs {bs}"),
        );
    }
}

#[test]
fn from_weight_quantizes_the_torch_layout() {
    let dev = Default::default();
    let nf = fixture("nf4.safetensors");
    let w = Tensor::<B, 2>::from_data(TensorData::new(nf.f32("w33x70"), [33, 70]), &dev);
    // our layout is [d_in, d_out] = the transpose of the nn.Linear weight
    let q = QuantLinear::<B>::from_weight(w.transpose(), 64, false).unwrap();
    assert_eq!(q.packed_bytes().unwrap(), nf.u8("w33x70.b64.packed"));
    assert_bits_eq(
        &to_vec(q.weight_in_out().transpose()),
        &nf.f32("w33x70.b64.deq"),
        "w",
    );
}

#[test]
fn forward_equals_x_times_dequantized_weight() {
    let dev = Default::default();
    let (t, deq) = w_nf4(true);
    let q = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
    B::seed(&dev, 11);
    let x = Tensor::<B, 3>::random([2, 3, 70], Distribution::Normal(0.0, 1.0), &dev);
    let y = q.forward(x.clone());
    assert_eq!(y.dims(), [2, 3, 33]);
    // same op on the bnb-dequantized weight: identical
    let w = Tensor::<B, 2>::from_data(TensorData::new(deq.clone(), [33, 70]), &dev);
    let y_ref = burn::tensor::module::linear(x.clone(), w.transpose(), None);
    assert_bits_eq(
        &to_vec(y.clone()),
        &to_vec(y_ref),
        "forward vs linear(x, deq(W))",
    );
    // and a host f64 matmul
    let xs = to_vec(x);
    let ys = to_vec(y);
    let mut max = 0f64;
    for n in 0..6 {
        for o in 0..33 {
            let r: f64 = (0..70)
                .map(|i| xs[n * 70 + i] as f64 * deq[o * 70 + i] as f64)
                .sum();
            max = max.max((r - ys[n * 33 + o] as f64).abs());
        }
    }
    assert!(max < 1e-5, "{max}");
}

#[test]
fn qlora_gradients_reach_lora_and_input_only() {
    let dev = Default::default();
    let (t, deq) = w_nf4(true);
    let (d_in, d_out, r) = (70usize, 33usize, 4usize);
    AB::seed(&dev, 5);
    let bias = Tensor::<AB, 1>::random([d_out], Distribution::Normal(0.0, 1.0), &dev);
    let mut layer =
        QLoraLinear::new(QuantLinear::<AB>::from_nf4(&t, &dev).unwrap(), Some(bias)).unwrap();
    let cfg = LoraLayerConfig {
        r,
        lora_alpha: 8.0,
        ..Default::default()
    };
    let a = Tensor::<AB, 2>::random([d_in, r], Distribution::Normal(0.0, 0.3), &dev);
    let b = Tensor::<AB, 2>::random([r, d_out], Distribution::Normal(0.0, 0.3), &dev);
    let (av, bv) = (to_vec(a.clone()), to_vec(b.clone()));
    layer.attach_tensors(a, b, &cfg).unwrap();

    let count = count_parameters::<AB, _>(&layer);
    assert_eq!(
        count.trainable,
        d_in * r + r * d_out,
        "only A and B are trainable"
    );
    assert_eq!(
        count.all,
        count.trainable + 37 + d_out,
        "+ absmax (frozen) + bias (frozen)"
    );

    let x = Tensor::<AB, 2>::random([5, d_in], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let xs = to_vec(x.clone());
    let y = layer.forward(x.clone());
    // forward = dense LoraLinear on the dequantized weight
    let dense = QLoraLinear::new(
        QuantLinear::<AB>::from_nf4(&t, &dev).unwrap(),
        layer.bias.as_ref().map(|b| b.val()),
    )
    .map(|mut l| {
        l.lora = layer.lora.clone();
        l
    })
    .unwrap()
    .into_lora_linear()
    .unwrap();
    assert_bits_eq(
        &to_vec(dense.forward(x.clone())),
        &to_vec(y.clone()),
        "vs LoraLinear(deq W)",
    );

    let grads = y.sum().backward();
    let lora = layer.lora.as_ref().unwrap();
    let ga = to_vec(lora.lora_a.grad(&grads).expect("grad for lora_A"));
    let gb = to_vec(lora.lora_b.grad(&grads).expect("grad for lora_B"));
    let gx = to_vec(x.grad(&grads).expect("grad for the input"));
    assert!(layer.base.absmax.grad(&grads).is_none(), "absmax is frozen");
    assert!(
        layer.bias.as_ref().unwrap().grad(&grads).is_none(),
        "bias is frozen"
    );

    // closed forms for L = Σ (x·(W + s·A·B) + b): s = alpha / r = 2
    let s = 2.0f64;
    let sum_b_row: Vec<f64> = (0..r)
        .map(|k| (0..d_out).map(|o| bv[k * d_out + o] as f64).sum())
        .collect();
    let sum_x_col: Vec<f64> = (0..d_in)
        .map(|i| (0..5).map(|n| xs[n * d_in + i] as f64).sum())
        .collect();
    let sum_a_col: Vec<f64> = (0..r)
        .map(|k| (0..d_in).map(|i| av[i * r + k] as f64 * sum_x_col[i]).sum())
        .collect();
    let mut err = 0f64;
    for i in 0..d_in {
        for k in 0..r {
            err = err.max((ga[i * r + k] as f64 - s * sum_x_col[i] * sum_b_row[k]).abs());
        }
        let w_row: f64 = (0..d_out).map(|o| deq[o * d_in + i] as f64).sum();
        let ab_row: f64 = (0..r).map(|k| av[i * r + k] as f64 * sum_b_row[k]).sum();
        for n in 0..5 {
            err = err.max((gx[n * d_in + i] as f64 - (w_row + s * ab_row)).abs());
        }
    }
    for k in 0..r {
        for o in 0..d_out {
            err = err.max((gb[k * d_out + o] as f64 - s * sum_a_col[k]).abs());
        }
    }
    assert!(err < 1e-4, "max gradient error {err}");
}

#[test]
fn bad_inputs_are_errors() {
    let dev = Default::default();
    let (t, _) = w_nf4(false);
    let q = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
    let bias = Tensor::<B, 1>::zeros([70], &dev);
    assert_eq!(
        QLoraLinear::new(q.clone(), Some(bias)).unwrap_err(),
        QuantError::Shape {
            what: "bias".into(),
            expected: vec![33],
            got: vec![70]
        }
    );
    let mut l = QLoraLinear::new(q, None).unwrap();
    let cfg = LoraLayerConfig {
        r: 4,
        ..Default::default()
    };
    let err = l
        .attach_tensors(
            Tensor::zeros([33, 4], &dev),
            Tensor::zeros([4, 33], &dev),
            &cfg,
        )
        .unwrap_err();
    assert!(
        matches!(err, QuantError::Shape { ref what, .. } if what == "lora_A"),
        "{err:?}"
    );
    let bad_r = LoraLayerConfig {
        r: 0,
        ..Default::default()
    };
    assert!(matches!(l.attach(&bad_r, &dev), Err(QuantError::Lora(_))));
    let one_d = quantize_nf4(&[1.0; 100], 64).unwrap();
    assert!(matches!(
        QuantLinear::<B>::from_nf4(&one_d, &dev),
        Err(QuantError::Shape { .. })
    ));
    let w = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0, f32::NAN, 0.0, 2.0], [2, 2]), &dev);
    assert!(matches!(
        QuantLinear::from_weight(w.clone(), 64, false),
        Err(QuantError::NonFinite { .. })
    ));
    assert!(matches!(
        QuantLinear::from_weight(w, 63, false),
        Err(QuantError::BadBlocksize { blocksize: 63, .. })
    ));
}
