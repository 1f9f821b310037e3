//! QuantLinear / Int8Linear / QuantBase on NdArray and Autodiff<NdArray>: device dequantization
//! equal to bitsandbytes' (fixtures), forward = x·dequant(W), codes packed on the device, nothing
//! trainable. (The LoRA layer on a quantized base is tested in lora-core/tests/quantized.rs.)

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor, TensorData};
use common::{assert_bits_eq, fixture};
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
        assert_eq!(q.compress_statistics(), double);
        assert_eq!(q.to_nf4().unwrap(), t, "read back from the device");
        assert_bits_eq(
            &to_vec(q.absmax()),
            &t.absmax_f32().unwrap(),
            "device absmax (reconstructed when double-quantized)",
        );
        // 1155 packed bytes → 289 words of 4 bytes; 37 absmax of 4 bytes, or with double
        // quantization 37 one-byte codes (10 words) + 1 second-level absmax + the offset.
        let scales = if double { 10 * 4 + 4 + 4 } else { 37 * 4 };
        assert_eq!(q.storage_bytes(), 289 * 4 + scales);
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
fn double_quantized_absmax_is_reconstructed_on_the_device_like_bnb() {
    let dev = Default::default();
    let (t, _) = w_nf4(true);
    let q = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
    let dq = fixture("dq.safetensors");
    assert_bits_eq(
        &to_vec(q.absmax()),
        &dq.f32("w33x70.b64.dq.absmax_deq"),
        "device absmax vs bnb dequantize_blockwise(absmax) + offset",
    );
    let Nf4Scales::Double(n) = &q.scales else {
        panic!("expected double-quantized scales")
    };
    assert_eq!(n.n_blocks, 37);
    assert_eq!(n.words.dims(), [10], "37 one-byte codes in 10 I32 words");
}

