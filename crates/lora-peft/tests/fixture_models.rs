//! PEFT-written adapters on the real GPT-2 / Llama models of `lora-models`: logits equal
//! PEFT's (`io.safetensors` `logits`, and `logits_merged` after merge_and_unload) within 1e-4.
mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{fixtures, max_abs_diff, read_st, to_vec, B};
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{apply_lora, load_adapter, merge_and_unload, save_adapter, LoraConfig};
use std::path::Path;

const TOL: f32 = 1e-4;

fn io(dir: &Path) -> (Tensor<B, 2, Int>, StFile) {
    let st = StFile::open(dir.join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st)
}

fn check<M: LanguageModel<B>>(mut model: M, fx: &str, merged: bool) {
    let device = Default::default();
    let dir = fixtures().join(fx);
    let (ids, st) = io(&dir);
    let (want, _) = st.f32("logits").unwrap();
    let base = to_vec(model.forward(ids.clone()));
    let config = load_adapter(&mut model, &dir, &device).unwrap();
    let got = to_vec(model.forward(ids.clone()));
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&base, &want);
    println!("{fx}: logits max |diff| vs PEFT = {d:e} (adapter moves them by {moved:e})");
    assert!(d < TOL, "{fx}: {d}");
    assert!(
        moved > 100.0 * TOL,
        "{fx}: the adapter should change the logits ({moved})"
    );

    // Saving it again gives PEFT's exact tensors.
    let out = tempfile::tempdir().unwrap();
    save_adapter(&model, &config, out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter_model.safetensors")),
        read_st(&dir.join("adapter_model.safetensors")),
        "{fx}"
    );

    if merged {
        let (want_m, _) = st.f32("logits_merged").unwrap();
        assert!(merge_and_unload(&mut model).unwrap() > 0);
        let got = to_vec(model.forward(ids));
        let d = max_abs_diff(&got, &want_m);
        println!("{fx}: merged logits max |diff| vs PEFT = {d:e}");
        assert!(d < TOL, "{fx} merged: {d}");
    }
}

#[test]
fn gpt2_a_lora_matches_peft() {
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    check(m, "gpt2_a_lora", true);
}

#[test]
fn gpt2_a_lora_rslora_regex_matches_peft() {
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    check(m, "gpt2_a_lora_rs", false);
}

#[test]
fn llama_a_lora_matches_peft() {
    let (m, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default()).unwrap();
    check(m, "llama_a_lora", true);
}

/// apply_lora on the real models targets what PEFT targeted (same keys and shapes on save).
#[test]
fn apply_on_real_models_targets_what_peft_targeted() {
    let device = Default::default();
    let (mut g, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &device).unwrap();
    let (mut l, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &device).unwrap();
    for (fx, names) in [
        ("gpt2_a_lora", {
            let c = LoraConfig::from_file(fixtures().join("gpt2_a_lora")).unwrap();
            apply_lora(&mut g, &c, &device).unwrap();
            let out = tempfile::tempdir().unwrap();
            save_adapter(&g, &c, out.path()).unwrap();
            read_st(&out.path().join("adapter_model.safetensors"))
        }),
        ("llama_a_lora", {
            let c = LoraConfig::from_file(fixtures().join("llama_a_lora")).unwrap();
            apply_lora(&mut l, &c, &device).unwrap();
            let out = tempfile::tempdir().unwrap();
            save_adapter(&l, &c, out.path()).unwrap();
            read_st(&out.path().join("adapter_model.safetensors"))
        }),
    ] {
        let ours: Vec<_> = names.into_iter().map(|(k, s, _)| (k, s)).collect();
        let peft: Vec<_> = read_st(&fixtures().join(fx).join("adapter_model.safetensors"))
            .into_iter()
            .map(|(k, s, _)| (k, s))
            .collect();
        assert_eq!(ours, peft, "{fx}");
    }
    // all-linear on Llama: the 14 block linears; a tied lm_head (if exposed) is skipped.
    let (mut l, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &device).unwrap();
    let c =
        LoraConfig::from_json_str(r#"{"target_modules": "all-linear"}"#, Path::new("-")).unwrap();
    let got = apply_lora(&mut l, &c, &device).unwrap();
    assert_eq!(got.len(), 14);
    assert!(got.iter().all(|n| n.starts_with("model.layers.")));
}
