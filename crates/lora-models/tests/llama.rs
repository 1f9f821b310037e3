//! Llama against transformers' `LlamaForCausalLM` (fixtures written by
//! `tests/fixtures/make_fixtures.py`), the real SmolLM2 GGUF against transformers' GGUF loader,
//! save/load round trips and loader errors.

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use lora_core::{LoraLayerConfig, LoraLinear, NamedLinears};
use lora_models::gguf::GgufFile;
use lora_models::llama::{unpermute_rope_rows, Llama};
use lora_models::st::StFile;
use lora_models::{LanguageModel, ModelError};
use std::path::{Path, PathBuf};

mod common;
use common::{copy_fixture, edit_config, fixtures, ids_tensor, io, max_diff, values, B};

fn load(dir: &Path) -> (Llama<B>, lora_models::llama::LlamaConfig) {
    Llama::<B>::load_hf(dir, &Default::default()).unwrap()
}

#[test]
fn llama_a_logits_match_transformers() {
    let dir = fixtures().join("llama_a");
    let (model, c) = load(&dir);
    assert_eq!(
        (
            c.vocab_size,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim
        ),
        (97, 64, 4, 2, 16)
    );
    assert!(c.tie_word_embeddings && model.lm_head.is_none());
    let (ids, want, want_shape) = io(&dir, "logits");
    let (got, shape) = values(model.forward(ids));
    assert_eq!(shape, want_shape);
    let d = max_diff(&got, &want);
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    println!("llama_a: max |logits − transformers| = {d:.3e} (max |logit| {scale:.3})");
    assert!(scale > 0.1);
    assert!(d <= 1e-4, "max abs diff {d}");
}

/// An untied head that differs from the embedding: the logits come from `lm_head.weight`
/// (a loader that fell back to the tied embedding would miss by ~1).
#[test]
fn llama_untied_head_logits_match_transformers() {
    let dir = fixtures().join("llama_untied");
    let (model, c) = load(&dir);
    assert!(!c.tie_word_embeddings && model.lm_head.is_some());
    assert_eq!(model.linear_names().last().unwrap(), "lm_head");
    let (ids, want, want_shape) = io(&dir, "logits");
    let (got, shape) = values(model.forward(ids.clone()));
    assert_eq!(shape, want_shape);
    let d = max_diff(&got, &want);
    println!("llama_untied: max |logits − transformers| = {d:.3e}");
    assert!(d <= 1e-4, "max abs diff {d}");

    // The same weights with the head tied to the embedding give other logits.
    let mut tied = model;
    tied.lm_head = None;
    let (tied_logits, _) = values(tied.forward(ids));
    assert!(max_diff(&tied_logits, &want) > 0.1);
}

#[test]
fn names_and_frozen_base() {
    let (model, _) = load(&fixtures().join("llama_a"));
    let names = model.linear_names();
    assert_eq!(names.len(), 14);
    assert_eq!(
        &names[..7],
        [
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj",
            "model.layers.0.self_attn.o_proj",
            "model.layers.0.mlp.gate_proj",
            "model.layers.0.mlp.up_proj",
            "model.layers.0.mlp.down_proj",
        ]
    );
    model.visit_linears(&mut |n, l| {
        assert!(!l.fan_in_fan_out() && l.bias().is_none(), "{n}");
        assert!(!l.is_base_trainable(), "{n} must be frozen");
    });
    let (_, c) = load(&fixtures().join("llama_cls"));
    assert_eq!(c.pad_token_id, Some(0));
}

