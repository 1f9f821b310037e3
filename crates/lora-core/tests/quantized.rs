//! `LoraLinear` on a quantized base (QLoRA): forward against closed forms over the host codecs'
//! dequantization (`lora_quant`, bit-exact with bitsandbytes, checked in lora-quant's tests),
//! gradients on Autodiff<NdArray>, merge/unmerge with requantization, dequantize, errors.
mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::{lcg_scaled as lcg, t2, transpose, vals};
use lora_core::quant::{error_stats, quantize_int8_vectorwise, quantize_nf4_shaped};
use lora_core::*;

type B = NdArray<f32>;
type AB = Autodiff<NdArray<f32>>;

const D_IN: usize = 70;
const D_OUT: usize = 33;
const R: usize = 4;

/// The host codecs' dequantization of our `[d_in, d_out]` weight, returned `[d_in, d_out]`
/// (the quantized matrix is the PyTorch `[d_out, d_in]` one).
fn host_dequant(w_in_out: &[f32], kind: &QuantKind) -> Vec<f32> {
    let w_torch = transpose(w_in_out, D_IN, D_OUT);
    let deq = match *kind {
        QuantKind::Nf4 {
            blocksize,
            compress_statistics,
        } => quantize_nf4_shaped(&w_torch, &[D_OUT, D_IN], blocksize, compress_statistics)
            .unwrap()
            .dequantize()
            .unwrap(),
        QuantKind::Int8 => quantize_int8_vectorwise(&w_torch, D_OUT, D_IN)
            .unwrap()
            .dequantize(),
    };
    transpose(&deq, D_OUT, D_IN)
}

struct Parts {
    w: Vec<f32>,
    bias: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn parts(seed: u64, b_scale: f32) -> Parts {
    Parts {
        w: lcg(D_IN * D_OUT, seed, 0.3),
        bias: lcg(D_OUT, seed + 1, 0.5),
        a: lcg(D_IN * R, seed + 2, 0.3),
        b: lcg(R * D_OUT, seed + 3, b_scale),
    }
}

fn cfg() -> LoraLayerConfig {
    LoraLayerConfig {
        r: R,
        lora_alpha: 8.0, // scaling 2
        ..Default::default()
    }
}

fn layer<Bk: Backend>(p: &Parts, w: &[f32]) -> LoraLinear<Bk> {
    let bias = Tensor::from_data(
        TensorData::new(p.bias.clone(), [D_OUT]),
        &Default::default(),
    );
    let mut l = LoraLinear::new(t2(w, D_IN, D_OUT), Some(bias), false).unwrap();
    l.attach_tensors(t2(&p.a, D_IN, R), t2(&p.b, R, D_OUT), &cfg())
        .unwrap();
    l
}

const KINDS: [QuantKind; 4] = [
    QuantKind::NF4,
    QuantKind::NF4_DQ,
    QuantKind::Nf4 {
        blocksize: 32,
        compress_statistics: false,
    },
    QuantKind::Int8,
];

/// Device bytes of the 70×33 weight: NF4 289 words + 37 (or 74 at blocksize 32) f32 absmax;
/// NF4-DQ 289 words + 37 byte codes in 10 words + 1 absmax2 + offset; int8 578 words + 33 absmax.
fn expected_bytes(kind: &QuantKind) -> usize {
    match kind {
        QuantKind::Nf4 {
            blocksize: 64,
            compress_statistics: false,
        } => 289 * 4 + 37 * 4,
        QuantKind::Nf4 {
            compress_statistics: true,
            ..
        } => 289 * 4 + 10 * 4 + 4 + 4,
        QuantKind::Nf4 { .. } => 289 * 4 + 73 * 4,
        QuantKind::Int8 => 578 * 4 + 33 * 4,
    }
}

#[test]
fn quantized_forward_equals_lora_forward_over_the_dequantized_weight() {
    let p = parts(3, 0.3);
    let n = 5;
    let x = lcg(n * D_IN, 9, 1.0);
    for kind in KINDS {
        let mut q = layer::<B>(&p, &p.w);
        let stats = q.quantize(&kind).unwrap();
        assert!(q.is_quantized());
        assert_eq!(q.dims(), (D_IN, D_OUT));
        assert_eq!(
            q.base().weight_param().dims(),
            [0, 0],
            "dense weight is an empty placeholder"
        );
        let deq = host_dequant(&p.w, &kind);
        assert_eq!(vals(q.base_weight()), deq, "{kind}: base_weight");
        // reported error and bytes, computed independently
        let max =
            p.w.iter()
                .zip(&deq)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max);
        assert_eq!(stats.max_abs_error, max, "{kind}");
        assert_eq!(stats.f32_bytes, 4 * D_IN * D_OUT);
        assert_eq!(stats.quant_bytes, expected_bytes(&kind), "{kind}");

        let y = vals(q.forward(t2::<B>(&x, n, D_IN)));
        // same layer, dense, on the dequantized weight
        let dense = layer::<B>(&p, &deq);
        let yd = vals(dense.forward(t2::<B>(&x, n, D_IN)));
        // closed form in f64: x·W + b + 2·(x·A)·B
        let mut err_dense = 0f64;
        let mut err_closed = 0f64;
        for i in 0..n {
            for o in 0..D_OUT {
                let mut want = p.bias[o] as f64;
                for k in 0..D_IN {
                    want += x[i * D_IN + k] as f64 * deq[k * D_OUT + o] as f64;
                }
                for j in 0..R {
                    let xa: f64 = (0..D_IN)
                        .map(|k| x[i * D_IN + k] as f64 * p.a[k * R + j] as f64)
                        .sum();
                    want += 2.0 * xa * p.b[j * D_OUT + o] as f64;
                }
                let got = y[i * D_OUT + o] as f64;
                err_closed = err_closed.max((got - want).abs());
                err_dense = err_dense.max((got - yd[i * D_OUT + o] as f64).abs());
            }
        }
        println!(
            "{kind}: {stats}; forward vs dense LoRA on deq(W): {err_dense:e}, vs f64: {err_closed:e}"
        );
        assert!(err_dense < 1e-5, "{kind}: {err_dense}");
        assert!(err_closed < 1e-4, "{kind}: {err_closed}");
    }
}

