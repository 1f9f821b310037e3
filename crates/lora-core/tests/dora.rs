//! DoRA (`DoraAdapter`, PEFT `tuners/lora/dora.py`) against closed forms computed in f64 on
//! the host: forward `(m/n)⊙(x·(W + sAB)) + b` with `n` the column norms of `W + sAB`, the
//! initial magnitude, merge = unmerged forward, unmerge = the original weight, an NF4 base
//! (dequantized by the host codec), dropout on both terms, gradients of `A`, `B`, `m`.
mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::{f64s, lcg, lcg_scaled, mm, t1, t2, transpose, vals};
use lora_core::quant::quantize_nf4_shaped;
use lora_core::*;

type B = NdArray<f32>;
type AB = Autodiff<NdArray<f32>>;

const N: usize = 4;
const D_IN: usize = 6;
const D_OUT: usize = 5;
const R: usize = 3;
const ALPHA: f64 = 6.0; // scaling 2

struct Parts {
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    m: Vec<f32>,
}

fn parts(seed: u64, d_in: usize) -> Parts {
    Parts {
        x: lcg(N * d_in, seed),
        w: lcg(d_in * D_OUT, seed + 1),
        bias: lcg(D_OUT, seed + 2),
        a: lcg_scaled(d_in * R, seed + 3, 0.5),
        b: lcg_scaled(R * D_OUT, seed + 4, 0.5),
        m: lcg(D_OUT, seed + 5).iter().map(|v| 1.5 + v).collect(),
    }
}

fn cfg() -> LoraLayerConfig {
    LoraLayerConfig {
        r: R,
        lora_alpha: ALPHA,
        ..Default::default()
    }
}

fn scaling() -> f64 {
    ALPHA / R as f64
}