#[test]
fn peft_adapter_and_save_hf_merge_match_peft() {
    let dir = fixtures().join("llama_a_lora");
    let (mut model, config) = load(&fixtures().join("llama_a"));
    let st = StFile::open(dir.join("adapter_model.safetensors")).unwrap();
    let cfg = LoraLayerConfig {
        r: 4,
        lora_alpha: 8.0,
        ..Default::default()
    };
    let mut n = 0;
    model.visit_linears_mut(&mut |name, l| {
        let dev = Default::default();
        let (a, sa) = st
            .f32(&format!("base_model.model.{name}.lora_A.weight"))
            .unwrap();
        let (b, sb) = st
            .f32(&format!("base_model.model.{name}.lora_B.weight"))
            .unwrap();
        let a = Tensor::<B, 2>::from_data(TensorData::new(a, [sa[0], sa[1]]), &dev).transpose();
        let b = Tensor::<B, 2>::from_data(TensorData::new(b, [sb[0], sb[1]]), &dev).transpose();
        l.attach_tensors(a, b, &cfg).unwrap();
        n += 1;
    });
    assert_eq!(n, 14);
    let (ids, want, _) = io(&dir, "logits");
    let (got, _) = values(model.forward(ids.clone()));
    let d = max_diff(&got, &want);
    println!("llama_a_lora: adapter logits vs PEFT max diff {d:.3e}");
    assert!(d <= 1e-4);
    let tmp = tempfile::tempdir().unwrap();
    model.save_hf(&config, tmp.path()).unwrap();
    let (merged, _) = load(tmp.path());
    let (_, want_m, _) = io(&dir, "logits_merged");
    let (got_m, _) = values(merged.forward(ids));
    let d = max_diff(&got_m, &want_m);
    println!("llama_a_lora: save_hf(merged) reload vs PEFT merge_and_unload max diff {d:.3e}");
    assert!(d <= 1e-4);
}

#[test]
fn save_hf_round_trip_tied_and_untied() {
    let dir = fixtures().join("llama_a");
    let (mut model, mut config) = load(&dir);
    let (ids, _, _) = io(&dir, "logits");
    let (tied_logits, _) = values(model.forward(ids.clone()));

    let tmp = tempfile::tempdir().unwrap();
    model.save_hf(&config, tmp.path()).unwrap();
    let st = StFile::open(tmp.path().join("model.safetensors")).unwrap();
    assert!(!st.contains("lm_head.weight"), "tied head is not stored");
    assert_eq!(
        st.f32("model.layers.0.self_attn.k_proj.weight").unwrap().1,
        vec![32, 64],
        "HF [out, in]"
    );
    let (model2, config2) = load(tmp.path());
    assert_eq!(config2.rope_theta, config.rope_theta);
    let reloaded = values(model2.forward(ids.clone())).0;
    let d = reloaded
        .iter()
        .zip(&tied_logits)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        reloaded.len() == tied_logits.len() && d <= 1e-6,
        "same logits after reload (up to summation order): max diff {d}"
    );

    // An untied head equal to the embedding gives the same logits, is named `lm_head`, and is
    // written as `lm_head.weight` [vocab, hidden].
    let emb = model.embed_tokens.val().transpose();
    model.lm_head = Some(LoraLinear::new(emb, None, false).unwrap());
    config.tie_word_embeddings = false;
    assert_eq!(model.linear_names().last().unwrap(), "lm_head");
    let (untied_logits, _) = values(model.forward(ids.clone()));
    assert!(max_diff(&untied_logits, &tied_logits) <= 1e-6);
    let tmp = tempfile::tempdir().unwrap();
    model.save_hf(&config, tmp.path()).unwrap();
    let st = StFile::open(tmp.path().join("model.safetensors")).unwrap();
    assert_eq!(st.f32("lm_head.weight").unwrap().1, vec![97, 64]);
    let (model3, config3) = load(tmp.path());
    assert!(!config3.tie_word_embeddings && model3.lm_head.is_some());
    assert_eq!(values(model3.forward(ids)).0, untied_logits);
}

#[test]
fn rope_theta_is_read_in_both_config_styles() {
    let dir = fixtures().join("llama_a");
    let (ids, want, _) = io(&dir, "logits");
    let run = |edit: &dyn Fn(&mut serde_json::Value)| {
        let tmp = copy_fixture("llama_a");
        edit_config(tmp.path(), edit);
        let (m, c) = load(tmp.path());
        assert_eq!(c.rope_theta, 500.0);
        values(m.forward(ids.clone())).0
    };
    let new_style = run(&|v| v["rope_parameters"]["rope_theta"] = 500.0.into());
    let old_style = run(&|v| {
        v.as_object_mut().unwrap().remove("rope_parameters");
        v["rope_theta"] = 500.0.into();
    });
    assert_eq!(new_style, old_style);
    assert!(
        max_diff(&new_style, &want) > 1e-3,
        "θ must change the output"
    );
}

