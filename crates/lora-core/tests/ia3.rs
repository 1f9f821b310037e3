//! (IA)³ on a `LoraLinear` against closed forms computed in f64 from the same f32 inputs:
//! output scaling `(x·W + b) ⊙ l`, input scaling `(x ⊙ l)·W + b` (PEFT `ia3/layer.py`
//! `Linear.forward`), merge `W ⊙ l` (and `b ⊙ l` for output scaling only, PEFT `Linear.merge`),
//! unmerge by `l + 1e-8`, the gradient of `ia3_l`, and shape errors.
mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use common::{f64s, lcg, mm, t1, t2, vals, vals64};
use lora_core::*;

type B = NdArray<f32>;
type AD = Autodiff<NdArray<f32>>;

const N: usize = 5;
const DIN: usize = 24;
const DOUT: usize = 14;

struct Case {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    /// `ia3_l` for output scaling, `[DOUT]`, values in [0.5, 1.5) so they differ from one.
    lo: Vec<f32>,
    /// `ia3_l` for input scaling, `[DIN]`.
    li: Vec<f32>,
}

fn case() -> Case {
    let shift = |v: Vec<f32>| v.into_iter().map(|x| 1.0 + 0.5 * x).collect();
    Case {
        x: lcg(N * DIN, 11),
        w: lcg(DIN * DOUT, 12),
        b: lcg(DOUT, 13),
        lo: shift(lcg(DOUT, 14)),
        li: shift(lcg(DIN, 15)),
    }
}

fn layer<Bk: Backend>(c: &Case, ff: bool, bias: bool) -> LoraLinear<Bk> {
    let b = bias.then(|| t1(&c.b));
    let mut l = LoraLinear::new(t2(&c.w, DIN, DOUT), b, false).unwrap();
    let lvec = if ff { &c.li } else { &c.lo };
    l.attach_adapter(Ia3Adapter::from_tensor(t1(lvec), DIN, DOUT, ff).unwrap())
        .unwrap();
    l
}

/// `(x·W + b) ⊙ lo` or `(x ⊙ li)·W + b` in f64.
fn reference(c: &Case, ff: bool, bias: bool) -> Vec<f64> {
    let mut x = f64s(&c.x);
    if ff {
        for (k, v) in x.iter_mut().enumerate() {
            *v *= c.li[k % DIN] as f64;
        }
    }
    let mut y = mm(&x, &f64s(&c.w), N, DIN, DOUT);
    for (k, v) in y.iter_mut().enumerate() {
        let j = k % DOUT;
        if bias {
            *v += c.b[j] as f64;
        }
        if !ff {
            *v *= c.lo[j] as f64;
        }
    }
    y
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn forward_matches_the_closed_forms() {
    let c = case();
    for (ff, bias) in [(false, true), (true, true), (false, false), (true, false)] {
        let l = layer::<B>(&c, ff, bias);
        let got = vals64(l.forward(t2(&c.x, N, DIN)));
        let want = reference(&c, ff, bias);
        let d = max_abs(&got, &want);
        assert!(d < 1e-5, "ff {ff} bias {bias}: {d}");
        // The scaling matters: the plain base is far off.
        let base = vals64(l.base().forward(t2::<B>(&c.x, N, DIN)));
        assert!(max_abs(&base, &want) > 0.1, "ff {ff} bias {bias}");
    }
}

#[test]
fn output_scaling_scales_the_bias_too() {
    // Zero input: the output is the bias alone, scaled by l only for output scaling.
    let c = case();
    let zero = Tensor::<B, 2>::zeros([1, DIN], &Default::default());
    let out = vals(layer::<B>(&c, false, true).forward(zero.clone()));
    let want: Vec<f32> = c.b.iter().zip(&c.lo).map(|(b, l)| b * l).collect();
    assert_eq!(out, want);
    let out = vals(layer::<B>(&c, true, true).forward(zero));
    assert_eq!(out, c.b);
}

#[test]
fn fresh_adapter_is_the_identity_with_init_ia3_weights() {
    let c = case();
    let device = Default::default();
    for ff in [false, true] {
        let mut l = LoraLinear::<B>::new(t2(&c.w, DIN, DOUT), Some(t1(&c.b)), false).unwrap();
        let want = vals(l.forward(t2(&c.x, N, DIN)));
        l.attach_adapter(Ia3Adapter::new(DIN, DOUT, ff, true, &device))
            .unwrap();
        let a = l.attached_adapter().and_then(Adapter::as_ia3).unwrap();
        assert_eq!(a.is_feedforward(), ff);
        let n = if ff { DIN } else { DOUT };
        assert_eq!(vals(a.ia3_l()), vec![1.0; n]);
        assert!(l.adapter().is_none(), "not a LoRA adapter");
        assert_eq!(vals(l.forward(t2(&c.x, N, DIN))), want);
        // init_ia3_weights = false: N(0, 1) draws, not ones.
        let r = Ia3Adapter::<B>::new(DIN, DOUT, ff, false, &device);
        let v = vals(r.ia3_l());
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|x| (x - 1.0).abs() > 1e-6), "{v:?}");
    }
}

