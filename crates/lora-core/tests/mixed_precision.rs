//! Mixed precision plumbing of `LoraLinear` (compute dtype of the frozen base, f32 master LoRA
//! weights) on the NdArray CPU backend.
//!
//! NdArray 0.21 holds no bf16/f16 tensors (`burn-ndarray-0.21.0/src/backend.rs`, `dtype_usage`:
//! `F16 | BF16 => empty`), so here the bf16 path is checked for its clear error, and the whole
//! cast machinery (x cast in, base and LoRA matmuls in the compute dtype, cast back, f32 bias,
//! f32 gradients of A and B) is exercised with **F64** as the compute dtype of an `NdArray<f32>`
//! model: with f64 compute the only rounding left is the final cast to f32, so the output must
//! match an f64 closed form to ~1e-7 while an f32 forward misses it by more.
mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{DType, FloatDType};
use common::{f64s, lcg, mm, rel, t1, t2, transpose as tr, vals64 as vals};
use lora_core::*;

type B = NdArray<f32>;
type AD = Autodiff<NdArray<f32>>;

const N: usize = 6;
const DIN: usize = 64;
const DOUT: usize = 48;
const R: usize = 4;
const S: f64 = 2.0; // lora_alpha 8 / r 4

struct Case {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    a: Vec<f32>,
    bb: Vec<f32>,
}

fn case() -> Case {
    Case {
        x: lcg(N * DIN, 1),
        w: lcg(DIN * DOUT, 2),
        b: lcg(DOUT, 3),
        a: lcg(DIN * R, 4),
        bb: lcg(R * DOUT, 5),
    }
}

fn cfg() -> LoraLayerConfig {
    LoraLayerConfig {
        r: R,
        lora_alpha: 8.0,
        ..Default::default()
    }
}

fn layer<BB: burn::tensor::backend::Backend>(c: &Case) -> LoraLinear<BB> {
    let mut l = LoraLinear::new(t2(&c.w, DIN, DOUT), Some(t1(&c.b)), false).unwrap();
    l.attach_tensors(t2(&c.a, DIN, R), t2(&c.bb, R, DOUT), &cfg())
        .unwrap();
    l
}

/// `x·W + b + s·(x·A)·B` in f64 from the f32 inputs.
fn reference(c: &Case, w: &[f64]) -> Vec<f64> {
    let x = f64s(&c.x);
    let base = mm(&x, w, N, DIN, DOUT);
    let h = mm(&x, &f64s(&c.a), N, DIN, R);
    let d = mm(&h, &f64s(&c.bb), N, R, DOUT);
    (0..N * DOUT)
        .map(|i| base[i] + c.b[i % DOUT] as f64 + S * d[i])
        .collect()
}

#[test]
fn f32_compute_dtype_is_the_plain_f32_forward_bit_for_bit() {
    let c = case();
    let mut l = layer::<B>(&c);
    assert_eq!(l.compute_dtype(), FloatDType::F32);
    // The same ops written out, no casts: must be equal to the last bit.
    let x = t2::<B>(&c.x, N, DIN);
    let expect = burn::tensor::module::linear(x.clone(), t2(&c.w, DIN, DOUT), Some(t1(&c.b)))
        + x.clone()
            .matmul(t2(&c.a, DIN, R))
            .matmul(t2(&c.bb, R, DOUT))
            .mul_scalar(S);
    let expect = vals(expect);
    assert_eq!(vals(l.forward(x.clone())), expect);
    // Setting f32 is a no-op; f32 → f64 → f32 round-trips the weight exactly.
    l.set_compute_dtype(FloatDType::F32).unwrap();
    assert_eq!(vals(l.forward(x.clone())), expect);
    l.set_compute_dtype(FloatDType::F64).unwrap();
    assert_ne!(vals(l.forward(x.clone())), expect); // really another computation
    l.set_compute_dtype(FloatDType::F32).unwrap();
    assert_eq!(l.base().weight_param().dtype(), DType::F32);
    assert_eq!(vals(l.forward(x)), expect);
}