/// llama.cpp's converter permutes rows as `w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)`; for
/// 2 heads of size 4 HF rows [0..8) land in GGUF order [0, 2, 1, 3, 4, 6, 5, 7].
#[test]
fn gguf_rope_rows_are_unpermuted() {
    let cols = 3;
    let gguf_rows = [0usize, 2, 1, 3, 4, 6, 5, 7];
    let w: Vec<f32> = gguf_rows
        .iter()
        .flat_map(|&r| (0..cols).map(move |c| (r * 10 + c) as f32))
        .collect();
    let hf = unpermute_rope_rows(&w, 2, 8, cols);
    let want: Vec<f32> = (0..8)
        .flat_map(|r| (0..cols).map(move |c| (r * 10 + c) as f32))
        .collect();
    assert_eq!(hf, want);
    // head size 6: GGUF order within a head is [0, 3, 1, 4, 2, 5].
    let w: Vec<f32> = [0.0, 3.0, 1.0, 4.0, 2.0, 5.0].to_vec();
    assert_eq!(
        unpermute_rope_rows(&w, 1, 6, 1),
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
}

fn load_err(dir: &Path) -> ModelError {
    match Llama::<B>::load_hf(dir, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn loader_errors_name_file_and_key() {
    let tmp = copy_fixture("llama_a");
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    let e = load_err(tmp.path());
    assert!(
        matches!(e, ModelError::Io { .. }) && e.to_string().contains("model.safetensors"),
        "{e}"
    );

    let tmp = copy_fixture("llama_a");
    let p = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(tmp.path());
    assert!(
        matches!(e, ModelError::Format { .. }) && e.to_string().contains("model.safetensors"),
        "{e}"
    );

    let tmp = copy_fixture("llama_a");
    edit_config(tmp.path(), |v| v["intermediate_size"] = 95.into());
    let e = load_err(tmp.path());
    match &e {
        ModelError::Shape {
            key, expected, got, ..
        } => {
            assert_eq!(key, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!(
                (expected.as_slice(), got.as_slice()),
                (&[95, 64][..], &[96, 64][..])
            );
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    let tmp = copy_fixture("llama_a");
    edit_config(tmp.path(), |v| v["num_key_value_heads"] = 3.into());
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, ModelError::Config { key, .. } if key == "num_key_value_heads"),
        "{e:?}"
    );
    assert!(e.to_string().contains("config.json"), "{e}");

    let tmp = copy_fixture("llama_a");
    edit_config(tmp.path(), |v| {
        v["rope_parameters"]["rope_type"] = "yarn".into()
    });
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, ModelError::Config { key, .. } if key == "rope_parameters"),
        "{e:?}"
    );

    let tmp = copy_fixture("llama_a");
    edit_config(tmp.path(), |v| v["num_hidden_layers"] = 1.into());
    let e = load_err(tmp.path());
    assert!(
        e.to_string().contains("unexpected tensor `model.layers.1."),
        "{e}"
    );
}

use common::real_gguf as smollm2_path;

#[test]
fn smollm2_gguf_matches_transformers_gguf_loader() {
    let Some(path) = smollm2_path() else { return };
    let t0 = std::time::Instant::now();
    let g = GgufFile::open(&path).unwrap();
    let (model, c) = Llama::<B>::from_gguf(&g, &Default::default()).unwrap();
    println!("SmolLM2 loaded in {:.2?}", t0.elapsed());
    assert_eq!(
        (
            c.num_hidden_layers,
            c.hidden_size,
            c.intermediate_size,
            c.num_attention_heads,
            c.num_key_value_heads
        ),
        (30, 576, 1536, 9, 3)
    );
    assert_eq!(
        (c.vocab_size, c.head_dim, c.tie_word_embeddings),
        (49152, 64, true)
    );
    assert_eq!(c.rope_theta, 100000.0);

    let st = StFile::open(fixtures().join("smollm2_ref.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let (want, _) = st.f32("logits").unwrap();
    let (top5, _) = st.i64("top5").unwrap();
    let n = shape[1];
    let logits = model.forward(ids_tensor(ids, &shape));
    let last: Vec<f32> = logits
        .narrow(1, n - 1, 1)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let d = max_diff(&last, &want);
    let argmax = last
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |m, (i, &x)| if x > m.1 { (i, x) } else { m })
        .0;
    println!("SmolLM2 \"The capital of France is\": last-position max |diff| = {d:.3e}, top-1 {argmax} (ref {})", top5[0]);
    assert_eq!(argmax as i64, top5[0]);
    assert!(d < 1e-2, "max abs diff {d}");
}

/// Forward time of a batch of 8 × 128 tokens of SmolLM2 (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn smollm2_forward_timing() {
    let Some(path) = smollm2_path() else { return };
    let g = GgufFile::open(&path).unwrap();
    let (model, _) = Llama::<B>::from_gguf(&g, &Default::default()).unwrap();
    let ids: Vec<i64> = (0..8 * 128).map(|i| (i * 7919 % 49152) as i64).collect();
    for run in 0..2 {
        let t0 = std::time::Instant::now();
        let h = model.hidden_states(ids_tensor(ids.clone(), &[8, 128]));
        let h_vals = h.clone().into_data();
        let t1 = t0.elapsed();
        let l = model.lm_logits(h).into_data();
        println!(
            "run {run}: hidden_states {t1:.2?}, + lm_logits {:.2?} ({} + {} values)",
            t0.elapsed(),
            h_vals.num_elements(),
            l.num_elements()
        );
    }
}

/// Training path: on `Autodiff<NdArray>` gradients reach the LoRA factors (finite, non-zero,
/// through the −∞ causal mask and RoPE) and not the frozen base weights.
#[test]
fn backward_reaches_lora_factors_only() {
    type A = burn::backend::Autodiff<NdArray<f32>>;
    let dev = Default::default();
    let (mut model, _) = Llama::<A>::load_hf(&fixtures().join("llama_a"), &dev).unwrap();
    <A as burn::tensor::backend::Backend>::seed(&dev, 7);
    let cfg = LoraLayerConfig {
        r: 2,
        init: lora_core::LoraInit::NoZero,
        ..Default::default()
    };
    model.visit_linears_mut(&mut |_, l| l.attach(&cfg, &dev).unwrap());
    let st = StFile::open(fixtures().join("llama_a/io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &dev);
    let loss = model.forward(ids).powf_scalar(2.0).mean();
    let grads = loss.backward();
    let mut n = 0;
    model.visit_linears(&mut |name, l| {
        let lora = l.adapter().unwrap();
        for g in [lora.lora_a().grad(&grads), lora.lora_b().grad(&grads)] {
            let g: Vec<f32> = g.expect(name).into_data().into_vec().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
            assert!(g.iter().any(|x| *x != 0.0), "{name}: zero gradient");
        }
        assert!(
            l.base_weight().grad(&grads).is_none(),
            "{name}: base weight must be frozen"
        );
        n += 1;
    });
    assert_eq!(n, 14);
}

/// Writes `llama_a` with an untied copy of the head to `$LORA_BURN_SAVE_DIR/llama_a_untied`
/// for a manual check with transformers (`--ignored`).
#[test]
#[ignore]
fn save_hf_for_transformers_check() {
    let Some(out) = std::env::var_os("LORA_BURN_SAVE_DIR").map(PathBuf::from) else {
        return;
    };
    let (mut model, mut config) = load(&fixtures().join("llama_a"));
    let emb = model.embed_tokens.val().transpose();
    model.lm_head = Some(LoraLinear::new(emb, None, false).unwrap());
    config.tie_word_embeddings = false;
    model.save_hf(&config, &out.join("llama_a_untied")).unwrap();
    let (model, config) = load(&fixtures().join("llama_a"));
    model.save_hf(&config, &out.join("llama_a_tied")).unwrap();
}
