//! LoRA layer math against closed forms computed by hand in f64.
mod common;

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use common::{f64s, lcg, mm, t2, vals};
use lora_core::*;

type B = NdArray<f32>;

fn dev() -> burn::tensor::Device<B> {
    Default::default()
}

/// `x·w` in f64 from f32 inputs.
fn matmul(x: &[f32], w: &[f32], n: usize, k: usize, m: usize) -> Vec<f64> {
    mm(&f64s(x), &f64s(w), n, k, m)
}

#[test]
fn scaling_closed_form() {
    assert_eq!(scaling(8, 16.0, false).unwrap(), 2.0);
    assert_eq!(scaling(16, 8.0, true).unwrap(), 2.0); // 8 / sqrt(16)
    assert_eq!(scaling(4, 32.0, true).unwrap(), 16.0);
    assert_eq!(scaling(0, 8.0, false), Err(LoraError::ZeroRank(0)));
}

#[test]
fn zero_rank_is_an_error() {
    let cfg = LoraLayerConfig {
        r: 0,
        ..Default::default()
    };
    let e = LoraAdapter::<B>::new(4, 4, &cfg, &dev()).unwrap_err();
    assert!(e.to_string().contains("r = 0"), "{e}");
    let cfg = LoraLayerConfig {
        lora_dropout: 1.5,
        ..Default::default()
    };
    assert!(matches!(
        LoraAdapter::<B>::new(4, 4, &cfg, &dev()),
        Err(LoraError::BadDropout(_))
    ));
}

#[test]
fn default_init_b_zero_gives_base_output() {
    let (n, din, dout) = (3, 5, 4);
    let x = lcg(n * din, 1);
    let w = lcg(din * dout, 2);
    let bias = lcg(dout, 3);
    let mut layer = LoraLinear::<B>::new(
        t2(&w, din, dout),
        Some(Tensor::from_data(
            TensorData::new(bias.clone(), [dout]),
            &dev(),
        )),
        false,
    )
    .unwrap();
    layer
        .attach(
            &LoraLayerConfig {
                r: 2,
                lora_alpha: 16.0,
                ..Default::default()
            },
            &dev(),
        )
        .unwrap();
    let y = vals(layer.forward(t2(&x, n, din)));
    let expect = matmul(&x, &w, n, din, dout);
    for i in 0..n * dout {
        assert!((y[i] as f64 - (expect[i] + bias[i % dout] as f64)).abs() < 1e-5);
    }
    // A is kaiming-uniform: bounded by 1/sqrt(d_in) and not all zero.
    let a = vals(layer.adapter().unwrap().lora_a());
    let bound = 1.0 / (din as f32).sqrt();
    assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|v| *v != 0.0));
    assert!(vals(layer.adapter().unwrap().lora_b())
        .iter()
        .all(|v| *v == 0.0));
}

#[test]
fn forward_matches_closed_form_and_merge_equals_unmerged() {
    let (n, din, dout, r) = (4, 6, 5, 3);
    let x = lcg(n * din, 11);
    let w = lcg(din * dout, 12);
    let a = lcg(din * r, 13);
    let b = lcg(r * dout, 14);
    for (alpha, rs) in [(6.0, false), (6.0, true), (1.0, false)] {
        let cfg = LoraLayerConfig {
            r,
            lora_alpha: alpha,
            use_rslora: rs,
            ..Default::default()
        };
        let s = if rs {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        let mut layer = LoraLinear::<B>::new(t2(&w, din, dout), None, false).unwrap();
        layer
            .attach_tensors(t2(&a, din, r), t2(&b, r, dout), &cfg)
            .unwrap();
        let y = vals(layer.forward(t2(&x, n, din)));
        let base = matmul(&x, &w, n, din, dout);
        let xa = matmul(&x, &a, n, din, r);
        let xa32: Vec<f32> = xa.iter().map(|v| *v as f32).collect();
        let xab = matmul(&xa32, &b, n, r, dout);
        for i in 0..n * dout {
            let e = base[i] + s * xab[i];
            assert!(
                (y[i] as f64 - e).abs() < 1e-5,
                "alpha={alpha} rs={rs} i={i}: {} vs {e}",
                y[i]
            );
        }
        layer.merge().unwrap();
        assert!(layer.merge().is_err());
        let ym = vals(layer.forward(t2(&x, n, din)));
        for i in 0..n * dout {
            assert!((ym[i] - y[i]).abs() < 1e-5);
        }
        layer.unmerge().unwrap();
        let wu = vals(layer.base_weight());
        for i in 0..din * dout {
            assert!((wu[i] - w[i]).abs() < 1e-6);
        }
        let plain = layer.merge_and_unload().unwrap();
        assert!(!plain.has_adapter());
        let yp = vals(plain.forward(t2(&x, n, din)));
        for i in 0..n * dout {
            assert!((yp[i] - y[i]).abs() < 1e-5);
        }
    }
}

#[test]
fn gaussian_init_std_is_one_over_r() {
    let r = 4;
    let cfg = LoraLayerConfig {
        r,
        init: LoraInit::Gaussian,
        ..Default::default()
    };
    let ad = LoraAdapter::<B>::new(4096, 8, &cfg, &dev()).unwrap();
    let a = vals(ad.lora_a());
    let mean = a.iter().map(|v| *v as f64).sum::<f64>() / a.len() as f64;
    let var = a.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
    assert!((var.sqrt() - 0.25).abs() < 0.01, "std {}", var.sqrt());
}

#[test]
fn trainable_parameter_report() {
    // require_grad is only tracked on an autodiff backend, as in training.
    type AB = burn::backend::Autodiff<B>;
    let dev = Default::default();
    let mut layer = LoraLinear::<AB>::new(
        Tensor::zeros([10, 20], &dev),
        Some(Tensor::zeros([20], &dev)),
        false,
    )
    .unwrap();
    layer
        .attach(
            &LoraLayerConfig {
                r: 2,
                ..Default::default()
            },
            &dev,
        )
        .unwrap();
    let c = count_parameters(&layer);
    assert_eq!(
        c,
        ParamCount {
            trainable: 2 * 10 + 2 * 20,
            all: 200 + 20 + 60
        }
    );
    assert_eq!(
        c.to_string(),
        "trainable params: 60 || all params: 280 || trainable%: 21.4286"
    );
}

#[test]
fn bad_bias_and_factor_shapes_are_errors() {
    let e = LoraLinear::<B>::new(
        Tensor::zeros([3, 4], &dev()),
        Some(Tensor::zeros([5], &dev())),
        false,
    )
    .unwrap_err();
    assert!(matches!(e, LoraError::Shape { .. }));
    let mut l = LoraLinear::<B>::new(Tensor::zeros([3, 4], &dev()), None, false).unwrap();
    let cfg = LoraLayerConfig {
        r: 2,
        ..Default::default()
    };
    let e = l
        .attach_tensors(
            Tensor::zeros([4, 2], &dev()),
            Tensor::zeros([2, 4], &dev()),
            &cfg,
        )
        .unwrap_err();
    assert!(e.to_string().contains("lora_A"), "{e}");
}
