//! DoRA (`use_dora = true`) against PEFT 0.21: the adapters `tests/fixtures/make_dora_fixtures.py`
//! wrote on the GPT-2 (Conv1D) and Llama (grouped-query attention) fixture models give PEFT's
//! logits and merged logits within 1e-4 and save back to PEFT's exact tensors; adapters made
//! here reload to the same logits (with `LORA_BURN_EXPORT_DIR=DIR` they are kept for
//! `tests/fixtures/check_ours_in_peft.sh DIR`, which loads them in PEFT); bad files are refused
//! with errors naming the file and key.
mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{fixtures, max_abs_diff, read_st, to_vec, B};
use lora_core::{DoraAdapter, NamedLinears};
use lora_io::StTensor;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{
    apply_lora, load_adapter, merge_and_unload, quantize_model, save_adapter, InitLoraWeights,
    LoraConfig, PeftError,
};
use safetensors::Dtype;
use std::path::{Path, PathBuf};

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

/// PEFT's adapter `fx` on `model`: logits, a save identical to PEFT's file, merged logits.
fn check_fixture<M: LanguageModel<B>>(mut model: M, fx: &str) {
    let device = Default::default();
    let dir = fixtures().join(fx);
    let (ids, st) = io(&dir);
    let (want, _) = st.f32("logits").unwrap();
    let base = to_vec(model.forward(ids.clone()));
    let config = load_adapter(&mut model, &dir, &device).unwrap();
    assert!(config.use_dora);
    let mut n = 0;
    model.visit_linears(&mut |_, l| {
        n += usize::from(l.attached_adapter().and_then(|a| a.as_dora()).is_some())
    });
    assert!(n > 0, "{fx}: no DoRA layer loaded");
    let got = to_vec(model.forward(ids.clone()));
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&base, &want);
    println!("{fx}: {n} DoRA layers; logits max |diff| vs PEFT = {d:e} (adapter moves them by {moved:e})");
    assert!(d < TOL, "{fx}: {d}");
    assert!(moved > 100.0 * TOL, "{fx}: adapter should move the logits");

    let out = tempfile::tempdir().unwrap();
    save_adapter(&model, &config, out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter_model.safetensors")),
        read_st(&dir.join("adapter_model.safetensors")),
        "{fx}: saved tensors differ from PEFT's"
    );

    let (want_m, _) = st.f32("logits_merged").unwrap();
    assert_eq!(merge_and_unload(&mut model).unwrap(), n);
    let got = to_vec(model.forward(ids));
    let d = max_abs_diff(&got, &want_m);
    println!("{fx}: merged logits max |diff| vs PEFT = {d:e}");
    assert!(d < TOL, "{fx} merged: {d}");
}

#[test]
fn gpt2_a_dora_matches_peft() {
    check_fixture(gpt2(), "gpt2_a_dora");
}

#[test]
fn llama_a_dora_matches_peft() {
    check_fixture(llama(), "llama_a_dora");
}

fn dora_config(targets: &[&str]) -> LoraConfig {
    let mut c = LoraConfig::new(4, 8.0, targets);
    c.init_lora_weights = InitLoraWeights::Bool(false);
    c.use_dora = true;
    c
}

fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("LORA_BURN_EXPORT_DIR") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            std::fs::create_dir_all(&p).unwrap();
            (p, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// `input_ids` and our `logits`, for check_peft_load.py.
fn write_io(dir: &Path, ids: &Tensor<B, 2, Int>, logits: &[f32], shape: Vec<usize>) {
    let id_vals: Vec<i64> = ids.to_data().convert::<i64>().to_vec().unwrap();
    let tensors = vec![
        (
            "input_ids".to_string(),
            StTensor {
                dtype: Dtype::I64,
                shape: ids.dims().to_vec(),
                bytes: id_vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ),
        ("logits".to_string(), StTensor::f32(shape, logits)),
    ];
    lora_io::write_safetensors(dir.join("io.safetensors"), &tensors, None).unwrap();
}

/// Our DoRA on `make()`'s model: the magnitudes are scaled by `1 + 0.3·sin(k)` (PEFT starts
/// them at the norm, where DoRA equals LoRA); saved with our logits, reloaded into a fresh model
/// to the same logits. Returns the saved keys and shapes.
fn round_trip<M: LanguageModel<B>>(
    make: impl Fn() -> M,
    fx: &str,
    targets: &[&str],
) -> Vec<(String, Vec<usize>)> {
    let device = Default::default();
    let (ids, _) = io(&fixtures().join(fx));
    let mut model = make();
    let config = dora_config(targets);
    B::seed(&device, 5);
    let names = apply_lora(&mut model, &config, &device).unwrap();
    let fresh = to_vec(model.forward(ids.clone()));
    let mut k = 0usize;
    model.visit_linears_mut(&mut |_, l| {
        let seed = k;
        let perturbed = l.attached_adapter().and_then(|a| a.as_dora()).map(|d| {
            let m = d.magnitude();
            let [n] = m.dims();
            let f: Vec<f32> = (0..n)
                .map(|j| 1.0 + 0.3 * ((seed * 31 + j) as f32).sin())
                .collect();
            let m = m * Tensor::<B, 1>::from_data(TensorData::new(f, [n]), &device);
            DoraAdapter::from_parts(d.lora().clone(), m).unwrap()
        });
        if let Some(d) = perturbed {
            l.attach_adapter(d).unwrap();
            k += 1;
        }
    });
    assert_eq!(k, names.len());
    let logits = model.forward(ids.clone());
    let shape = logits.dims().to_vec();
    let ours = to_vec(logits);
    assert!(
        max_abs_diff(&ours, &fresh) > 100.0 * TOL,
        "{fx}: magnitude has no effect"
    );

    let (dir, _keep) = out_dir(fx);
    save_adapter(&model, &config, &dir).unwrap();
    write_io(&dir, &ids, &ours, shape);
    let mut back = make();
    let c = load_adapter(&mut back, &dir, &device).unwrap();
    assert!(c.use_dora);
    let d = max_abs_diff(&to_vec(back.forward(ids)), &ours);
    println!("{fx}: our DoRA saved and reloaded: logits max |diff| {d:e}");
    assert!(d < 1e-6, "{fx}: {d}");
    read_st(&dir.join("adapter_model.safetensors"))
        .into_iter()
        .map(|(k, s, _)| (k, s))
        .collect()
}

fn keys_of(fx: &str) -> Vec<(String, Vec<usize>)> {
    read_st(&fixtures().join(fx).join("adapter_model.safetensors"))
        .into_iter()
        .map(|(k, s, _)| (k, s))
        .collect()
}

#[test]
fn our_dora_round_trips_with_peft_keys() {
    let g = round_trip(gpt2, "gpt2_a_dora", &["c_attn", "c_proj", "c_fc"]);
    assert_eq!(g, keys_of("gpt2_a_dora"));
    // Conv1D: the magnitude runs over the output (c_attn: 3·n_embd).
    assert!(g.contains(&(
        "base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector".into(),
        vec![144]
    )));
    let all = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    let l = round_trip(llama, "llama_a_dora", &all);
    assert_eq!(l, keys_of("llama_a_dora"));
    // Grouped-query attention: k_proj/v_proj give 2 KV heads · 16 = 32 outputs.
    assert!(l.contains(&(
        "base_model.model.model.layers.1.self_attn.k_proj.lora_magnitude_vector".into(),
        vec![32]
    )));
}

/// A copy of fixture `fx` with its tensors passed through `edit`.
fn edited(fx: &str, edit: impl FnOnce(&mut Vec<(String, StTensor)>)) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = fixtures().join(fx);
    std::fs::copy(
        src.join("adapter_config.json"),
        d.path().join("adapter_config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<(String, StTensor)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let t = StTensor {
                dtype: v.dtype(),
                shape: v.shape().to_vec(),
                bytes: v.data().to_vec(),
            };
            (k, t)
        })
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut t);
    lora_io::write_safetensors(d.path().join("adapter_model.safetensors"), &t, None).unwrap();
    d
}

const C_ATTN_M: &str = "base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector";

#[test]
fn bad_magnitude_vectors_are_refused() {
    let device = Default::default();
    // One value short: a Shape error naming the file and the key.
    let d = edited("gpt2_a_dora", |t| {
        let (_, m) = t.iter_mut().find(|(k, _)| k == C_ATTN_M).unwrap();
        m.shape = vec![143];
        m.bytes.truncate(143 * 4);
    });
    let mut model = gpt2();
    let e = load_adapter(&mut model, d.path(), &device).unwrap_err();
    match &e {
        PeftError::Shape {
            path,
            key,
            expected,
            got,
        } => {
            assert_eq!(key, C_ATTN_M);
            assert!(path.ends_with("adapter_model.safetensors"));
            assert_eq!((expected.clone(), got.clone()), (vec![144], vec![143]));
        }
        other => panic!("expected a Shape error, got {other}"),
    }
    assert!(e.to_string().contains(C_ATTN_M), "{e}");
    // Nothing was attached.
    let mut any = false;
    model.visit_linears(&mut |_, l| any |= l.has_adapter());
    assert!(!any);

    // Missing.
    let d = edited("gpt2_a_dora", |t| t.retain(|(k, _)| k != C_ATTN_M));
    let e = load_adapter(&mut gpt2(), d.path(), &device).unwrap_err();
    assert!(
        matches!(e, PeftError::MissingKey { ref key, .. } if key == C_ATTN_M),
        "{e}"
    );

    // A DoRA file read with use_dora = false: the magnitudes are unexpected.
    let d = edited("gpt2_a_dora", |_| {});
    let mut c = LoraConfig::from_file(d.path()).unwrap();
    c.use_dora = false;
    c.save(d.path()).unwrap();
    let e = load_adapter(&mut gpt2(), d.path(), &device).unwrap_err();
    assert!(
        matches!(e, PeftError::UnexpectedKey { ref key, total: 8, .. } if key.ends_with("lora_magnitude_vector")),
        "{e}"
    );
}

