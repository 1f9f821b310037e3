//! GPT-2 against transformers' `GPT2LMHeadModel` (fixtures written by
//! `tests/fixtures/make_fixtures.py`), save/load round trips and loader errors.

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use lora_core::{LoraLayerConfig, NamedLinears};
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_models::st::StFile;
use lora_models::{LanguageModel, ModelError};
use std::path::{Path, PathBuf};

mod common;
use common::{copy_fixture, edit_config, fixtures, io, max_diff, values, B};

fn check_logits(name: &str) {
    let dir = fixtures().join(name);
    let (model, config) = Gpt2::<B>::load(&dir, &Default::default()).unwrap();
    let (ids, want, want_shape) = io(&dir, "logits");
    let (got, shape) = values(model.forward(ids));
    assert_eq!(shape, want_shape);
    assert_eq!(shape[2], config.vocab_size);
    let d = max_diff(&got, &want);
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    println!("{name}: max |logits − transformers| = {d:.3e} (max |logit| {scale:.3})");
    assert!(
        scale > 0.1,
        "reference logits are too small to be a meaningful test"
    );
    assert!(d <= 1e-4, "{name}: max abs diff {d}");
}

#[test]
fn gpt2_a_logits_match_transformers() {
    check_logits("gpt2_a");
}

#[test]
fn gpt2_b_logits_match_transformers() {
    check_logits("gpt2_b");
}

#[test]
fn config_fields_and_names() {
    let (model, c) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    assert_eq!(
        (
            c.vocab_size,
            c.n_positions,
            c.n_embd,
            c.n_layer,
            c.n_head,
            c.n_inner
        ),
        (101, 32, 48, 2, 4, 192)
    );
    assert_eq!(c.pad_token_id, None);
    assert_eq!(c.raw["transformers_version"], "5.24.0");
    let names = model.linear_names();
    assert_eq!(
        names,
        [
            "transformer.h.0.attn.c_attn",
            "transformer.h.0.attn.c_proj",
            "transformer.h.0.mlp.c_fc",
            "transformer.h.0.mlp.c_proj",
            "transformer.h.1.attn.c_attn",
            "transformer.h.1.attn.c_proj",
            "transformer.h.1.mlp.c_fc",
            "transformer.h.1.mlp.c_proj",
        ]
    );
    model.visit_linears(&mut |n, l| {
        assert!(l.fan_in_fan_out(), "{n}");
        assert!(!l.is_base_trainable(), "{n} must be frozen");
    });
    // The classification checkpoint (with `score.weight`) loads; pad_token_id kept. transformers
    // 5 omits the default two labels from config.json, so num_labels is None there.
    let (_, c) = Gpt2::<B>::load(&fixtures().join("gpt2_cls"), &Default::default()).unwrap();
    assert_eq!((c.num_labels, c.pad_token_id), (None, Some(0)));
    let tmp = copy_fixture("gpt2_cls");
    edit_config(tmp.path(), |v| {
        v["id2label"] = serde_json::json!({"0": "a", "1": "b", "2": "c"});
        v["num_labels"] = 7.into();
    });
    let (_, c) = Gpt2::<B>::load(tmp.path(), &Default::default()).unwrap();
    assert_eq!(
        c.num_labels,
        Some(3),
        "id2label wins over num_labels, as in transformers"
    );
}

#[test]
fn save_hf_round_trip_is_exact() {
    let dir = fixtures().join("gpt2_b");
    let (model, config) = Gpt2::<B>::load(&dir, &Default::default()).unwrap();
    let (ids, _, _) = io(&dir, "logits");
    let tmp = tempfile::tempdir().unwrap();
    model.save_hf(&config, tmp.path()).unwrap();
    let st = StFile::open(tmp.path().join("model.safetensors")).unwrap();
    assert!(st.contains("transformer.h.2.mlp.c_proj.weight"));
    let (model2, config2) = Gpt2::<B>::load(tmp.path(), &Default::default()).unwrap();
    assert_eq!(
        config2,
        Gpt2Config {
            raw: config2.raw.clone(),
            ..config.clone()
        }
    );
    let (a, _) = values(model.forward(ids.clone()));
    let (b, _) = values(model2.forward(ids));
    // Same weights: equal up to the (threaded) matmul's summation order.
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        a.len() == b.len() && d <= 1e-6,
        "reloaded model must give the same logits: max diff {d}"
    );
    // Only the temporary-file-free result is left.
    let mut files: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["config.json", "model.safetensors"]);
}

