//! Several named adapters on the real GPT-2 / Llama models against what PEFT 0.21 computed
//! (`tests/fixtures/make_multi_fixtures.py`): logits with one and with two active adapters,
//! per-row `adapter_names`, `save_pretrained`'s layout, and `add_weighted_adapter`'s `cat`
//! (exact), `linear` and `svd` (compared as `ΔW = B'·A'`); bad inputs refused.
mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{fixtures, max_abs_diff, read_st, to_vec, B};
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{CombinationType, NamedAdapters, PeftError};
use std::path::Path;

const TOL: f32 = 1e-4;

fn ids(dir: &Path) -> (Tensor<B, 2, Int>, StFile) {
    let st = StFile::open(dir.join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st)
}

fn logits(st: &StFile, key: &str) -> Vec<f32> {
    st.f32(key).unwrap().0
}

/// The model with PEFT's adapters "default", "b" and "c" loaded from `fx` (save_pretrained
/// layout: default in `fx/`, the others in `fx/<name>/`).
fn loaded<M: LanguageModel<B>>(model: M, fx: &str) -> NamedAdapters<M> {
    let dir = fixtures().join(fx);
    let mut m = NamedAdapters::new(model).unwrap();
    m.load_adapter(&dir, "default", &Default::default())
        .unwrap();
    for n in ["b", "c"] {
        m.load_adapter(&dir.join(n), n, &Default::default())
            .unwrap();
    }
    m
}

fn gpt2() -> Gpt2<B> {
    Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default())
        .unwrap()
        .0
}

fn llama() -> Llama<B> {
    Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default())
        .unwrap()
        .0
}

fn check_active_and_rows<M: LanguageModel<B>>(model: M, fx: &str) {
    let dir = fixtures().join(fx);
    let (ids, st) = ids(&dir);
    let mut m = loaded(model, fx);
    assert_eq!(m.adapter_names(), ["default", "b", "c"]);
    assert_eq!(m.active_adapters(), ["default"]);

    let got = to_vec(m.model().forward(ids.clone()));
    let d = max_abs_diff(&got, &logits(&st, "logits_default"));
    println!("{fx}: default active: logits max |diff| vs PEFT = {d:e}");
    assert!(d < TOL, "{fx} default: {d}");

    m.set_adapter(&["default", "b"]).unwrap();
    let got = to_vec(m.model().forward(ids.clone()));
    let want = logits(&st, "logits_ab");
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&want, &logits(&st, "logits_default"));
    println!(
        "{fx}: [default, b] active: logits max |diff| vs PEFT = {d:e} (b moves them {moved:e})"
    );
    assert!(d < TOL && moved > 100.0 * TOL, "{fx} [default, b]: {d}");

    let names = ["default", "__base__", "b"];
    let got = to_vec(
        m.with_adapter_names(&names, |model| model.forward(ids.clone()))
            .unwrap(),
    );
    let d = max_abs_diff(&got, &logits(&st, "logits_rows"));
    println!("{fx}: adapter_names {names:?}: logits max |diff| vs PEFT = {d:e}");
    assert!(d < TOL, "{fx} rows: {d}");
    // The per-row choice is gone afterwards: the active set applies again.
    let again = to_vec(m.model().forward(ids));
    assert!(max_abs_diff(&again, &logits(&st, "logits_ab")) < TOL);

    // save_pretrained writes PEFT's layout and PEFT's exact tensors (keys without names).
    let out = tempfile::tempdir().unwrap();
    m.save_pretrained(out.path()).unwrap();
    for (sub, peft) in [
        ("", dir.clone()),
        ("b", dir.join("b")),
        ("c", dir.join("c")),
    ] {
        let ours = out.path().join(sub).join("adapter_model.safetensors");
        assert_eq!(
            read_st(&ours),
            read_st(&peft.join("adapter_model.safetensors")),
            "{fx}/{sub}"
        );
        assert!(out.path().join(sub).join("adapter_config.json").is_file());
    }
    assert!(m.active_adapters() == ["default", "b"] && m.adapter_names().len() == 3);
}

#[test]
fn gpt2_two_active_adapters_and_adapter_names_match_peft() {
    check_active_and_rows(gpt2(), "gpt2_a_multi");
}

#[test]
fn llama_two_active_adapters_and_adapter_names_match_peft() {
    check_active_and_rows(llama(), "llama_a_multi");
}

