//! AdapterHub (`adapters` 1.3) bottleneck adapters on the GPT-2 / Llama models of
//! `lora-models`: the fixtures of `tests/fixtures/make_bottleneck_fixtures.py` load to
//! AdapterHub's logits within 1e-4, save back to AdapterHub's exact files, and bad inputs are
//! refused with errors naming the field, file or key.
mod common;

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use common::{fixtures, max_abs_diff, read_st, to_vec, AB, B};
use lora_core::{BottleneckAdapter, BottleneckLayers, BottleneckLocation, LoraError};
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::tuners::bottleneck::{bottleneck_slots, ReductionFactor};
use lora_peft::{
    add_bottleneck, load_bottleneck, remove_bottleneck, save_bottleneck, AdapterConfig,
    BnAdapterConfig, BnConfig, PeftError,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOL: f32 = 1e-4;

fn io(dir: &Path) -> (Tensor<B, 2, Int>, Vec<f32>) {
    let st = StFile::open(dir.join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st.f32("logits").unwrap().0)
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

/// Loads fixture `fx`, compares logits with AdapterHub's, saves it again and compares the
/// files byte for byte (config) and value for value (tensors).
fn check<M: LanguageModel<B> + BottleneckLayers<B>>(mut model: M, fx: &str, slots: usize) {
    let device = Default::default();
    let dir = fixtures().join(fx);
    let (ids, want) = io(&dir);
    let base = to_vec(model.forward(ids.clone()));
    let config = load_bottleneck(&mut model, &dir, &device).unwrap();
    assert_eq!(
        bottleneck_slots(&model, &config.config).len(),
        slots,
        "{fx}"
    );
    let got = to_vec(model.forward(ids.clone()));
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&base, &want);
    println!("{fx}: logits max |diff| vs AdapterHub = {d:e} (the adapter moves them by {moved:e})");
    assert!(d < TOL, "{fx}: {d}");
    assert!(
        moved > 100.0 * TOL,
        "{fx}: the adapter should change the logits ({moved})"
    );

    let out = tempfile::tempdir().unwrap();
    save_bottleneck(&model, &config, out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter.safetensors")),
        read_st(&dir.join("adapter.safetensors")),
        "{fx}"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("adapter_config.json")).unwrap(),
        std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        "{fx}: adapter_config.json differs from AdapterHub's"
    );

    assert_eq!(remove_bottleneck(&mut model), slots);
    let plain = to_vec(model.forward(ids));
    assert!(
        max_abs_diff(&plain, &base) == 0.0,
        "{fx}: removing adapters restores the base"
    );
}

#[test]
fn gpt2_seq_bn_matches_adapterhub() {
    check(gpt2(), "gpt2_a_seq_bn", 2);
}

#[test]
fn gpt2_double_seq_bn_matches_adapterhub() {
    check(gpt2(), "gpt2_a_double_seq_bn", 4);
}

/// `original_ln_after = false`, `residual_before_ln = false`, tanh, scaling 2.
#[test]
fn gpt2_custom_residual_switches_match_adapterhub() {
    check(gpt2(), "gpt2_a_bn_custom", 4);
}

#[test]
fn llama_seq_bn_matches_adapterhub() {
    check(llama(), "llama_a_seq_bn", 2);
}

#[test]
fn llama_double_seq_bn_leave_out_matches_adapterhub() {
    check(llama(), "llama_a_double_seq_bn", 2);
}

/// The presets equal the `config` objects AdapterHub wrote for `DoubleSeqBnConfig()` and
/// `SeqBnConfig(reduction_factor=12)`.
#[test]
fn presets_equal_adapterhub_configs() {
    let f = BnAdapterConfig::from_file(fixtures().join("gpt2_a_double_seq_bn")).unwrap();
    assert_eq!(f.config, BnConfig::double_seq_bn());
    let f = BnAdapterConfig::from_file(fixtures().join("gpt2_a_seq_bn")).unwrap();
    let mut seq = BnConfig::seq_bn();
    seq.reduction_factor = ReductionFactor::Scalar(12.into());
    assert_eq!(f.config, seq);
    assert_eq!(f.version, "adapters.1.3.0");
    assert_eq!((f.hidden_size, f.model_type.as_str()), (48, "gpt2"));
}