/// Attaches the PEFT adapter of `gpt2_a_lora` (PEFT layout A `[r, in]`, B `[out, r]`).
fn attach_peft(model: &mut Gpt2<B>, dir: &Path) {
    let st = StFile::open(dir.join("adapter_model.safetensors")).unwrap();
    let cfg = LoraLayerConfig {
        r: 4,
        lora_alpha: 8.0,
        ..Default::default()
    };
    let mut n = 0;
    model.visit_linears_mut(&mut |name, l| {
        let ka = format!("base_model.model.{name}.lora_A.weight");
        let kb = format!("base_model.model.{name}.lora_B.weight");
        let (Ok((a, sa)), Ok((b, sb))) = (st.f32(&ka), st.f32(&kb)) else {
            return;
        };
        let dev = Default::default();
        let a = Tensor::<B, 2>::from_data(TensorData::new(a, [sa[0], sa[1]]), &dev).transpose();
        let b = Tensor::<B, 2>::from_data(TensorData::new(b, [sb[0], sb[1]]), &dev).transpose();
        l.attach_tensors(a, b, &cfg).unwrap();
        n += 1;
    });
    assert_eq!(n, 8, "every linear layer of gpt2_a carries the adapter");
}

#[test]
fn save_hf_merges_adapter_like_peft_merge_and_unload() {
    let dir = fixtures().join("gpt2_a_lora");
    let (mut model, config) =
        Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    attach_peft(&mut model, &dir);
    let (ids, want, _) = io(&dir, "logits");
    let (got, _) = values(model.forward(ids.clone()));
    let d = max_diff(&got, &want);
    println!("gpt2_a_lora: adapter logits vs PEFT max diff {d:.3e}");
    assert!(d <= 1e-4);
    let tmp = tempfile::tempdir().unwrap();
    model.save_hf(&config, tmp.path()).unwrap();
    let (merged, _) = Gpt2::<B>::load(tmp.path(), &Default::default()).unwrap();
    let (_, want_m, _) = io(&dir, "logits_merged");
    let (got_m, _) = values(merged.forward(ids));
    let d = max_diff(&got_m, &want_m);
    println!("gpt2_a_lora: save_hf(merged) reload vs PEFT merge_and_unload max diff {d:.3e}");
    assert!(d <= 1e-4);
}