#[test]
fn gradients_reach_a_b_and_the_input_only() {
    let p = parts(5, 0.3);
    let n = 5;
    for kind in [QuantKind::NF4_DQ, QuantKind::Int8] {
        let mut l = layer::<AB>(&p, &p.w);
        l.quantize(&kind).unwrap();
        let deq = host_dequant(&p.w, &kind);

        let count = count_parameters::<AB, _>(&l);
        assert_eq!(count.trainable, D_IN * R + R * D_OUT, "only A and B train");
        // the quantized weight counts its values in whole words (2310 → 2312 NF4 codes, 2312
        // int8 codes), the bias its 33; absmax statistics are not parameters (as in PEFT)
        assert_eq!(count.all, count.trainable + 2312 + D_OUT, "{kind}");

        let x = t2::<AB>(&lcg(n * D_IN, 17, 1.0), n, D_IN).require_grad();
        let xs = vals(x.clone());
        let y = l.forward(x.clone());
        // the inference copy computes the same
        let yv = l.valid().forward(x.clone().inner());
        assert_eq!(vals(y.clone()), vals(yv), "{kind}: valid()");
        let grads = y.sum().backward();
        let lora = l.adapter().unwrap();
        let ga = vals(lora.lora_a().grad(&grads).expect("grad for lora_A"));
        let gb = vals(lora.lora_b().grad(&grads).expect("grad for lora_B"));
        let gx = vals(x.grad(&grads).expect("grad for the input"));
        assert!(
            l.base().weight_param().grad(&grads).is_none(),
            "placeholder weight"
        );
        assert!(
            l.base().bias_param().unwrap().grad(&grads).is_none(),
            "bias"
        );
        match l.quant_base().unwrap() {
            QuantBase::Nf4(q) => match &q.scales {
                quant::Nf4Scales::Double(d) => {
                    assert!(d.absmax2.grad(&grads).is_none(), "absmax2")
                }
                quant::Nf4Scales::F32(a) => assert!(a.grad(&grads).is_none(), "absmax"),
            },
            QuantBase::Int8(q) => assert!(q.absmax.grad(&grads).is_none(), "int8 absmax"),
        }

        // closed forms for L = Σ (x·(W + s·A·B) + b), s = 2
        let s = 2.0f64;
        let sum_b_row: Vec<f64> = (0..R)
            .map(|k| (0..D_OUT).map(|o| p.b[k * D_OUT + o] as f64).sum())
            .collect();
        let sum_x_col: Vec<f64> = (0..D_IN)
            .map(|i| (0..n).map(|r| xs[r * D_IN + i] as f64).sum())
            .collect();
        let sum_a_col: Vec<f64> = (0..R)
            .map(|k| {
                (0..D_IN)
                    .map(|i| p.a[i * R + k] as f64 * sum_x_col[i])
                    .sum()
            })
            .collect();
        let mut err = 0f64;
        for i in 0..D_IN {
            for k in 0..R {
                err = err.max((ga[i * R + k] as f64 - s * sum_x_col[i] * sum_b_row[k]).abs());
            }
            let w_row: f64 = (0..D_OUT).map(|o| deq[i * D_OUT + o] as f64).sum();
            let ab_row: f64 = (0..R).map(|k| p.a[i * R + k] as f64 * sum_b_row[k]).sum();
            for r in 0..n {
                err = err.max((gx[r * D_IN + i] as f64 - (w_row + s * ab_row)).abs());
            }
        }
        for k in 0..R {
            for o in 0..D_OUT {
                err = err.max((gb[k * D_OUT + o] as f64 - s * sum_a_col[k]).abs());
            }
        }
        println!("{kind}: max gradient error vs closed form {err:e}");
        assert!(err < 1e-4, "{kind}: max gradient error {err}");
    }
}