/// `V = W + s·A·B` `[d_in, d_out]` and its column norms `n` `[d_out]`, in f64.
fn v_and_norm(w: &[f32], a: &[f32], b: &[f32], d_in: usize) -> (Vec<f64>, Vec<f64>) {
    let ab = mm(&f64s(a), &f64s(b), d_in, R, D_OUT);
    let v: Vec<f64> = w
        .iter()
        .zip(&ab)
        .map(|(w, d)| *w as f64 + scaling() * d)
        .collect();
    let n = (0..D_OUT)
        .map(|j| {
            (0..d_in)
                .map(|i| v[i * D_OUT + j].powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    (v, n)
}

/// `(m/n)⊙(x·V) + b`, `[N, d_out]`, in f64.
fn dora_closed_form(p: &Parts, w: &[f32], d_in: usize) -> Vec<f64> {
    let (v, n) = v_and_norm(w, &p.a, &p.b, d_in);
    let xv = mm(&f64s(&p.x), &v, N, d_in, D_OUT);
    (0..N * D_OUT)
        .map(|k| {
            let j = k % D_OUT;
            p.m[j] as f64 / n[j] * xv[k] + p.bias[j] as f64
        })
        .collect()
}

fn lora<Bk: Backend>(p: &Parts, d_in: usize) -> LoraAdapter<Bk> {
    LoraAdapter::from_tensors(t2(&p.a, d_in, R), t2(&p.b, R, D_OUT), &cfg()).unwrap()
}

fn dora_layer<Bk: Backend>(p: &Parts) -> LoraLinear<Bk> {
    let mut l = LoraLinear::new(t2(&p.w, D_IN, D_OUT), Some(t1(&p.bias)), false).unwrap();
    let d = DoraAdapter::from_parts(lora(p, D_IN), t1(&p.m)).unwrap();
    l.attach_adapter(d).unwrap();
    l
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn forward_matches_closed_form() {
    let p = parts(10, D_IN);
    let l = dora_layer::<B>(&p);
    let y = vals(l.forward(t2(&p.x, N, D_IN)));
    let want = dora_closed_form(&p, &p.w, D_IN);
    let d = max_diff(&y, &want);
    assert!(d < 1e-5, "forward vs closed form: {d}");
    // The magnitude matters: not the plain LoRA output.
    let (v, _) = v_and_norm(&p.w, &p.a, &p.b, D_IN);
    let lora_out: Vec<f64> = mm(&f64s(&p.x), &v, N, D_IN, D_OUT)
        .iter()
        .enumerate()
        .map(|(k, y)| y + p.bias[k % D_OUT] as f64)
        .collect();
    assert!(max_diff(&y, &lora_out) > 1e-2);
    let a = l.attached_adapter().unwrap();
    assert!(a.as_lora().is_none() && l.adapter().is_none());
    assert_eq!(vals(a.as_dora().unwrap().magnitude()), p.m);
}

#[test]
fn init_magnitude_is_the_norm_of_the_adapted_weight() {
    let p = parts(20, D_IN);
    let mut l = LoraLinear::<B>::new(t2(&p.w, D_IN, D_OUT), Some(t1(&p.bias)), false).unwrap();
    let d = DoraAdapter::init(lora(&p, D_IN), l.base()).unwrap();
    let (v, n) = v_and_norm(&p.w, &p.a, &p.b, D_IN);
    assert!(max_diff(&vals(d.magnitude()), &n) < 1e-5);
    l.attach_adapter(d).unwrap();
    // m = n: the layer starts as plain LoRA, x·(W + sAB) + b.
    let y = vals(l.forward(t2(&p.x, N, D_IN)));
    let want: Vec<f64> = mm(&f64s(&p.x), &v, N, D_IN, D_OUT)
        .iter()
        .enumerate()
        .map(|(k, y)| y + p.bias[k % D_OUT] as f64)
        .collect();
    assert!(max_diff(&y, &want) < 1e-5);

    // PEFT's default B = 0: m = ‖W‖ and the layer is the base.
    let zero_b = vec![0.0; R * D_OUT];
    let z = LoraAdapter::from_tensors(t2(&p.a, D_IN, R), t2(&zero_b, R, D_OUT), &cfg()).unwrap();
    let d = DoraAdapter::init(z, l.base()).unwrap();
    let w_norm: Vec<f64> = (0..D_OUT)
        .map(|j| {
            (0..D_IN)
                .map(|i| (p.w[i * D_OUT + j] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    assert!(max_diff(&vals(d.magnitude()), &w_norm) < 1e-5);
}

#[test]
fn merge_equals_unmerged_forward_and_unmerge_restores() {
    let p = parts(30, D_IN);
    let mut l = dora_layer::<B>(&p);
    let x = || t2::<B>(&p.x, N, D_IN);
    let y = vals(l.forward(x()));
    // The merged weight in closed form: column j of V times m_j / n_j.
    let (v, n) = v_and_norm(&p.w, &p.a, &p.b, D_IN);
    let want_w: Vec<f64> = (0..D_IN * D_OUT)
        .map(|k| v[k] * p.m[k % D_OUT] as f64 / n[k % D_OUT])
        .collect();
    let (mw, mb) = l.merged_base().unwrap();
    assert!(max_diff(&vals(mw), &want_w) < 1e-5);
    assert_eq!(vals(mb.unwrap()), p.bias);

    l.merge().unwrap();
    assert!(max_diff(&vals(l.base_weight()), &want_w) < 1e-5);
    let ym = vals(l.forward(x()));
    assert!(max_diff(&ym, &f64s(&y)) < 1e-5);
    l.unmerge().unwrap();
    assert!(max_diff(&vals(l.base_weight()), &f64s(&p.w)) < 1e-5);
    assert_eq!(vals(l.bias().unwrap()), p.bias);
    assert!(max_diff(&vals(l.forward(x())), &f64s(&y)) < 1e-5);

    // A clone of a merged layer keeps the norm its unmerge needs.
    l.merge().unwrap();
    let mut c = l.clone();
    c.unmerge().unwrap();
    assert!(max_diff(&vals(c.base_weight()), &f64s(&p.w)) < 1e-5);

    let plain = l.merge_and_unload().unwrap();
    assert!(!plain.has_adapter());
    assert!(max_diff(&vals(plain.forward(x())), &f64s(&y)) < 1e-5);
}

#[test]
fn unmerge_without_merge_and_bad_shapes_are_errors() {
    let p = parts(40, D_IN);
    let l = dora_layer::<B>(&p);
    let a = l.attached_adapter().unwrap();
    let e = a.unmerge_from(t2(&p.w, D_IN, D_OUT), None).unwrap_err();
    assert!(
        matches!(e, LoraError::State(ref s) if s.contains("DoRA unmerge")),
        "{e}"
    );

    let e = DoraAdapter::from_parts(lora::<B>(&p, D_IN), t1(&p.m[..D_OUT - 1])).unwrap_err();
    assert_eq!(
        e,
        LoraError::Shape {
            what: "lora_magnitude_vector".into(),
            expected: vec![D_OUT],
            got: vec![D_OUT - 1],
        }
    );
    // A pair made for another layer width does not fit the base.
    let other = parts(41, D_IN + 1);
    let base = LoraLinear::<B>::new(t2(&p.w, D_IN, D_OUT), None, false).unwrap();
    let e = DoraAdapter::init(lora::<B>(&other, D_IN + 1), base.base()).unwrap_err();
    assert!(
        matches!(e, LoraError::Shape { ref what, .. } if what.contains("lora_A")),
        "{e}"
    );
}

#[test]
fn nf4_base_uses_the_dequantized_weight() {
    const DI: usize = 70; // a short last NF4 block
    let p = parts(50, DI);
    let mut l = LoraLinear::<B>::new(t2(&p.w, DI, D_OUT), Some(t1(&p.bias)), false).unwrap();
    l.quantize(&QuantKind::NF4).unwrap();
    let w_torch = transpose(&p.w, DI, D_OUT);
    let deq = quantize_nf4_shaped(&w_torch, &[D_OUT, DI], 64, false)
        .unwrap()
        .dequantize()
        .unwrap();
    let deq = transpose(&deq, D_OUT, DI);
    assert!(deq.iter().zip(&p.w).any(|(a, b)| a != b));

    // Init from the dequantized weight (PEFT: dequantize_module_weight).
    let d = DoraAdapter::init(lora(&p, DI), l.base()).unwrap();
    let (_, n) = v_and_norm(&deq, &p.a, &p.b, DI);
    assert!(max_diff(&vals(d.magnitude()), &n) < 1e-5);

    // Forward with a perturbed magnitude on the quantized base (m within 10% of n, so that the
    // unmerge, which multiplies the requantized W' by n/m, does not amplify its error).
    let m: Vec<f32> = n
        .iter()
        .zip(lcg(D_OUT, 51))
        .map(|(n, e)| (*n * (1.0 + 0.1 * e as f64)) as f32)
        .collect();
    let p = Parts { m, ..p };
    l.attach_adapter(DoraAdapter::from_parts(lora(&p, DI), t1(&p.m)).unwrap())
        .unwrap();
    let y = vals(l.forward(t2(&p.x, N, DI)));
    let want = dora_closed_form(&p, &deq, DI);
    assert!(max_diff(&y, &want) < 1e-5);

    // Merge requantizes (W' back in NF4, as PEFT's bitsandbytes merge): the weight moves by
    // about one NF4 rounding, and unmerge (requantized again) stays within a few of them.
    let q_err = max_diff(&deq, &f64s(&p.w));
    l.merge().unwrap();
    assert!(l.is_quantized());
    let ym = vals(l.forward(t2(&p.x, N, DI)));
    let dm = max_diff(&ym, &f64s(&y));
    assert!(
        dm > 0.0 && dm < 10.0 * q_err,
        "NF4 merge moved outputs by {dm}"
    );
    l.unmerge().unwrap();
    let du = max_diff(&vals(l.base_weight()), &f64s(&deq));
    assert!(
        du < 3.0 * q_err,
        "NF4 unmerge error {du}, one rounding {q_err}"
    );
}

#[test]
fn dropout_applies_to_both_terms() {
    // d_in = 1: each row of dropout(x) is 0 or x / (1 − p), so the adapter's contribution
    // y − base(x) is 0 or (x / (1 − p))·[(m/n − 1)⊙W + (m/n)⊙s·A·B] (PEFT computes x'·W from
    // the dropped input when dropout is active).
    const ROWS: usize = 64;
    let prob = 0.5;
    let w = lcg(D_OUT, 60);
    let a = lcg_scaled(R, 61, 0.5);
    let b = lcg_scaled(R * D_OUT, 62, 0.5);
    let m: Vec<f32> = lcg(D_OUT, 63).iter().map(|v| 1.5 + v).collect();
    let bias = lcg(D_OUT, 64);
    let x: Vec<f32> = (0..ROWS).map(|k| 0.5 + (k % 7) as f32 / 7.0).collect();
    let c = LoraLayerConfig {
        lora_dropout: prob,
        ..cfg()
    };
    let mut l = LoraLinear::<AB>::new(t2(&w, 1, D_OUT), Some(t1(&bias)), false).unwrap();
    let lo = LoraAdapter::from_tensors(t2(&a, 1, R), t2(&b, R, D_OUT), &c).unwrap();
    l.attach_adapter(DoraAdapter::from_parts(lo, t1(&m)).unwrap())
        .unwrap();
    AB::seed(&Default::default(), 7);
    let y = vals(l.forward(t2(&x, ROWS, 1)));

    let (v, n) = v_and_norm(&w, &a, &b, 1);
    let per_unit: Vec<f64> = (0..D_OUT)
        .map(|j| {
            let s = m[j] as f64 / n[j];
            (s - 1.0) * w[j] as f64 + s * (v[j] - w[j] as f64)
        })
        .collect();
    let (mut kept, mut dropped) = (0, 0);
    for k in 0..ROWS {
        let xk = x[k] as f64;
        let extra: Vec<f64> = (0..D_OUT)
            .map(|j| y[k * D_OUT + j] as f64 - (xk * w[j] as f64 + bias[j] as f64))
            .collect();
        let zero = extra.iter().all(|e| e.abs() < 1e-5);
        let full = (0..D_OUT).all(|j| {
            let want = xk / (1.0 - prob) * per_unit[j];
            // f32 rounding of y (|y| up to ~10) survives the subtraction of the base output.
            (extra[j] - want).abs() < 1e-4 * (1.0 + want.abs())
        });
        assert!(zero || full, "row {k}: {extra:?}");
        kept += usize::from(full);
        dropped += usize::from(zero);
    }
    assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");
}

#[test]
fn gradients_reach_a_b_and_m_in_closed_form() {
    // L = Σ y with y = (m/n)⊙(x·W + s·x·A·B) + b and n detached:
    // dL/dm_j = Σ_k (x·V)_kj / n_j; dL/dB_rj = (m_j/n_j)·s·Σ_k (x·A)_kr;
    // dL/dA_ir = s·Σ_k x_ki · Σ_j (m_j/n_j)·B_rj.
    let p = parts(70, D_IN);
    let l = dora_layer::<AB>(&p);
    let grads = l.forward(t2(&p.x, N, D_IN)).sum().backward();
    let d = l.attached_adapter().unwrap().as_dora().unwrap();
    let g = |t: Tensor<AB, 2>| vals(t.grad(&grads).unwrap());
    let gm = vals(d.magnitude().grad(&grads).unwrap());
    let (ga, gb) = (g(d.lora().lora_a()), g(d.lora().lora_b()));

    let (v, n) = v_and_norm(&p.w, &p.a, &p.b, D_IN);
    let xv = mm(&f64s(&p.x), &v, N, D_IN, D_OUT);
    let xa = mm(&f64s(&p.x), &f64s(&p.a), N, D_IN, R);
    let ratio: Vec<f64> = (0..D_OUT).map(|j| p.m[j] as f64 / n[j]).collect();
    let want_m: Vec<f64> = (0..D_OUT)
        .map(|j| (0..N).map(|k| xv[k * D_OUT + j]).sum::<f64>() / n[j])
        .collect();
    let want_b: Vec<f64> = (0..R * D_OUT)
        .map(|q| {
            let (r, j) = (q / D_OUT, q % D_OUT);
            ratio[j] * scaling() * (0..N).map(|k| xa[k * R + r]).sum::<f64>()
        })
        .collect();
    let want_a: Vec<f64> = (0..D_IN * R)
        .map(|q| {
            let (i, r) = (q / R, q % R);
            let xs: f64 = (0..N).map(|k| p.x[k * D_IN + i] as f64).sum();
            let bs: f64 = (0..D_OUT)
                .map(|j| ratio[j] * p.b[r * D_OUT + j] as f64)
                .sum();
            scaling() * xs * bs
        })
        .collect();
    for (what, got, want) in [
        ("m", &gm, &want_m),
        ("B", &gb, &want_b),
        ("A", &ga, &want_a),
    ] {
        let d = max_diff(got, want);
        assert!(d < 1e-4, "grad {what}: {d}");
        assert!(
            want.iter().any(|v| v.abs() > 1e-2),
            "grad {what} trivially small"
        );
    }
    // The frozen base gets none.
    assert!(l.base().weight_param().val().grad(&grads).is_none());
}

#[test]
fn training_steps_lower_the_loss() {
    // Plain gradient descent on ‖y − t‖² for a target the base cannot reach.
    let p = parts(80, D_IN);
    let target: Vec<f32> = lcg(N * D_OUT, 81);
    let mut l = dora_layer::<AB>(&p);
    let loss_of = |l: &LoraLinear<AB>| {
        let y = l.forward(t2(&p.x, N, D_IN));
        (y - t2::<AB>(&target, N, D_OUT)).powi_scalar(2).sum()
    };
    let first = vals(loss_of(&l))[0];
    let lr = 0.02;
    for _ in 0..30 {
        let loss = loss_of(&l);
        let grads = loss.backward();
        let d = l.attached_adapter().unwrap().as_dora().unwrap();
        let step = |t: Tensor<AB, 2>| {
            let g = t.grad(&grads).unwrap();
            Tensor::<AB, 2>::from_inner(t.inner() - g.mul_scalar(lr))
        };
        let (a, b) = (step(d.lora().lora_a()), step(d.lora().lora_b()));
        let m = d.magnitude();
        let gm = m.grad(&grads).unwrap();
        let m = Tensor::<AB, 1>::from_inner(m.inner() - gm.mul_scalar(lr));
        let lo = LoraAdapter::from_tensors(a, b, &cfg()).unwrap();
        l.attach_adapter(DoraAdapter::from_parts(lo, m).unwrap())
            .unwrap();
    }
    let last = vals(loss_of(&l))[0];
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}

/// One layer as a model, what `count_parameters` counts.
#[derive(burn::module::Module, Debug)]
struct One<B: Backend> {
    layer: LoraLinear<B>,
}

impl<Bk: Backend> NamedLinears<Bk> for One<Bk> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<Bk>)) {
        f("layer", &self.layer);
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<Bk>)) {
        f("layer", &mut self.layer);
    }
}

#[test]
fn magnitude_is_a_trainable_parameter() {
    // PEFT counts lora_A, lora_B and lora_magnitude_vector as trainable.
    let p = parts(90, D_IN);
    let c = count_parameters(&One {
        layer: dora_layer::<AB>(&p),
    });
    assert_eq!(c.trainable, D_IN * R + R * D_OUT + D_OUT);
    assert_eq!(c.all, c.trainable + D_IN * D_OUT + D_OUT);
}