#[test]
fn f64_compute_on_an_f32_model_matches_the_f64_closed_form() {
    let c = case();
    let want = reference(&c, &f64s(&c.w));
    let x = t2::<B>(&c.x, N, DIN);
    let l32 = layer::<B>(&c);
    let e32 = rel(&vals(l32.forward(x.clone())), &want);
    let mut l = layer::<B>(&c);
    l.set_compute_dtype(FloatDType::F64).unwrap();
    assert_eq!(l.base().weight_param().dtype(), DType::F64);
    let lora = l.adapter().unwrap();
    assert_eq!(lora.lora_a().dtype(), DType::F32, "A stays f32");
    assert_eq!(lora.lora_b().dtype(), DType::F32, "B stays f32");
    let y = l.forward(x);
    assert_eq!(
        y.dtype(),
        DType::F32,
        "output comes back in the input dtype"
    );
    let e64 = rel(&vals(y), &want);
    eprintln!("rel. error vs f64: f32 forward {e32:.3e}, f64-compute forward {e64:.3e}");
    // Only the final rounding to f32 (unit roundoff 6e-8) remains.
    assert!(e64 < 1e-7, "{e64}");
    assert!(e32 > e64, "f32 {e32} vs f64 compute {e64}");
    // base_weight comes back in f32 with the same values.
    let bw = l.base_weight();
    assert_eq!(bw.dtype(), DType::F32);
    assert_eq!(vals(bw), f64s(&c.w));
}

#[test]
fn gradients_of_a_and_b_are_f32_and_match_the_closed_form() {
    let c = case();
    let g = lcg(N * DOUT, 9); // upstream gradient: loss = Σ y ⊙ g
    let mut l = layer::<AD>(&c);
    l.set_compute_dtype(FloatDType::F64).unwrap();
    let y = l.forward(t2::<AD>(&c.x, N, DIN));
    assert_eq!(y.dtype(), DType::F32);
    let loss = (y * t2::<AD>(&g, N, DOUT)).sum();
    let grads = loss.backward();
    let lora = l.adapter().unwrap();
    let ga = lora.lora_a().grad(&grads).unwrap();
    let gb = lora.lora_b().grad(&grads).unwrap();
    assert_eq!(ga.dtype(), DType::F32);
    assert_eq!(gb.dtype(), DType::F32);
    assert!(
        l.base().weight_param().grad(&grads).is_none(),
        "frozen base gets no gradient"
    );
    // dL/dB = s·(xA)ᵀ g, dL/dA = s·xᵀ (g Bᵀ).
    let x = f64s(&c.x);
    let g64 = f64s(&g);
    let h = mm(&x, &f64s(&c.a), N, DIN, R);
    let want_b: Vec<f64> = mm(&tr(&h, N, R), &g64, R, N, DOUT)
        .iter()
        .map(|v| S * v)
        .collect();
    let gbt = mm(&g64, &tr(&f64s(&c.bb), R, DOUT), N, DOUT, R);
    let want_a: Vec<f64> = mm(&tr(&x, N, DIN), &gbt, DIN, N, R)
        .iter()
        .map(|v| S * v)
        .collect();
    let (ea, eb) = (rel(&vals(ga), &want_a), rel(&vals(gb), &want_b));
    eprintln!("grad rel. errors: A {ea:.3e}, B {eb:.3e}");
    assert!(ea < 1e-7 && eb < 1e-7, "{ea} {eb}");
}

#[test]
fn dropout_path_and_eval_path_run_in_the_compute_dtype() {
    let c = case();
    let mut l = LoraLinear::<AD>::new(t2(&c.w, DIN, DOUT), None, false).unwrap();
    let cfg = LoraLayerConfig {
        lora_dropout: 0.5,
        ..cfg()
    };
    l.attach_tensors(t2(&c.a, DIN, R), t2(&c.bb, R, DOUT), &cfg)
        .unwrap();
    l.set_compute_dtype(FloatDType::F64).unwrap();
    let y = l.forward(t2::<AD>(&c.x, N, DIN));
    assert_eq!(y.dtype(), DType::F32);
    let grads = y.sum().backward();
    let ga = l.adapter().unwrap().lora_a().grad(&grads).unwrap();
    assert_eq!(ga.dtype(), DType::F32);
    assert!(vals(ga).iter().all(|v| v.is_finite()));
}

