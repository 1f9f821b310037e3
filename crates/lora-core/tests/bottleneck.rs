//! Bottleneck adapter math (AdapterHub `Adapter`) against closed forms computed by hand in f64.
mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use common::{f64s, lcg, lcg_scaled, mm, t1, t2, vals};
use lora_core::*;

type B = NdArray<f32>;
type AB = Autodiff<NdArray<f32>>;

const D: usize = 6;
const DB: usize = 2;
const N: usize = 5; // rows of x (batch · seq)

struct Weights {
    dw: Vec<f32>, // [D, DB]
    db: Vec<f32>, // [DB]
    uw: Vec<f32>, // [DB, D]
    ub: Vec<f32>, // [D]
}

fn weights() -> Weights {
    Weights {
        dw: lcg_scaled(D * DB, 11, 0.8),
        db: lcg_scaled(DB, 12, 0.3),
        uw: lcg_scaled(DB * D, 13, 0.7),
        ub: lcg_scaled(D, 14, 0.2),
    }
}

fn adapter<Bk: burn::tensor::backend::Backend>(
    w: &Weights,
    c: &BottleneckConfig,
) -> BottleneckAdapter<Bk> {
    BottleneckAdapter::from_tensors(t2(&w.dw, D, DB), t1(&w.db), t2(&w.uw, DB, D), t1(&w.ub), c)
        .unwrap()
}

fn config(act: BottleneckActivation) -> BottleneckConfig {
    BottleneckConfig {
        hidden_size: D,
        bottleneck_size: DB,
        non_linearity: act,
        ..BottleneckConfig::seq_bn(D)
    }
}

/// The bottleneck branch `scaling · (act(h·Wd + bd)·Wu + bu)` in f64.
fn branch(w: &Weights, h: &[f64], act: fn(f64) -> f64, scaling: f64) -> Vec<f64> {
    let mut down = mm(h, &f64s(&w.dw), N, D, DB);
    for (i, v) in down.iter_mut().enumerate() {
        *v = act(*v + w.db[i % DB] as f64);
    }
    let mut up = mm(&down, &f64s(&w.uw), N, DB, D);
    for (i, v) in up.iter_mut().enumerate() {
        *v = (*v + w.ub[i % D] as f64) * scaling;
    }
    up
}

fn relu(v: f64) -> f64 {
    v.max(0.0)
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Every combination of the three residual switches against its closed form.
#[test]
fn forward_residual_wiring_closed_forms() {
    let w = weights();
    let x = lcg(N * D, 1);
    let r = lcg(N * D, 2);
    let (xf, rf) = (f64s(&x), f64s(&r));
    for before in [false, true] {
        for after in [false, true] {
            for res_before in [false, true] {
                let c = BottleneckConfig {
                    original_ln_before: before,
                    original_ln_after: after,
                    residual_before_ln: res_before,
                    scaling: 0.75,
                    ..config(BottleneckActivation::Relu)
                };
                let a = adapter::<B>(&w, &c);
                let got = vals(a.forward(t2::<B>(&x, N, D), t2::<B>(&r, N, D)));
                let h = if before { add(&xf, &rf) } else { xf.clone() };
                let res = if res_before { xf.clone() } else { h.clone() };
                let mut want = add(&branch(&w, &h, relu, 0.75), &res);
                if after {
                    want = add(&want, &rf);
                }
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-5,
                    "before {before} after {after} res {res_before}: {d}"
                );
            }
        }
    }
}

/// seq_bn (Pfeiffer) on a GPT-2/Llama block: `f(x + r) + x + r`; double_seq_bn (Houlsby):
/// `f(x) + x + r`.
#[test]
fn presets_closed_forms() {
    let w = weights();
    let x = lcg(N * D, 3);
    let r = lcg(N * D, 4);
    let (xf, rf) = (f64s(&x), f64s(&r));
    let xr = add(&xf, &rf);

    let seq = BottleneckConfig {
        bottleneck_size: DB,
        ..BottleneckConfig::seq_bn(D)
    };
    let got = vals(adapter::<B>(&w, &seq).forward(t2::<B>(&x, N, D), t2::<B>(&r, N, D)));
    assert!(max_diff(&got, &add(&branch(&w, &xr, relu, 1.0), &xr)) < 1e-5);

    let dbl = BottleneckConfig {
        bottleneck_size: DB,
        ..BottleneckConfig::double_seq_bn(D)
    };
    assert_eq!(dbl.non_linearity, BottleneckActivation::Silu);
    let silu = |v: f64| v / (1.0 + (-v).exp());
    let got = vals(adapter::<B>(&w, &dbl).forward(t2::<B>(&x, N, D), t2::<B>(&r, N, D)));
    assert!(max_diff(&got, &add(&branch(&w, &xf, silu, 1.0), &xr)) < 1e-5);
}