/// `ΔW = B·A` `[d_out, d_in]` per layer of an adapter file, in f64, keyed by layer.
fn deltas(path: &Path) -> Vec<(String, Vec<f64>)> {
    let t = read_st(path);
    let mut out = Vec::new();
    for (k, shape_a, a) in t.iter().filter(|(k, _, _)| k.ends_with(".lora_A.weight")) {
        let kb = k.replace(".lora_A.", ".lora_B.");
        let (_, shape_b, b) = t.iter().find(|(k2, _, _)| *k2 == kb).unwrap();
        let (r, d_in, d_out) = (shape_a[0], shape_a[1], shape_b[0]);
        assert_eq!(shape_b[1], r);
        let mut d = vec![0.0; d_out * d_in];
        for o in 0..d_out {
            for j in 0..r {
                let bv = f64::from(b[o * r + j]);
                for i in 0..d_in {
                    d[o * d_in + i] += bv * f64::from(a[j * d_in + i]);
                }
            }
        }
        out.push((k.clone(), d));
    }
    out
}

fn check_weighted<M: LanguageModel<B>>(model: M, fx: &str) {
    let dir = fixtures().join(fx);
    let mut m = loaded(model, fx);
    let out = tempfile::tempdir().unwrap();
    let cases = [
        ("cat", CombinationType::Cat, ["default", "b"], [0.7, -1.3]),
        ("svd", CombinationType::Svd, ["default", "b"], [0.7, -1.3]),
        (
            "linear",
            CombinationType::Linear,
            ["default", "c"],
            [0.6, -0.9],
        ),
    ];
    for (name, ty, adapters, weights) in cases {
        m.add_weighted_adapter(&adapters, &weights, name, ty)
            .unwrap();
        let peft_dir = dir.join(name);
        let (ids, st) = ids(&peft_dir);
        m.set_adapter(&[name]).unwrap();
        let got = to_vec(m.model().forward(ids));
        let d = max_abs_diff(&got, &logits(&st, "logits"));
        println!("{fx}: add_weighted_adapter {name}: logits max |diff| vs PEFT = {d:e}");
        assert!(d < TOL, "{fx} {name}: {d}");

        m.save_adapter(name, &out.path().join(name)).unwrap();
        let ours = read_st(&out.path().join(name).join("adapter_model.safetensors"));
        let peft = read_st(&peft_dir.join("adapter_model.safetensors"));
        let keys = |v: &[(String, Vec<usize>, Vec<f32>)]| {
            v.iter()
                .map(|(k, s, _)| (k.clone(), s.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&ours), keys(&peft), "{fx} {name}: keys and shapes");
        let cfg = lora_peft::LoraConfig::from_file(out.path().join(name)).unwrap();
        let peft_cfg = lora_peft::LoraConfig::from_file(&peft_dir).unwrap();
        assert_eq!(
            (cfg.r, cfg.lora_alpha, &cfg.target_modules),
            (peft_cfg.r, peft_cfg.lora_alpha, &peft_cfg.target_modules),
            "{fx} {name}: config"
        );
        match ty {
            CombinationType::Cat => {
                // Exact: the same f32 products and concatenation as PEFT.
                assert_eq!(ours, peft, "{fx} cat tensors");
            }
            CombinationType::Linear => {
                let d = ours
                    .iter()
                    .zip(&peft)
                    .map(|(a, b)| max_abs_diff(&a.2, &b.2))
                    .fold(0.0, f32::max);
                println!("{fx}: linear A'/B' max |diff| vs PEFT = {d:e}");
                assert!(d < 1e-6, "{fx} linear tensors: {d}");
            }
            CombinationType::Svd => {
                let (a, b) = (
                    deltas(&out.path().join(name).join("adapter_model.safetensors")),
                    deltas(&peft_dir.join("adapter_model.safetensors")),
                );
                let mut worst = 0.0f64;
                for ((ka, da), (kb, db)) in a.iter().zip(&b) {
                    assert_eq!(ka, kb);
                    let d = da
                        .iter()
                        .zip(db)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0.0, f64::max);
                    worst = worst.max(d);
                }
                println!("{fx}: svd ΔW = B'A' max |diff| vs PEFT = {worst:e}");
                assert!(worst < 1e-4, "{fx} svd ΔW: {worst}");
            }
        }
    }
}

#[test]
fn gpt2_add_weighted_adapter_matches_peft() {
    check_weighted(gpt2(), "gpt2_a_multi");
}

#[test]
fn llama_add_weighted_adapter_matches_peft() {
    check_weighted(llama(), "llama_a_multi");
}