#[test]
fn nothing_is_trainable_and_no_gradient_reaches_the_scales() {
    let dev = Default::default();
    let (t, _) = w_nf4(false);
    let q = QuantLinear::<AB>::from_nf4(&t, &dev).unwrap();
    let Nf4Scales::F32(absmax) = &q.scales else {
        panic!()
    };
    assert!(!absmax.is_require_grad());
    let i8l = Int8Linear::<AB>::from_weight(Tensor::random(
        [70, 33],
        Distribution::Normal(0.0, 1.0),
        &dev,
    ))
    .unwrap();
    assert!(!i8l.absmax.is_require_grad());
    let x = Tensor::<AB, 2>::random([4, 70], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let y = q.forward(x.clone()) + i8l.forward(x.clone());
    let grads = y.sum().backward();
    assert!(absmax.grad(&grads).is_none(), "nf4 absmax is frozen");
    assert!(i8l.absmax.grad(&grads).is_none(), "int8 absmax is frozen");
    let gx = to_vec(x.grad(&grads).expect("gradient for the input"));
    // dL/dx[n, i] = Σ_o W_nf4[o, i] + W_int8[o, i]
    let (wn, wi) = (
        to_vec(q.dequantize_weight()),
        to_vec(i8l.dequantize_weight()),
    );
    let mut err = 0f64;
    for n in 0..4 {
        for i in 0..70 {
            let want: f64 = (0..33)
                .map(|o| wn[o * 70 + i] as f64 + wi[o * 70 + i] as f64)
                .sum();
            err = err.max((gx[n * 70 + i] as f64 - want).abs());
        }
    }
    assert!(err < 1e-4, "{err}");
}

#[test]
fn int8_layer_equals_bnb_vectorwise_exactly() {
    let dev = Default::default();
    let f = fixture("int8.safetensors");
    let a = f.f32("a"); // nn.Linear weight [d_out = 33, d_in = 70]
    let w = Tensor::<B, 2>::from_data(TensorData::new(a.clone(), [33, 70]), &dev);
    let l = Int8Linear::<B>::from_weight(w.transpose()).unwrap();
    assert_eq!(l.dims(), (70, 33));
    let t = l.to_int8().unwrap();
    assert_eq!(
        t.q,
        f.i8("a.CB"),
        "codes read back from the device = bnb CB"
    );
    assert_bits_eq(&t.scale, &f.f32("a.SCB"), "row absmax = bnb SCB");
    // the device dequantization equals the host codec's and bitsandbytes' bit for bit
    let host = quantize_int8_vectorwise(&a, 33, 70).unwrap();
    assert_eq!(t, host);
    let deq = to_vec(l.dequantize_weight());
    assert_bits_eq(
        &deq,
        &host.dequantize(),
        "device vs quantize_int8_vectorwise",
    );
    assert_bits_eq(
        &deq,
        &f.f32("a.deq"),
        "device vs bnb int8_vectorwise_dequant",
    );
    // 2310 codes → 578 words (the last one half used) + 33 row absmax
    assert_eq!(l.words.dims(), [578]);
    assert_eq!(l.words.val().dtype(), DType::I32);
    assert_eq!(l.storage_bytes(), 578 * 4 + 33 * 4);
    // negative codes survive the packing (two's complement bytes)
    assert!(t.q.contains(&-127) && t.q.contains(&127));
    // forward = x · deq(W)
    let x = Tensor::<B, 2>::random([3, 70], Distribution::Normal(0.0, 1.0), &dev);
    let wd = Tensor::<B, 2>::from_data(TensorData::new(deq, [33, 70]), &dev);
    assert_bits_eq(
        &to_vec(l.forward(x.clone())),
        &to_vec(burn::tensor::module::linear(x, wd.transpose(), None)),
        "int8 forward",
    );
    // per-tensor codes load too (one scale repeated per row)
    let p = quantize_int8_per_tensor(&a, 33, 70).unwrap();
    let lp = Int8Linear::<B>::from_int8(&p, &dev).unwrap();
    assert_bits_eq(
        &to_vec(lp.dequantize_weight()),
        &p.dequantize(),
        "per-tensor",
    );
}

#[test]
fn quant_base_quantizes_and_reports_like_the_host_codecs() {
    let dev = Default::default();
    let nf = fixture("nf4.safetensors");
    let a = nf.f32("w33x70");
    let w = Tensor::<B, 2>::from_data(TensorData::new(a.clone(), [33, 70]), &dev).transpose();
    for kind in [
        QuantKind::NF4,
        QuantKind::NF4_DQ,
        QuantKind::NF4.with_blocksize(128),
        QuantKind::Int8,
    ] {
        let (base, stats) = QuantBase::quantize(w.clone(), &kind).unwrap();
        assert_eq!(base.kind(), kind);
        assert_eq!(base.dims(), (70, 33));
        let host = match kind {
            QuantKind::Nf4 {
                blocksize,
                compress_statistics,
            } => quantize_nf4_shaped(&a, &[33, 70], blocksize, compress_statistics)
                .unwrap()
                .dequantize()
                .unwrap(),
            QuantKind::Int8 => quantize_int8_vectorwise(&a, 33, 70).unwrap().dequantize(),
        };
        let deq = to_vec(base.dequantize_weight_in_out().transpose());
        assert_bits_eq(&deq, &host, &format!("{kind}"));
        let want = error_stats(&a, &host, base.storage_bytes());
        assert_eq!(stats, want, "{kind}");
        assert!(stats.max_abs_error > 0.0 && stats.rms_error > 0.0);
        println!("{kind}: {stats}");
    }
}

#[test]
fn quant_kind_parses_the_cli_names() {
    assert_eq!("nf4".parse::<QuantKind>().unwrap(), QuantKind::NF4);
    assert_eq!(
        "NF4-DQ".parse::<QuantKind>().unwrap(),
        QuantKind::Nf4 {
            blocksize: 64,
            compress_statistics: true
        }
    );
    assert_eq!("int8".parse::<QuantKind>().unwrap(), QuantKind::Int8);
    assert_eq!(
        "fp4".parse::<QuantKind>().unwrap_err(),
        QuantError::UnknownKind("fp4".into())
    );
    assert_eq!(QuantKind::NF4_DQ.name(), "nf4-dq");
    assert_eq!(QuantKind::Int8.with_blocksize(32), QuantKind::Int8);
    assert_eq!(
        QuantKind::NF4.with_blocksize(32).to_string(),
        "nf4 (blocksize 32)"
    );
    assert!(matches!(
        QuantKind::NF4.with_blocksize(48).validate(),
        Err(QuantError::BadBlocksize { blocksize: 48, .. })
    ));
    let w = Tensor::<B, 2>::ones([64, 2], &Default::default());
    assert!(matches!(
        QuantBase::quantize(w, &QuantKind::NF4.with_blocksize(48)),
        Err(QuantError::BadBlocksize { blocksize: 48, .. })
    ));
}

#[test]
fn bad_inputs_are_errors() {
    let dev = Default::default();
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
        Int8Linear::from_weight(w.clone()),
        Err(QuantError::NonFinite { .. })
    ));
    assert!(matches!(
        QuantLinear::from_weight(w, 63, false),
        Err(QuantError::BadBlocksize { blocksize: 63, .. })
    ));
    let bad = Int8Tensor {
        q: vec![1; 6],
        scale: vec![1.0; 2],
        shape: [3, 2],
    };
    assert!(matches!(
        Int8Linear::<B>::from_int8(&bad, &dev),
        Err(QuantError::Shape { .. })
    ));
}