/// A fresh adapter (re-randomised so that it matters) survives save and load exactly. With
/// `LORA_BURN_BOTTLENECK_OUT=DIR` the adapter and `io.safetensors` (input ids, our logits) are
/// also written to `DIR/<model>` for `tests/fixtures/check_bottleneck_load.py`.
#[test]
fn fresh_adapters_round_trip() {
    let device = Default::default();
    for (fx, name, preset) in [
        ("gpt2_a", "ours", BnConfig::double_seq_bn()),
        ("llama_a", "ours", BnConfig::seq_bn()),
    ] {
        let (ids, _) = io(&fixtures().join(fx));
        let out = tempfile::tempdir().unwrap();
        let logits = if fx == "gpt2_a" {
            round_trip(
                gpt2(),
                gpt2(),
                &preset,
                name,
                fx,
                ids.clone(),
                out.path(),
                &device,
            )
        } else {
            round_trip(
                llama(),
                llama(),
                &preset,
                name,
                fx,
                ids.clone(),
                out.path(),
                &device,
            )
        };
        if let Ok(dst) = std::env::var("LORA_BURN_BOTTLENECK_OUT") {
            let dst = PathBuf::from(dst).join(fx);
            std::fs::create_dir_all(&dst).unwrap();
            for f in ["adapter_config.json", "adapter.safetensors"] {
                std::fs::copy(out.path().join(f), dst.join(f)).unwrap();
            }
            write_io(&dst.join("io.safetensors"), ids, &logits);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn round_trip<M: LanguageModel<B> + BottleneckLayers<B>>(
    mut model: M,
    mut fresh: M,
    preset: &BnConfig,
    name: &str,
    fx: &str,
    ids: Tensor<B, 2, Int>,
    dir: &Path,
    device: &burn::tensor::Device<B>,
) -> Vec<f32> {
    let base = to_vec(model.forward(ids.clone()));
    let slots = add_bottleneck(&mut model, preset, device).unwrap();
    assert_eq!(slots, bottleneck_slots(&model, preset));
    // Bigger weights than the "bert" init's N(0, 0.02), so the logits move visibly.
    for &(l, loc) in &slots {
        let c = model.bottleneck(l, loc).unwrap().config().clone();
        let n = Distribution::Normal(0.0, 0.3);
        let (d, db) = (c.hidden_size, c.bottleneck_size);
        let a = BottleneckAdapter::from_tensors(
            Tensor::random([d, db], n, device),
            Tensor::random([db], n, device),
            Tensor::random([db, d], n, device),
            Tensor::random([d], n, device),
            &c,
        )
        .unwrap();
        model.set_bottleneck(l, loc, Some(a)).unwrap();
    }
    let logits = to_vec(model.forward(ids.clone()));
    assert!(max_abs_diff(&logits, &base) > 0.1, "{fx}");
    let config = BnAdapterConfig::new(&model, preset.clone(), name, Some(fx));
    save_bottleneck(&model, &config, dir).unwrap();
    let back = load_bottleneck(&mut fresh, dir, device).unwrap();
    assert_eq!(back, config);
    assert_eq!(
        max_abs_diff(&to_vec(fresh.forward(ids)), &logits),
        0.0,
        "{fx}"
    );
    logits
}

fn write_io(path: &Path, ids: Tensor<B, 2, Int>, logits: &[f32]) {
    let shape = ids.dims().to_vec();
    let idv: Vec<i64> = ids.into_data().convert::<i64>().to_vec().unwrap();
    let vocab = logits.len() / (shape[0] * shape[1]);
    let tensors = vec![
        (
            "input_ids".to_string(),
            lora_io::StTensor {
                dtype: safetensors::Dtype::I64,
                shape: shape.clone(),
                bytes: idv.iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ),
        (
            "logits".to_string(),
            lora_io::StTensor::f32(vec![shape[0], shape[1], vocab], logits),
        ),
    ];
    lora_io::write_safetensors(path, &tensors, None).unwrap();
}

/// Gradients of a language-model loss reach every adapter's `adapter_down` and `adapter_up`.
#[test]
fn gradients_reach_adapters_in_the_model() {
    let device = Default::default();
    let (mut model, _) = Gpt2::<AB>::load(&fixtures().join("gpt2_a"), &device).unwrap();
    let slots = add_bottleneck(&mut model, &BnConfig::double_seq_bn(), &device).unwrap();
    let ids =
        Tensor::<AB, 2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 2], [1, 4]), &device);
    let grads = model.forward(ids).powi_scalar(2).mean().backward();
    for (l, loc) in slots {
        let a = model.bottleneck(l, loc).unwrap();
        for (what, g) in [
            ("adapter_down", a.down_weight().grad(&grads)),
            ("adapter_up", a.up_weight().grad(&grads)),
        ] {
            let g = to_vec(g.unwrap_or_else(|| panic!("layer {l} {loc:?} {what}: no gradient")));
            assert!(
                g.iter().any(|&v| v != 0.0),
                "layer {l} {loc:?} {what}: zero gradient"
            );
        }
    }
}

/// Copies fixture `fx` to a temp dir with `edit` applied to its parsed `adapter_config.json`.
fn edited(fx: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let src = fixtures().join(fx);
    let dst = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("adapter.safetensors"),
        dst.path().join("adapter.safetensors"),
    )
    .unwrap();
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    edit(&mut v);
    std::fs::write(dst.path().join("adapter_config.json"), v.to_string()).unwrap();
    dst
}