#[test]
fn delete_moves_the_active_set_as_peft() {
    let mut m = loaded(gpt2(), "gpt2_a_multi");
    m.set_adapter(&["b", "default"]).unwrap();
    m.delete_adapter("b").unwrap();
    assert_eq!(m.active_adapters(), ["default"]);
    assert_eq!(m.adapter_names(), ["default", "c"]);
    // Deleting the only active adapter activates the first remaining name in sorted order.
    m.delete_adapter("default").unwrap();
    assert_eq!(m.active_adapters(), ["c"]);
    let (ids, _) = ids(&fixtures().join("gpt2_a_multi"));
    let with_c = to_vec(m.model().forward(ids.clone()));
    let mut only_c = NamedAdapters::new(gpt2()).unwrap();
    only_c
        .load_adapter(&fixtures().join("gpt2_a_multi/c"), "c", &Default::default())
        .unwrap();
    assert_eq!(with_c, to_vec(only_c.model().forward(ids)));
}

#[test]
fn bad_inputs_are_refused() {
    let mut m = loaded(gpt2(), "gpt2_a_multi");
    let dir = fixtures().join("gpt2_a_multi");
    let dev = Default::default();
    let unknown = |e: PeftError, n: &str| {
        assert!(
            matches!(&e, PeftError::UnknownAdapter { name, .. } if name == n),
            "{e}"
        );
    };
    unknown(m.set_adapter(&["default", "x"]).unwrap_err(), "x");
    unknown(m.delete_adapter("x").unwrap_err(), "x");
    unknown(
        m.with_adapter_names(&["x", "__base__", "b"], |_| ())
            .unwrap_err(),
        "x",
    );
    unknown(
        m.add_weighted_adapter(&["default", "x"], &[1.0, 1.0], "n", CombinationType::Cat)
            .unwrap_err(),
        "x",
    );
    assert!(m.set_adapter(&[]).is_err());
    assert!(m.set_adapter(&["b", "b"]).is_err());
    // Names: taken, reserved, not a folder name.
    for bad in ["b", "__base__", "", "a/b", ".."] {
        assert!(
            m.load_adapter(&dir.join("c"), bad, &dev).is_err(),
            "{bad:?}"
        );
    }
    // A failed load leaves the model as it was: a missing directory, and a Llama adapter whose
    // targets GPT-2 lacks (refused by the loader after the "default" adapters were set aside).
    let (ids, st) = ids(&dir);
    assert!(m.load_adapter(&dir.join("missing"), "d", &dev).is_err());
    assert!(m
        .load_adapter(&fixtures().join("llama_a_lora"), "d", &dev)
        .is_err());
    assert_eq!(m.adapter_names(), ["default", "b", "c"]);
    assert_eq!(m.active_adapters(), ["default"]);
    let got = to_vec(m.model().forward(ids));
    assert!(max_abs_diff(&got, &logits(&st, "logits_default")) < TOL);

    // linear needs equal ranks (default r 3, b r 5).
    let e = m
        .add_weighted_adapter(&["default", "b"], &[1.0, 1.0], "n", CombinationType::Linear)
        .unwrap_err();
    assert!(
        matches!(&e, PeftError::Config { field, .. } if field == "r"),
        "{e}"
    );
    let e = m
        .add_weighted_adapter(&["default", "b"], &[1.0], "n", CombinationType::Cat)
        .unwrap_err();
    assert!(
        matches!(&e, PeftError::Config { field, .. } if field == "weights"),
        "{e}"
    );
    let e = m
        .add_weighted_adapter(&["default"], &[f64::NAN], "n", CombinationType::Cat)
        .unwrap_err();
    assert!(
        matches!(&e, PeftError::Config { field, .. } if field == "weights"),
        "{e}"
    );
    assert!(m
        .add_weighted_adapter(&["default", "b"], &[1.0, 1.0], "c", CombinationType::Cat)
        .is_err());
    // A list of target modules and a regex do not mix (PEFT refuses too).
    m.load_adapter(&fixtures().join("gpt2_a_lora_rs"), "rs", &dev)
        .unwrap();
    let e = m
        .add_weighted_adapter(&["default", "rs"], &[1.0, 1.0], "n", CombinationType::Cat)
        .unwrap_err();
    assert!(
        matches!(&e, PeftError::Config { field, .. } if field == "target_modules"),
        "{e}"
    );
    assert_eq!(m.adapter_names(), ["default", "b", "c", "rs"]);

    assert!(matches!(
        "ties".parse::<CombinationType>(),
        Err(PeftError::Unsupported { .. })
    ));
    assert!(matches!(
        "sum".parse::<CombinationType>(),
        Err(PeftError::Config { .. })
    ));
    assert_eq!(
        "svd".parse::<CombinationType>().unwrap(),
        CombinationType::Svd
    );

    // A model that already carries an adapter cannot be wrapped.
    let mut g = gpt2();
    lora_peft::load_adapter(&mut g, &dir, &dev).unwrap();
    assert!(NamedAdapters::new(g).is_err());
}