#[test]
fn merge_folds_l_into_weight_and_bias_and_equals_forward() {
    let c = case();
    for ff in [false, true] {
        let mut l = layer::<B>(&c, ff, true);
        let before = vals64(l.forward(t2(&c.x, N, DIN)));
        l.merge().unwrap();
        assert!(l.is_merged());
        // W ⊙ l: columns by lo (output), rows by li (input).
        let w = vals(l.base_weight());
        for i in 0..DIN {
            for j in 0..DOUT {
                let s = if ff { c.li[i] } else { c.lo[j] };
                assert_eq!(w[i * DOUT + j], c.w[i * DOUT + j] * s, "ff {ff} ({i}, {j})");
            }
        }
        // The bias is scaled for output scaling only (PEFT: `not self.is_feedforward`).
        let b = vals(l.bias().unwrap());
        let want_b: Vec<f32> = if ff {
            c.b.clone()
        } else {
            c.b.iter().zip(&c.lo).map(|(b, l)| b * l).collect()
        };
        assert_eq!(b, want_b, "ff {ff}");
        let after = vals64(l.forward(t2(&c.x, N, DIN)));
        assert!(max_abs(&after, &before) < 1e-5, "ff {ff}");
        assert!(max_abs(&after, &reference(&c, ff, true)) < 1e-5, "ff {ff}");

        // merge_and_unload gives a plain layer with the same output.
        let plain = layer::<B>(&c, ff, true).merge_and_unload().unwrap();
        assert!(!plain.has_adapter() && !plain.is_merged());
        assert_eq!(vals64(plain.forward(t2(&c.x, N, DIN))), after);
        // merged_base (export) is the same fold without touching the layer.
        let (mw, mb) = layer::<B>(&c, ff, true).merged_base().unwrap();
        assert_eq!(vals(mw), w);
        assert_eq!(vals(mb.unwrap()), want_b);
    }
}

