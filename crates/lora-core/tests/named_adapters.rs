//! Several named adapters on one layer, against closed forms in f64: the active set's terms
//! add (PEFT `set_adapter([a, b])`), merge folds them all in, delete and rename keep the
//! bookkeeping, and the per-row choice (PEFT `adapter_names`) gives each row its adapter's output.
mod common;

use burn::backend::NdArray;
use burn::module::Module;
use burn::tensor::Tensor;
use common::{f64s, lcg, mm, t1, t2, vals};
use lora_core::*;

type NB = NdArray<f32>;

const N: usize = 3;
const DIN: usize = 10;
const DOUT: usize = 7;

fn cfg(r: usize, alpha: f64) -> LoraLayerConfig {
    LoraLayerConfig {
        r,
        lora_alpha: alpha,
        ..Default::default()
    }
}

/// A layer with bias and the LoRA adapters "a" (r 2, alpha 3) and "b" (r 3, alpha 1.5); "a" is
/// active (added first).
fn layer() -> LoraLinear<NB> {
    let mut l = LoraLinear::<NB>::new(
        t2(&lcg(DIN * DOUT, 1), DIN, DOUT),
        Some(t1(&lcg(DOUT, 2))),
        false,
    )
    .unwrap();
    for (name, r, alpha, seed) in [("a", 2, 3.0, 10), ("b", 3, 1.5, 20)] {
        let a = l
            .lora_from_tensors(
                t2(&lcg(DIN * r, seed), DIN, r),
                t2(&lcg(r * DOUT, seed + 1), r, DOUT),
                &cfg(r, alpha),
            )
            .unwrap();
        l.add_adapter(name, a).unwrap();
    }
    l
}