/// The activations at fixed points (values from torch 2.15: `F.gelu`, `F.gelu(approximate=
/// "tanh")`, `F.silu`).
#[test]
fn activations_match_torch_values() {
    let x = [1.0f32, -0.5, 2.0, -3.0];
    let cases: [(&str, [f64; 4]); 8] = [
        ("relu", [1.0, 0.0, 2.0, 0.0]),
        (
            "gelu",
            [
                0.841344746068543,
                -0.15426876936299344,
                1.9544997361036416,
                -0.00404969409489031,
            ],
        ),
        (
            "gelu_new",
            [
                0.8411919906082768,
                -0.15428599017485606,
                1.954597694087775,
                -0.0036373920817729943,
            ],
        ),
        (
            "swish",
            [
                0.7310585786300049,
                -0.1887703343990727,
                1.7615941559557646,
                -0.14227761953270035,
            ],
        ),
        (
            "SiLU",
            [
                0.7310585786300049,
                -0.1887703343990727,
                1.7615941559557646,
                -0.14227761953270035,
            ],
        ),
        (
            "tanh",
            [1f64.tanh(), (-0.5f64).tanh(), 2f64.tanh(), (-3f64).tanh()],
        ),
        ("leakyrelu", [1.0, -0.005, 2.0, -0.03]),
        ("linear", [1.0, -0.5, 2.0, -3.0]),
    ];
    for (name, want) in cases {
        let act = BottleneckActivation::from_name(name).unwrap();
        let got = vals(act.forward(t1::<B>(&x)));
        let d = max_diff(&got, &want);
        assert!(d < 1e-6, "{name}: {got:?} vs {want:?}");
    }
    assert_eq!(BottleneckActivation::from_name("mish"), None);
    for n in BottleneckActivation::NAMES {
        assert!(BottleneckActivation::from_name(n).is_some(), "{n}");
    }
}

#[test]
fn bottleneck_size_is_floor_division() {
    let f = BottleneckConfig::bottleneck_size_for;
    assert_eq!(f(48, 16.0).unwrap(), 3);
    assert_eq!(f(64, 16.0).unwrap(), 4);
    assert_eq!(f(50, 3.0).unwrap(), 16);
    assert_eq!(f(48, 5.5).unwrap(), 8);
    assert_eq!(f(48, 100.0).unwrap(), 1); // at least 1
    assert_eq!(f(48, 0.5).unwrap(), 96); // rf < 1 widens
    assert!(matches!(f(48, 0.0), Err(LoraError::Bottleneck(_))));
    assert!(matches!(f(48, f64::NAN), Err(LoraError::Bottleneck(_))));
    assert_eq!(BottleneckConfig::seq_bn(48).bottleneck_size, 3);
}

#[test]
fn bad_shapes_and_values_are_refused() {
    let w = weights();
    let c = config(BottleneckActivation::Relu);
    let e = BottleneckAdapter::<B>::from_tensors(
        t2(&w.dw, DB, D), // transposed by mistake
        t1(&w.db),
        t2(&w.uw, DB, D),
        t1(&w.ub),
        &c,
    )
    .unwrap_err();
    assert_eq!(
        e,
        LoraError::Shape {
            what: "adapter_down weight".into(),
            expected: vec![D, DB],
            got: vec![DB, D]
        }
    );
    let e = BottleneckAdapter::<B>::from_tensors(
        t2(&w.dw, D, DB),
        t1(&w.db),
        t2(&w.uw, DB, D),
        t1(&w.ub[..D - 1]),
        &c,
    )
    .unwrap_err();
    assert!(matches!(e, LoraError::Shape { ref what, .. } if what == "adapter_up bias"));
    let bad = BottleneckConfig {
        adapter_dropout: 1.0,
        ..c.clone()
    };
    assert_eq!(
        BottleneckAdapter::<B>::new(&bad, &Default::default()).unwrap_err(),
        LoraError::BadDropout(1.0)
    );
    let bad = BottleneckConfig {
        scaling: f64::INFINITY,
        ..c.clone()
    };
    assert!(matches!(
        BottleneckAdapter::<B>::new(&bad, &Default::default()),
        Err(LoraError::Bottleneck(_))
    ));
    let bad = BottleneckConfig {
        bottleneck_size: 0,
        ..c
    };
    assert!(matches!(
        BottleneckAdapter::<B>::new(&bad, &Default::default()),
        Err(LoraError::Bottleneck(_))
    ));
}