#[test]
fn keys_with_the_adapter_name_load() {
    // PEFT's in-memory name of the magnitude is `lora_magnitude_vector.default` (after dropping
    // `.weight`); such a file reads as the canonical one.
    let device = Default::default();
    let d = edited("gpt2_a_dora", |t| {
        for (k, _) in t.iter_mut() {
            if let Some(stem) = k.strip_suffix(".lora_magnitude_vector") {
                *k = format!("{stem}.lora_magnitude_vector.default");
            }
        }
    });
    let dir = fixtures().join("gpt2_a_dora");
    let (ids, st) = io(&dir);
    let mut model = gpt2();
    load_adapter(&mut model, d.path(), &device).unwrap();
    let (want, _) = st.f32("logits").unwrap();
    assert!(max_abs_diff(&to_vec(model.forward(ids)), &want) < TOL);
}

#[test]
fn save_refuses_a_method_other_than_the_configs() {
    let device = Default::default();
    let mut model = gpt2();
    let config = load_adapter(&mut model, &fixtures().join("gpt2_a_dora"), &device).unwrap();
    let mut plain = config.clone();
    plain.use_dora = false;
    let out = tempfile::tempdir().unwrap();
    let e = save_adapter(&model, &plain, out.path()).unwrap_err();
    assert!(
        matches!(e, PeftError::State(ref s) if s.contains("DoRA") && s.contains("use_dora = false")),
        "{e}"
    );
    // And a plain LoRA model saved with use_dora = true.
    let mut model = gpt2();
    let lora = load_adapter(&mut model, &fixtures().join("gpt2_a_lora"), &device).unwrap();
    let mut dora = lora.clone();
    dora.use_dora = true;
    let e = save_adapter(&model, &dora, out.path()).unwrap_err();
    assert!(
        matches!(e, PeftError::State(ref s) if s.contains("plain LoRA")),
        "{e}"
    );
}

#[test]
fn qlora_dora_starts_as_the_quantized_base() {
    // PEFT's order for QLoRA + DoRA: quantize, then get_peft_model. With the default init
    // (B = 0) m is the norm of the dequantized weight, so m/n = 1 and the adapted model gives
    // the quantized base's logits; perturbing m then moves them.
    let device = Default::default();
    let (ids, _) = io(&fixtures().join("gpt2_a"));
    let mut model = gpt2();
    let dense = to_vec(model.forward(ids.clone()));
    quantize_model(&mut model, &lora_core::QuantKind::NF4, &[]).unwrap();
    let base = to_vec(model.forward(ids.clone()));
    assert!(
        max_abs_diff(&base, &dense) > 1e-3,
        "NF4 should move the logits"
    );
    let mut c = dora_config(&["c_attn", "c_proj", "c_fc"]);
    c.init_lora_weights = InitLoraWeights::Bool(true);
    apply_lora(&mut model, &c, &device).unwrap();
    let mut checked = 0;
    model.visit_linears(&mut |_, l| {
        if let Some(d) = l.attached_adapter().and_then(|a| a.as_dora()) {
            assert!(l.is_quantized());
            // ‖W_deq‖ per output unit, from the layer's dequantized weight.
            let w = l.base_weight();
            let norm = w.powi_scalar(2).sum_dim(0).sqrt().reshape([l.dims().1]);
            assert!(max_abs_diff(&to_vec(d.magnitude()), &to_vec(norm)) < 1e-5);
            checked += 1;
        }
    });
    assert_eq!(checked, 8);
    let d = max_abs_diff(&to_vec(model.forward(ids)), &base);
    println!("QLoRA + DoRA at init vs the NF4 base: logits max |diff| {d:e}");
    assert!(d < TOL, "{d}");
}
