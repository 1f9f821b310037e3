//! `causal_attention` against PyTorch: the output on the inference backend, and the output and
//! the gradients of `q`, `k`, `v` on the training backend, whose attention backward keeps no
//! score-sized tensor and recomputes the probabilities (vendor/burn-autodiff). References:
//! torch's `scaled_dot_product_attention` differentiated by autograd in float64
//! (`tests/fixtures/make_attention_fixtures.py`); a fully masked row is checked against its
//! closed form (zero output, zero gradients).

use burn::tensor::{Tensor, TensorData};
use lora_models::layers::{causal_attention, causal_mask};
use lora_models::st::StFile;

mod common;
use common::attention::{check_case, load, vals, want, AB};
use common::{fixtures, max_diff, B};

#[test]
fn prefix_positions_match_torch() {
    check_case("prefix", 1e-5);
}

#[test]
fn grouped_query_rows_match_torch() {
    check_case("gqa", 1e-5);
}

/// burn's attention op with the causal mask given as a bool mask (`true` = hidden) instead of
/// a bias: the same output and gradients as torch's.
#[test]
fn bool_mask_matches_torch() {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    let st = StFile::open(fixtures().join("attention/io.safetensors")).unwrap();
    let case = "prefix";
    let q = load::<AB>(&st, case, "q").require_grad();
    let k = load::<AB>(&st, case, "k").require_grad();
    let v = load::<AB>(&st, case, "v").require_grad();
    let hidden = load::<AB>(&st, case, "mask").equal_elem(f32::NEG_INFINITY);
    let [b, h, rows, _] = q.dims();
    let keys = k.dims()[2];
    let options = AttentionModuleOptions {
        scale: Some(1.0),
        softcap: None,
        is_causal: false,
    };
    let out = attention(
        q.clone(),
        k.clone(),
        v.clone(),
        Some(hidden.expand([b, h, rows, keys])),
        None,
        options,
    );
    let d = max_diff(&vals(out.clone()), &want(&st, case, "out"));
    assert!(d <= 1e-5, "output off by {d}");
    let grads = (out * load::<AB>(&st, case, "dout")).sum().backward();
    for (name, t) in [("grad_q", &q), ("grad_k", &k), ("grad_v", &v)] {
        let d = max_diff(&vals(t.grad(&grads).unwrap()), &want(&st, case, name));
        println!("bool mask: {name} vs torch, max abs diff {d:.2e}");
        assert!(d <= 1e-5, "{name} off by {d}");
    }
}

/// The causal mask as the models build it: row `r` sees keys `0..=past + r mod seq`.
#[test]
fn causal_mask_matches_fixture() {
    let st = StFile::open(fixtures().join("attention/io.safetensors")).unwrap();
    for (case, seq, groups, past) in [("prefix", 6, 1, 2), ("gqa", 5, 2, 0)] {
        let m = causal_mask::<B>(seq, groups, past, &Default::default());
        assert_eq!(vals(m), want(&st, case, "mask"), "{case}");
    }
}

/// A row whose keys are all masked: zero output and no gradient through it (the fallback's
/// convention), and the other row's values still exact.
#[test]
fn fully_masked_row_is_zero() {
    let dev = Default::default();
    let q = Tensor::<AB, 4>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0], [1, 1, 2, 2]),
        &dev,
    )
    .require_grad();
    let k = Tensor::<AB, 4>::from_data(
        TensorData::new(vec![0.3f32, -0.2, 1.0, 0.4], [1, 1, 2, 2]),
        &dev,
    )
    .require_grad();
    let v = Tensor::<AB, 4>::from_data(
        TensorData::new(vec![2.0f32, 1.0, -1.0, 3.0], [1, 1, 2, 2]),
        &dev,
    )
    .require_grad();
    let ninf = f32::NEG_INFINITY;
    // Row 0 sees nothing; row 1 sees both keys.
    let mask = Tensor::<AB, 4>::from_data(
        TensorData::new(vec![ninf, ninf, 0.0, 0.0], [1, 1, 2, 2]),
        &dev,
    );
    let out = causal_attention(q.clone(), k.clone(), v.clone(), mask);
    let got = vals(out.clone());
    // Row 1: scores 0.5·0.3 − 1·(−0.2) = 0.35 and 0.5·1 − 1·0.4 = 0.1.
    let (e0, e1) = (0.35f32.exp(), 0.1f32.exp());
    let (p0, p1) = (e0 / (e0 + e1), e1 / (e0 + e1));
    let row1 = [2.0 * p0 - p1, p0 + 3.0 * p1];
    assert_eq!(&got[..2], &[0.0, 0.0]);
    assert!(max_diff(&got[2..], &row1) <= 1e-6, "{got:?} vs {row1:?}");
    let grads = out.sum().backward();
    let gq = vals(q.grad(&grads).unwrap());
    assert_eq!(
        &gq[..2],
        &[0.0, 0.0],
        "no gradient reaches the masked row's query"
    );
    assert!(gq.iter().all(|x| x.is_finite()));
    for t in [&k, &v] {
        assert!(vals(t.grad(&grads).unwrap()).iter().all(|x| x.is_finite()));
    }
}