#[test]
fn quantized_base_computes_in_the_compute_dtype() {
    let c = case();
    let mut l = layer::<B>(&c);
    l.quantize(&QuantKind::NF4).unwrap();
    let deq = vals(l.base_weight()); // f32 dequantized weight [d_in, d_out]
    let want = reference(&c, &deq);
    let x = t2::<B>(&c.x, N, DIN);
    l.set_compute_dtype(FloatDType::F64).unwrap();
    assert_eq!(l.compute_dtype(), FloatDType::F64);
    assert_eq!(
        l.base().weight_param().dims(),
        [0, 0],
        "placeholder stays empty"
    );
    let y = l.forward(x);
    assert_eq!(y.dtype(), DType::F32);
    let e = rel(&vals(y), &want);
    assert!(e < 1e-7, "{e}");
    // Dequantizing keeps the compute dtype; base_weight is f32 and unchanged.
    l.dequantize();
    assert_eq!(l.base().weight_param().dtype(), DType::F64);
    assert_eq!(vals(l.base_weight()), deq);
}

#[test]
fn merge_into_a_switched_base_keeps_its_dtype() {
    let c = case();
    let mut l = layer::<B>(&c);
    l.set_compute_dtype(FloatDType::F64).unwrap();
    let x = t2::<B>(&c.x, N, DIN);
    let before = vals(l.forward(x.clone()));
    l.merge().unwrap();
    assert_eq!(l.base().weight_param().dtype(), DType::F64);
    let after = vals(l.forward(x));
    let e = rel(&after, &before);
    assert!(e < 1e-6, "{e}");
    let lin = l.into_linear().unwrap();
    assert_eq!(lin.weight.dtype(), DType::F32);
}

#[test]
fn bf16_on_ndarray_is_a_clear_error_and_changes_nothing() {
    let c = case();
    let mut l = layer::<B>(&c);
    for d in [FloatDType::BF16, FloatDType::F16] {
        let e = l.set_compute_dtype(d).unwrap_err();
        assert_eq!(
            e,
            LoraError::UnsupportedDtype {
                dtype: d,
                backend: "ndarray".into()
            }
        );
        assert!(e.to_string().contains("ndarray"), "{e}");
    }
    assert_eq!(l.compute_dtype(), FloatDType::F32);
}

/// Two layers, the second trainable (like a classifier's `score`, PEFT `modules_to_save`);
/// autodiff backend, the only one that tracks `require_grad`.
struct Two {
    a: LoraLinear<AD>,
    score: LoraLinear<AD>,
}

impl NamedLinears<AD> for Two {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<AD>)) {
        f("a", &self.a);
        f("score", &self.score);
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<AD>)) {
        f("a", &mut self.a);
        f("score", &mut self.score);
    }
}

#[test]
fn model_level_switch_keeps_trainable_bases_f32() {
    let c = case();
    let mut score = LoraLinear::new(t2::<AD>(&c.w, DIN, DOUT), None, false).unwrap();
    score.set_base_trainable(true);
    assert!(matches!(
        score.set_compute_dtype(FloatDType::F64),
        Err(LoraError::State(_))
    ));
    let mut m = Two {
        a: layer(&c),
        score,
    };
    let e = m.set_compute_dtype(FloatDType::BF16).unwrap_err();
    assert!(matches!(e, LoraError::UnsupportedDtype { .. }));
    assert_eq!(m.a.compute_dtype(), FloatDType::F32);
    let rep = m.set_compute_dtype(FloatDType::F64).unwrap();
    assert_eq!(rep.switched, vec!["a".to_string()]);
    assert_eq!(rep.kept_master, vec!["score".to_string()]);
    assert_eq!(m.a.base().weight_param().dtype(), DType::F64);
    assert_eq!(m.score.base().weight_param().dtype(), DType::F32);
    assert!(rep.to_string().contains("on 1 linear layers"), "{rep}");
}

#[test]
fn precision_flag_parses_and_rejects() {
    assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
    assert_eq!(" FP16 ".parse::<Precision>().unwrap(), Precision::F16);
    assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
    assert_eq!(Precision::Bf16.dtype(), FloatDType::BF16);
    assert_eq!(Precision::F16.to_string(), "f16");
    let e = "fp8".parse::<Precision>().unwrap_err();
    assert_eq!(e, LoraError::UnknownPrecision("fp8".into()));
    assert!(e.to_string().contains("\"fp8\"") && e.to_string().contains("bf16"));
}