fn load_err(dir: &Path) -> ModelError {
    match Gpt2::<B>::load(dir, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_weights_file_is_an_io_error_naming_it() {
    let tmp = copy_fixture("gpt2_a");
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    let e = load_err(tmp.path());
    assert!(matches!(e, ModelError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn truncated_weights_file_is_a_format_error_naming_it() {
    let tmp = copy_fixture("gpt2_a");
    let p = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(tmp.path());
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn config_weight_shape_mismatch_names_the_key() {
    let tmp = copy_fixture("gpt2_a");
    edit_config(tmp.path(), |v| v["vocab_size"] = 100.into());
    let e = load_err(tmp.path());
    match &e {
        ModelError::Shape {
            key, expected, got, ..
        } => {
            assert_eq!(key, "transformer.wte.weight");
            assert_eq!(
                (expected.as_slice(), got.as_slice()),
                (&[100, 48][..], &[101, 48][..])
            );
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    let tmp = copy_fixture("gpt2_a");
    edit_config(tmp.path(), |v| v["n_inner"] = 100.into());
    let e = load_err(tmp.path());
    assert!(
        e.to_string().contains("transformer.h.0.mlp.c_fc.weight"),
        "{e}"
    );
}

#[test]
fn bad_config_values_name_config_json_and_key() {
    let tmp = copy_fixture("gpt2_a");
    edit_config(tmp.path(), |v| v["activation_function"] = "relu".into());
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, ModelError::Config { key, .. } if key == "activation_function"),
        "{e:?}"
    );
    assert!(e.to_string().contains("config.json"), "{e}");

    let tmp = copy_fixture("gpt2_a");
    edit_config(tmp.path(), |v| v["n_head"] = 5.into());
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, ModelError::Config { key, .. } if key == "n_head"),
        "{e:?}"
    );

    // Exact GELU is accepted (and changes the output).
    let tmp = copy_fixture("gpt2_a");
    edit_config(tmp.path(), |v| v["activation_function"] = "gelu".into());
    let (m, c) = Gpt2::<B>::load(tmp.path(), &Default::default()).unwrap();
    assert_eq!(c.activation_function.as_str(), "gelu");
    let (ids, want, _) = io(&fixtures().join("gpt2_a"), "logits");
    let (got, _) = values(m.forward(ids));
    let d = max_diff(&got, &want);
    assert!(
        d > 1e-6 && d < 0.5,
        "exact vs tanh GELU should differ slightly, got {d}"
    );
}

#[test]
fn unexpected_tensor_is_an_error() {
    let tmp = copy_fixture("gpt2_a");
    // gpt2_b has 3 layers: its `h.2` tensors are unknown to a 2-layer config.
    std::fs::copy(
        fixtures().join("gpt2_b/model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    edit_config(tmp.path(), |v| {
        v["vocab_size"] = 77.into();
        v["n_positions"] = 40.into();
        v["n_embd"] = 32.into();
        v["n_head"] = 2.into();
    });
    let e = load_err(tmp.path());
    assert!(
        e.to_string()
            .contains("unexpected tensor `transformer.h.2."),
        "{e}"
    );
}

/// Training path: on `Autodiff<NdArray>` gradients reach the LoRA factors (finite, non-zero)
/// and not the frozen base weights.
#[test]
fn backward_reaches_lora_factors_only() {
    type A = burn::backend::Autodiff<NdArray<f32>>;
    let dev = Default::default();
    let (mut model, _) = Gpt2::<A>::load(&fixtures().join("gpt2_a"), &dev).unwrap();
    <A as burn::tensor::backend::Backend>::seed(&dev, 7);
    let cfg = LoraLayerConfig {
        r: 2,
        init: lora_core::LoraInit::NoZero,
        ..Default::default()
    };
    model.visit_linears_mut(&mut |_, l| l.attach(&cfg, &dev).unwrap());
    let st = StFile::open(fixtures().join("gpt2_a/io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &dev);
    let grads = model.forward(ids).powf_scalar(2.0).mean().backward();
    model.visit_linears(&mut |name, l| {
        let lora = l.adapter().unwrap();
        for g in [lora.lora_a().grad(&grads), lora.lora_b().grad(&grads)] {
            let g: Vec<f32> = g.expect(name).into_data().into_vec().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()) && g.iter().any(|x| *x != 0.0),
                "{name}"
            );
        }
        assert!(
            l.base_weight().grad(&grads).is_none(),
            "{name}: base weight must be frozen"
        );
    });
    assert!(
        model.wte.val().grad(&grads).is_none(),
        "embedding must be frozen"
    );
}

/// Writes the merged `gpt2_a_lora` model to `$LORA_BURN_SAVE_DIR/gpt2_a_lora_merged` for a
/// manual check with transformers (`--ignored`).
#[test]
#[ignore]
fn save_hf_for_transformers_check() {
    let Some(out) = std::env::var_os("LORA_BURN_SAVE_DIR") else {
        return;
    };
    let (mut model, config) =
        Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    attach_peft(&mut model, &fixtures().join("gpt2_a_lora"));
    model
        .save_hf(&config, &PathBuf::from(out).join("gpt2_a_lora_merged"))
        .unwrap();
}