/// `x·W + b + Σ scaling·x·A·B` over `names`, in f64, for `x` `[rows, DIN]`.
fn reference(x: &[f32], rows: usize, names: &[&str]) -> Vec<f64> {
    let x = f64s(x);
    let mut y = mm(&x, &f64s(&lcg(DIN * DOUT, 1)), rows, DIN, DOUT);
    let bias = f64s(&lcg(DOUT, 2));
    for (i, v) in y.iter_mut().enumerate() {
        *v += bias[i % DOUT];
    }
    for name in names {
        let (r, alpha, seed) = match *name {
            "a" => (2, 3.0, 10),
            "b" => (3, 1.5, 20),
            _ => unreachable!(),
        };
        let h = mm(&x, &f64s(&lcg(DIN * r, seed)), rows, DIN, r);
        let d = mm(&h, &f64s(&lcg(r * DOUT, seed + 1)), rows, r, DOUT);
        for (v, dv) in y.iter_mut().zip(d) {
            *v += alpha / r as f64 * dv;
        }
    }
    y
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn active_adapters_add_their_terms() {
    let mut l = layer();
    let x = lcg(N * DIN, 3);
    let fwd = |l: &LoraLinear<NB>| vals(l.forward(t2::<NB>(&x, N, DIN)));
    assert_eq!(l.adapter_names(), ["a", "b"]);
    assert_eq!(l.active_adapters(), ["a"]);
    assert!(max_diff(&fwd(&l), &reference(&x, N, &["a"])) < 1e-5);

    l.set_active_adapters(&["a", "b"]).unwrap();
    let both = fwd(&l);
    assert!(max_diff(&both, &reference(&x, N, &["a", "b"])) < 1e-5);
    // The second adapter really moves the output (the test could not pass with one term).
    assert!(max_diff(&both, &reference(&x, N, &["a"])) > 1e-2);

    l.set_active_adapters(&["b"]).unwrap();
    assert!(max_diff(&fwd(&l), &reference(&x, N, &["b"])) < 1e-5);
    l.set_active_adapters(&[]).unwrap();
    assert!(max_diff(&fwd(&l), &reference(&x, N, &[])) < 1e-5);

    // Bad sets are refused and leave the active set alone.
    assert!(l.set_active_adapters(&["a", "zzz"]).is_err());
    assert!(l.set_active_adapters(&["a", "a"]).is_err());
    assert!(l.active_adapters().is_empty());
}

#[test]
fn merge_folds_every_active_adapter_in_and_unmerge_restores() {
    let mut l = layer();
    l.set_active_adapters(&["b", "a"]).unwrap();
    let x = lcg(N * DIN, 4);
    let before = vals(l.forward(t2::<NB>(&x, N, DIN)));
    let w0 = vals(l.base_weight());
    let (mw, _) = l.merged_base().unwrap();
    l.merge().unwrap();
    assert!(l.is_merged());
    assert_eq!(vals(l.base_weight()), vals(mw));
    let after = vals(l.forward(t2::<NB>(&x, N, DIN)));
    assert!(max_diff(&after, &f64s(&before)) < 1e-5);
    // Merged: switching, deleting a merged adapter and per-row choice are refused.
    assert!(l.set_active_adapters(&["a"]).is_err());
    assert!(l.delete_adapter("a").is_err());
    assert!(l
        .forward_adapter_names(t2::<NB>(&x, N, DIN), &["a", "b", "a"])
        .is_err());
    l.unmerge().unwrap();
    assert!(max_diff(&vals(l.base_weight()), &f64s(&w0)) < 1e-6);
    // Closed form of the merged weight: W + Σ scaling·A·B.
    let mut want = f64s(&w0);
    for (r, alpha, seed) in [(2usize, 3.0, 10), (3, 1.5, 20)] {
        let d = mm(
            &f64s(&lcg(DIN * r, seed)),
            &f64s(&lcg(r * DOUT, seed + 1)),
            DIN,
            r,
            DOUT,
        );
        for (v, dv) in want.iter_mut().zip(d) {
            *v += alpha / r as f64 * dv;
        }
    }
    let (mw, _) = l.merged_base().unwrap();
    assert!(max_diff(&vals(mw), &want) < 1e-5);
}

#[test]
fn delete_rename_and_the_default_adapter() {
    let mut l = layer();
    l.set_active_adapters(&["a", "b"]).unwrap();
    l.delete_adapter("a").unwrap();
    assert_eq!(l.active_adapters(), ["b"]);
    // Deleting the only active adapter activates the first remaining name in sorted order.
    let extra = l
        .lora_from_tensors(
            t2(&lcg(DIN, 7), DIN, 1),
            t2(&lcg(DOUT, 8), 1, DOUT),
            &cfg(1, 1.0),
        )
        .unwrap();
    l.add_adapter("c", extra).unwrap();
    assert_eq!(l.active_adapters(), ["b"]);
    l.delete_adapter("b").unwrap();
    assert_eq!(l.active_adapters(), ["c"]);
    assert!(l.delete_adapter("b").is_err());
    assert!(l
        .add_adapter("c", l.lora_named("c").unwrap().clone())
        .is_err());
    assert!(l
        .add_adapter(BASE_ROW, l.lora_named("c").unwrap().clone())
        .is_err());

    // The single-adapter API is the adapter named "default".
    assert!(l.adapter().is_none() && l.has_adapter());
    l.rename_adapter("c", DEFAULT_ADAPTER).unwrap();
    assert_eq!(l.active_adapters(), [DEFAULT_ADAPTER]);
    assert_eq!(l.adapter().unwrap().r(), 1);
    l.attach(&cfg(4, 8.0), &Default::default()).unwrap();
    assert_eq!(l.adapter_names(), [DEFAULT_ADAPTER]);
    assert_eq!(l.adapter().unwrap().r(), 4);
    assert_eq!(l.num_params(), DIN * DOUT + DOUT + 4 * (DIN + DOUT));
}

#[test]
fn parameters_follow_the_adapters_in_insertion_order() {
    let l = layer();
    let want = DIN * DOUT + DOUT + 2 * (DIN + DOUT) + 3 * (DIN + DOUT);
    assert_eq!(l.num_params(), want);
    // The record holds the adapters in order: reloading it into a fresh layer with the same
    // names gives the same outputs.
    let fresh = layer();
    let record = l.clone().into_record();
    let reloaded = fresh.load_record(record);
    let x = lcg(N * DIN, 9);
    assert_eq!(
        vals(reloaded.forward(t2::<NB>(&x, N, DIN))),
        vals(l.forward(t2::<NB>(&x, N, DIN)))
    );
}

#[test]
fn per_row_adapter_names_give_each_row_its_adapter() {
    let mut l = layer();
    l.set_active_adapters(&["a", "b"]).unwrap();
    let x = lcg(4 * DIN, 5);
    let names = ["b", BASE_ROW, "a", "b"];
    let y = vals(
        l.forward_adapter_names(t2::<NB>(&x, 4, DIN), &names)
            .unwrap(),
    );
    for (row, name) in names.iter().enumerate() {
        let xr = &x[row * DIN..(row + 1) * DIN];
        let want = match *name {
            BASE_ROW => reference(xr, 1, &[]),
            n => reference(xr, 1, &[n]),
        };
        let got = &y[row * DOUT..(row + 1) * DOUT];
        assert!(max_diff(got, &want) < 1e-5, "row {row} ({name})");
    }
    // The same through forward with the names set, on a [batch, seq, d_in] input.
    let x3: Tensor<NB, 3> = t2::<NB>(&lcg(4 * 2 * DIN, 6), 8, DIN).reshape([4, 2, DIN]);
    let direct = vals(l.forward_adapter_names(x3.clone(), &names).unwrap());
    l.set_adapter_names(Some(names.iter().map(|s| s.to_string()).collect()))
        .unwrap();
    assert_eq!(vals(l.forward(x3.clone())), direct);
    l.set_adapter_names(None).unwrap();
    // Without names, both active adapters apply to every row.
    assert_ne!(vals(l.forward(x3)), direct);

    // Bad inputs: wrong count, unknown name.
    let err = l
        .forward_adapter_names(t2::<NB>(&x, 4, DIN), &["a", "b"])
        .unwrap_err();
    assert!(matches!(err, LoraError::Shape { .. }), "{err}");
    let err = l
        .forward_adapter_names(t2::<NB>(&x, 4, DIN), &["a", "b", "a", "nope"])
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(l.set_adapter_names(Some(vec!["nope".into()])).is_err());
}