#[test]
fn merge_requantizes_and_unmerge_returns_close_to_the_original_codes() {
    // An update of the order of a few quantization steps (|ΔW| up to ~0.1 on |W| < 0.3).
    let p = parts(11, 0.15);
    let n = 4;
    let x = lcg(n * D_IN, 23, 1.0);
    let x_l1 = (0..n)
        .map(|i| (0..D_IN).map(|k| x[i * D_IN + k].abs() as f64).sum::<f64>())
        .fold(0.0, f64::max);
    for kind in [QuantKind::NF4, QuantKind::NF4_DQ, QuantKind::Int8] {
        let mut l = layer::<B>(&p, &p.w);
        let q0 = l.quantize(&kind).unwrap();
        let w0 = vals(l.base_weight());
        let delta = vals(l.adapter().unwrap().delta_weight());
        let y_unmerged = vals(l.forward(t2::<B>(&x, n, D_IN)));

        let s1 = l
            .merge_report()
            .unwrap()
            .expect("a quantized merge reports");
        assert!(l.is_merged() && l.is_quantized());
        assert_eq!(l.quant_base().unwrap().kind(), kind, "same scheme");
        // the report is the error of the new codes against the exact merged weight
        let exact: Vec<f32> = w0.iter().zip(&delta).map(|(a, b)| a + b).collect();
        let w1 = vals(l.base_weight());
        // (over the PyTorch [d_out, d_in] order, the order the layer sums the squares in)
        let want = error_stats(
            &transpose(&exact, D_IN, D_OUT),
            &transpose(&w1, D_IN, D_OUT),
            expected_bytes(&kind),
        );
        assert_eq!(s1, want, "{kind}");
        assert_eq!(w1, host_dequant(&exact, &kind), "{kind}: requantized codes");
        let y_merged = vals(l.forward(t2::<B>(&x, n, D_IN)));
        let dy = y_merged
            .iter()
            .zip(&y_unmerged)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        let bound = s1.max_abs_error * x_l1 + 1e-5;
        println!(
            "{kind}: merge requantization {s1}; merged vs unmerged forward {dy:e} (bound {bound:e})"
        );
        assert!(dy <= bound, "{kind}: {dy} > {bound}");
        assert!(dy > 0.0, "{kind}: requantization is lossy");

        let s2 = l
            .unmerge_report()
            .unwrap()
            .expect("a quantized unmerge reports");
        assert!(!l.is_merged() && l.is_quantized());
        let w2 = vals(l.base_weight());
        let back = w2
            .iter()
            .zip(&w0)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        let rms = (w2
            .iter()
            .zip(&w0)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / w0.len() as f64)
            .sqrt();
        println!(
            "{kind}: merge + unmerge → |W − W0| max {back:e}, rms {rms:e} (requantization errors \
             {:e} + {:e}; one quantization of the original f32 weight had max {:e}, rms {:e})",
            s1.max_abs_error, s2.max_abs_error, q0.max_abs_error, q0.rms_error
        );
        assert!(
            back <= s1.max_abs_error + s2.max_abs_error + 1e-6,
            "{kind}: {back}"
        );
        assert!(rms <= s1.rms_error + s2.rms_error, "{kind}: rms {rms}");

        // merge_and_unload keeps the quantized base with the update requantized into it
        let merged = l.clone().merge_and_unload().unwrap();
        assert!(!merged.has_adapter() && merged.is_quantized() && !merged.is_merged());
        let ym = vals(merged.forward(t2::<B>(&x, n, D_IN)));
        let d = ym
            .iter()
            .zip(&y_unmerged)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        assert!(d <= bound, "{kind}: merge_and_unload {d}");
    }
    // a dense merge reports nothing
    let mut dense = layer::<B>(&p, &p.w);
    assert_eq!(dense.merge_report().unwrap(), None);
    assert_eq!(dense.unmerge_report().unwrap(), None);
}