#[test]
fn unmerge_divides_by_l_plus_eps_as_peft() {
    let c = case();
    for ff in [false, true] {
        let mut l = layer::<B>(&c, ff, true);
        l.merge().unwrap();
        let merged_w = vals(l.base_weight());
        let merged_b = vals(l.bias().unwrap());
        l.unmerge().unwrap();
        assert!(!l.is_merged());
        let w = vals(l.base_weight());
        for i in 0..DIN {
            for j in 0..DOUT {
                let s = if ff { c.li[i] } else { c.lo[j] };
                let k = i * DOUT + j;
                let want = merged_w[k] * (1.0 / (s + IA3_UNMERGE_EPS as f32));
                assert!(
                    (w[k] - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "ff {ff} {k}"
                );
                assert!((w[k] - c.w[k]).abs() < 1e-6, "ff {ff} {k}");
            }
        }
        let b = vals(l.bias().unwrap());
        for j in 0..DOUT {
            let want = if ff { c.b[j] } else { merged_b[j] / c.lo[j] };
            assert!((b[j] - want).abs() < 1e-6, "ff {ff} {j}");
        }
        // Forward is the adapted one again.
        let d = max_abs(
            &vals64(l.forward(t2(&c.x, N, DIN))),
            &reference(&c, ff, true),
        );
        assert!(d < 1e-5, "ff {ff}: {d}");
    }
}

#[test]
fn merge_into_a_quantized_base_requantizes_w_times_l() {
    let c = case();
    let kind = QuantKind::Nf4 {
        blocksize: 64,
        compress_statistics: false,
    };
    for ff in [false, true] {
        let mut l = layer::<B>(&c, ff, true);
        l.quantize(&kind).unwrap();
        let deq = vals(l.base_weight());
        let stats = l.merge_report().unwrap();
        assert!(stats.is_some());
        assert!(l.is_quantized());
        // Expected: quantize(dequantized W ⊙ l) with the same scheme, dequantized.
        let mut scaled = deq.clone();
        for i in 0..DIN {
            for j in 0..DOUT {
                scaled[i * DOUT + j] *= if ff { c.li[i] } else { c.lo[j] };
            }
        }
        let (q, _) = QuantBase::<B>::quantize(t2(&scaled, DIN, DOUT), &kind).unwrap();
        assert_eq!(
            vals(l.base_weight()),
            vals(q.dequantize_weight_in_out()),
            "ff {ff}"
        );
    }
}

#[test]
fn gradient_of_ia3_l_is_the_closed_form() {
    // loss = Σ y. Output scaling: ∂/∂l_j = Σ_n (x·W + b)_nj. Input scaling:
    // ∂/∂l_i = Σ_n x_ni · Σ_j W_ij.
    let c = case();
    for ff in [false, true] {
        let l = layer::<AD>(&c, ff, true);
        let y = l.forward(t2(&c.x, N, DIN));
        let grads = y.sum().backward();
        let a = l.attached_adapter().and_then(Adapter::as_ia3).unwrap();
        let g = vals64(a.ia3_l().grad(&grads).unwrap());
        let x = f64s(&c.x);
        let w = f64s(&c.w);
        let want: Vec<f64> = if ff {
            (0..DIN)
                .map(|i| {
                    let xs: f64 = (0..N).map(|n| x[n * DIN + i]).sum();
                    let ws: f64 = (0..DOUT).map(|j| w[i * DOUT + j]).sum();
                    xs * ws
                })
                .collect()
        } else {
            let base = mm(&x, &w, N, DIN, DOUT);
            (0..DOUT)
                .map(|j| (0..N).map(|n| base[n * DOUT + j] + c.b[j] as f64).sum())
                .collect()
        };
        let d = max_abs(&g, &want);
        assert!(d < 1e-4, "ff {ff}: {d}");
        // The frozen base gets no gradient.
        assert!(l.base().weight_param().val().grad(&grads).is_none());
    }
}

#[test]
fn mixed_precision_path_matches_the_closed_form() {
    // F64 as the compute dtype of an f32 model (NdArray has no bf16): the only rounding left
    // is the final cast to f32, so the result must agree with the f64 closed form to ~1e-6.
    let c = case();
    for ff in [false, true] {
        let mut l = layer::<B>(&c, ff, true);
        l.set_compute_dtype(FloatDType::F64).unwrap();
        let y = l.forward(t2(&c.x, N, DIN));
        assert_eq!(y.dtype(), burn::tensor::DType::F32);
        let d = max_abs(&vals64(y), &reference(&c, ff, true));
        assert!(d < 1e-5, "ff {ff}: {d}");
    }
}

#[test]
fn wrong_ia3_l_length_is_refused_naming_the_tensor() {
    let v = lcg(DOUT, 1);
    // [d_out] is wrong for a feed-forward (input-scaling) module, which needs [d_in].
    let e = Ia3Adapter::<B>::from_tensor(t1(&v), DIN, DOUT, true).unwrap_err();
    match &e {
        LoraError::Shape {
            what,
            expected,
            got,
        } => {
            assert!(what.contains("ia3_l") && what.contains("input"), "{what}");
            assert_eq!(
                (expected.as_slice(), got.as_slice()),
                (&[DIN][..], &[DOUT][..])
            );
        }
        other => panic!("{other:?}"),
    }
    let e = Ia3Adapter::<B>::from_tensor(t1(&lcg(DIN, 2)), DIN, DOUT, false).unwrap_err();
    assert!(e.to_string().contains("ia3_l"), "{e}");
    assert!(Ia3Adapter::<B>::from_tensor(t1(&v), DIN, DOUT, false).is_ok());
}