fn load_err(dir: &Path) -> PeftError {
    let mut model = gpt2();
    let (ids, _) = io(&fixtures().join("gpt2_a_seq_bn"));
    let before = to_vec(model.forward(ids.clone()));
    let e = load_bottleneck(&mut model, dir, &Default::default()).unwrap_err();
    assert_eq!(
        to_vec(model.forward(ids)),
        before,
        "a failed load must leave the model unchanged"
    );
    e
}

#[test]
fn unsupported_config_values_are_refused() {
    for (field, value) in [
        ("ln_after", Value::Bool(true)),
        ("ln_before", Value::Bool(true)),
        ("use_gating", Value::Bool(true)),
        ("is_parallel", Value::Bool(true)),
        ("phm_layer", Value::Bool(true)),
        ("scaling", Value::String("learned".into())),
        ("non_linearity", Value::String("mish".into())),
        ("residual_before_ln", Value::String("post_add".into())),
        ("inv_adapter", Value::String("nice".into())),
        ("stochastic_depth", serde_json::json!(0.1)),
    ] {
        let dir = edited("gpt2_a_seq_bn", |v| v["config"][field] = value.clone());
        match load_err(dir.path()) {
            PeftError::Unsupported { field: f, .. } => assert_eq!(f, field),
            e => panic!("{field}: {e}"),
        }
    }
    for (field, value) in [
        ("scaling", Value::String("huge".into())),
        ("dropout", serde_json::json!(1.5)),
        ("init_weights", Value::String("xavier".into())),
        ("reduction_factor", serde_json::json!(0)),
        ("reduction_factor", serde_json::json!({"0": 12})),
        ("leave_out", serde_json::json!([5])),
    ] {
        let dir = edited("gpt2_a_seq_bn", |v| v["config"][field] = value.clone());
        match load_err(dir.path()) {
            PeftError::Config { field: f, .. } => assert_eq!(f, field, "{value}"),
            e => panic!("{field} = {value}: {e}"),
        }
    }
    let dir = edited("gpt2_a_seq_bn", |v| {
        v["config"].as_object_mut().unwrap().remove("non_linearity");
    });
    let e = load_err(dir.path());
    assert!(
        matches!(e, PeftError::Json { .. }) && e.to_string().contains("non_linearity"),
        "{e}"
    );
    // Fresh adapters cannot use the "houlsby" init (a truncated normal not implemented).
    let mut c = BnConfig::seq_bn();
    c.init_weights = "houlsby".into();
    let e = add_bottleneck(&mut gpt2(), &c, &Default::default()).unwrap_err();
    assert!(matches!(e, PeftError::Unsupported { ref field, .. } if field == "init_weights"));
}