#[test]
fn dequantize_and_trainable_base_give_a_dense_weight() {
    let p = parts(13, 0.3);
    let deq = host_dequant(&p.w, &QuantKind::NF4);
    let mut l = layer::<AB>(&p, &p.w);
    l.quantize(&QuantKind::NF4).unwrap();
    let id = l.base().weight_param().id;
    l.dequantize();
    assert!(!l.is_quantized());
    assert_eq!(l.base().weight_param().id, id, "the parameter keeps its id");
    assert_eq!(l.base().weight_param().dims(), [D_IN, D_OUT]);
    assert!(!l.is_base_trainable());
    assert_eq!(vals(l.base().weight_param().val()), deq);
    l.dequantize(); // no-op on a dense layer
    assert_eq!(vals(l.base_weight()), deq);

    // modules_to_save on a quantized layer: the base becomes dense and trainable
    let mut t = layer::<AB>(&p, &p.w);
    t.quantize(&QuantKind::Int8).unwrap();
    t.set_base_trainable(true);
    assert!(!t.is_quantized() && t.is_base_trainable());
    assert_eq!(
        vals(t.base().weight_param().val()),
        host_dequant(&p.w, &QuantKind::Int8)
    );

    // into_linear: merged and dense
    let mut q = layer::<B>(&p, &p.w);
    q.quantize(&QuantKind::NF4).unwrap();
    let delta = vals(q.adapter().unwrap().delta_weight());
    let exact: Vec<f32> = deq.iter().zip(&delta).map(|(a, b)| a + b).collect();
    let lin = q.into_linear().unwrap();
    assert_eq!(lin.weight.dims(), [D_IN, D_OUT]);
    assert_eq!(
        vals(lin.weight.val()),
        host_dequant(&exact, &QuantKind::NF4)
    );
}

#[test]
fn quantize_refuses_bad_states_and_inputs() {
    let p = parts(17, 0.3);
    let mut l = layer::<AB>(&p, &p.w);
    l.quantize(&QuantKind::NF4).unwrap();
    assert!(matches!(
        l.quantize(&QuantKind::Int8),
        Err(LoraError::State(m)) if m.contains("already quantized")
    ));
    let mut t = layer::<AB>(&p, &p.w);
    t.set_base_trainable(true);
    assert!(matches!(
        t.quantize(&QuantKind::NF4),
        Err(LoraError::State(m)) if m.contains("trainable")
    ));
    let mut b = layer::<B>(&p, &p.w);
    assert!(matches!(
        b.quantize(&QuantKind::NF4.with_blocksize(100)),
        Err(LoraError::Quant(QuantError::BadBlocksize {
            blocksize: 100,
            ..
        }))
    ));
    assert!(
        !b.is_quantized() && b.base().weight_param().dims() == [D_IN, D_OUT],
        "unchanged"
    );
    let mut w = p.w.clone();
    w[7] = f32::INFINITY;
    let mut nf = layer::<B>(&p, &w);
    assert!(matches!(
        nf.quantize(&QuantKind::Int8),
        // our [0][7] is row 7, column 0 of the PyTorch [d_out, d_in] weight
        Err(LoraError::Quant(QuantError::NonFinite { index: 490, .. }))
    ));
    assert!(!nf.is_quantized());
}