/// "mam_adapter" starts as the identity wiring (`up` zero); "bert" draws N(0, 0.02) weights and
/// zero biases.
#[test]
fn init_weights() {
    let dev = Default::default();
    let x = lcg(N * D, 5);
    let r = lcg(N * D, 6);
    let mam = BottleneckConfig {
        init_weights: BottleneckInit::MamAdapter,
        ..config(BottleneckActivation::Relu)
    };
    let a = BottleneckAdapter::<B>::new(&mam, &dev).unwrap();
    assert!(vals(a.up_weight()).iter().all(|&v| v == 0.0));
    let bound = 1.0 / (D as f32).sqrt();
    let dw = vals(a.down_weight());
    assert!(dw.iter().all(|v| v.abs() <= bound) && dw.iter().any(|&v| v != 0.0));
    let got = vals(a.forward(t2::<B>(&x, N, D), t2::<B>(&r, N, D)));
    let want = add(&f64s(&x), &f64s(&r));
    assert!(max_diff(&got, &want) < 1e-6);

    let big = BottleneckConfig {
        hidden_size: 64,
        bottleneck_size: 64,
        ..BottleneckConfig::seq_bn(64)
    };
    let a = BottleneckAdapter::<B>::new(&big, &dev).unwrap();
    for w in [vals(a.down_weight()), vals(a.up_weight())] {
        let n = w.len() as f64;
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 0.003 && (std - 0.02).abs() < 0.002,
            "{mean} {std}"
        );
    }
    assert!(vals(a.down_bias()).iter().all(|&v| v == 0.0));
    assert!(vals(a.up_bias()).iter().all(|&v| v == 0.0));
}

/// Gradients reach `adapter_down` and `adapter_up`; for `loss = Σ out` the `adapter_up` bias
/// gradient is `scaling · rows` in every entry, and the `adapter_up` weight gradient is
/// `scaling · Σ_rows act(down)` in every column.
#[test]
fn gradients_reach_both_projections() {
    let w = weights();
    let c = BottleneckConfig {
        scaling: 0.5,
        ..config(BottleneckActivation::Relu)
    };
    let a = adapter::<AB>(&w, &c);
    let x = lcg(N * D, 7);
    let r = lcg(N * D, 8);
    let out = a.forward(t2::<AB>(&x, N, D), t2::<AB>(&r, N, D));
    let grads = out.sum().backward();
    let g = |t: Tensor<AB, 1>| vals(t.grad(&grads).expect("gradient"));
    let g2 = |t: Tensor<AB, 2>| vals(t.grad(&grads).expect("gradient"));

    let ub = g(a.up_bias());
    assert!(
        ub.iter().all(|&v| (v - 0.5 * N as f32).abs() < 1e-5),
        "{ub:?}"
    );

    // act(down(x + r)) summed over rows, times scaling, is each column of dL/dW_up.
    let h = add(&f64s(&x), &f64s(&r));
    let mut down = mm(&h, &f64s(&w.dw), N, D, DB);
    for (i, v) in down.iter_mut().enumerate() {
        *v = relu(*v + w.db[i % DB] as f64);
    }
    let uw = g2(a.up_weight());
    for j in 0..DB {
        let s: f64 = (0..N).map(|i| down[i * DB + j]).sum::<f64>() * 0.5;
        for o in 0..D {
            assert!((uw[j * D + o] as f64 - s).abs() < 1e-5);
        }
    }
    let dw = g2(a.down_weight());
    assert!(
        dw.iter().any(|&v| v != 0.0),
        "no gradient reached adapter_down"
    );
    assert!(g(a.down_bias()).iter().any(|&v| v != 0.0));
}