#[test]
fn mismatched_models_and_files_are_refused() {
    let dir = edited("gpt2_a_seq_bn", |v| v["hidden_size"] = 32.into());
    let e = load_err(dir.path());
    assert!(
        matches!(e, PeftError::Config { ref field, ref msg, .. } if field == "hidden_size" && msg.contains("48")),
        "{e}"
    );

    let e = load_bottleneck(
        &mut gpt2(),
        &fixtures().join("llama_a_seq_bn"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, PeftError::Config { ref field, .. } if field == "hidden_size"),
        "{e}"
    );
    let dir = edited("llama_a_seq_bn", |v| v["hidden_size"] = 48.into());
    let e = load_err(dir.path());
    assert!(
        matches!(e, PeftError::Config { ref field, .. } if field == "model_type"),
        "{e}"
    );

    // Bottleneck 48 // 16 = 3 but the file holds width 4: a shape error naming the key.
    let dir = edited("gpt2_a_seq_bn", |v| {
        v["config"]["reduction_factor"] = 16.into()
    });
    match load_err(dir.path()) {
        PeftError::Shape {
            key, expected, got, ..
        } => {
            assert_eq!(
                key,
                "transformer.h.0.output_adapters.adapters.bn.adapter_down.0.weight"
            );
            assert_eq!((expected, got), (vec![3, 48], vec![4, 48]));
        }
        e => panic!("{e}"),
    }
    // Attention adapters asked for but absent from the file.
    let dir = edited("gpt2_a_seq_bn", |v| v["config"]["mh_adapter"] = true.into());
    match load_err(dir.path()) {
        PeftError::MissingKey { key, .. } => {
            assert_eq!(
                key,
                "transformer.h.0.attention_adapters.adapters.bn.adapter_down.0.weight"
            )
        }
        e => panic!("{e}"),
    }
    // Another adapter name: none of the keys match.
    let dir = edited("gpt2_a_seq_bn", |v| v["name"] = "other".into());
    assert!(matches!(load_err(dir.path()), PeftError::MissingKey { .. }));
    // Layer 1 left out: its tensors are unexpected.
    let dir = edited("gpt2_a_seq_bn", |v| {
        v["config"]["leave_out"] = serde_json::json!([1])
    });
    match load_err(dir.path()) {
        PeftError::UnexpectedKey { key, total, .. } => {
            assert!(
                key.starts_with("transformer.h.1.output_adapters.adapters.bn."),
                "{key}"
            );
            assert_eq!(total, 4);
        }
        e => panic!("{e}"),
    }
    // Only the pickle weights file.
    let dir = edited("gpt2_a_seq_bn", |_| {});
    std::fs::rename(
        dir.path().join("adapter.safetensors"),
        dir.path().join("pytorch_adapter.bin"),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        matches!(e, PeftError::State(ref m) if m.contains("use_safetensors=True")),
        "{e}"
    );
}

#[test]
fn slots_check_layer_and_hidden_size() {
    let mut m = gpt2();
    let c = lora_core::BottleneckConfig::seq_bn(48);
    let a = BottleneckAdapter::<B>::new(&c, &Default::default()).unwrap();
    let e = m
        .set_bottleneck(2, BottleneckLocation::Output, Some(a.clone()))
        .unwrap_err();
    assert!(
        matches!(e, LoraError::Bottleneck(ref s) if s.contains("layer 2")),
        "{e}"
    );
    let mut l = llama();
    let e = l
        .set_bottleneck(0, BottleneckLocation::Output, Some(a))
        .unwrap_err();
    assert!(
        matches!(e, LoraError::Bottleneck(ref s) if s.contains("64")),
        "{e}"
    );
}

/// Saving refuses a model whose adapters are not the config's.
#[test]
fn save_checks_the_model_against_the_config() {
    let mut m = gpt2();
    add_bottleneck(&mut m, &BnConfig::seq_bn(), &Default::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let cfg = BnAdapterConfig::new(&m, BnConfig::double_seq_bn(), "x", None);
    let e = save_bottleneck(&m, &cfg, out.path()).unwrap_err();
    assert!(
        matches!(e, PeftError::State(ref s) if s.contains("transformer.h.0.attention_adapters")),
        "{e}"
    );
    let mut other = BnConfig::seq_bn();
    other.non_linearity = "tanh".into();
    let cfg = BnAdapterConfig::new(&m, other, "x", None);
    assert!(matches!(
        save_bottleneck(&m, &cfg, out.path()),
        Err(PeftError::State(_))
    ));
    assert!(!out.path().join("adapter_config.json").exists());
}

/// The PEFT dispatcher recognises an AdapterHub directory and points to the right loader.
#[test]
fn peft_dispatcher_names_adapterhub_configs() {
    let dir = fixtures().join("gpt2_a_seq_bn");
    let e = AdapterConfig::from_file(&dir).unwrap_err();
    assert!(e.to_string().contains("load_bottleneck"), "{e}");
    let e = lora_peft::tuners::load(&mut gpt2(), &dir, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("AdapterHub"), "{e}");
}
