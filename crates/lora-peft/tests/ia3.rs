//! (IA)³ against PEFT: adapters PEFT wrote on the real GPT-2 / Llama fixture models
//! (`tests/fixtures/make_ia3_fixtures.py`) give PEFT's logits and merged logits within 1e-4 and
//! save back to PEFT's exact tensors; PEFT's default targets; adapters written here for PEFT
//! to load (`LORA_BURN_EXPORT_DIR=DIR` keeps them in `DIR/ia3_*`, then
//! `tests/fixtures/check_peft_load.py` loads them); and bad input refused.
mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{fixtures, gpt2_a_spec, max_abs_diff, read_st, to_vec, Toy, B};
use lora_core::{Ia3Adapter, LoraLayerConfig, NamedLinears};
use lora_io::StTensor;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::tuners::{self, ia3::state_dict_keys};
use lora_peft::{
    apply_ia3, load_ia3, merge_and_unload, save_ia3, unload, AdapterConfig, IA3Config, PeftError,
    TargetModules,
};
use std::path::{Path, PathBuf};

const TOL: f32 = 1e-4;

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

fn io(fx: &str) -> (Tensor<B, 2, Int>, StFile) {
    let st = StFile::open(fixtures().join(fx).join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st)
}

fn cfg(json: &str) -> IA3Config {
    IA3Config::from_json_str(json, Path::new("<test>")).unwrap()
}

/// PEFT's adapter on its base: logits, a re-save equal to PEFT's file, merged logits.
fn check_fixture<M: LanguageModel<B>>(mut model: M, fx: &str) {
    let device = Default::default();
    let dir = fixtures().join(fx);
    let (ids, st) = io(fx);
    let (want, _) = st.f32("logits").unwrap();
    let base = to_vec(model.forward(ids.clone()));
    let loaded = tuners::load(&mut model, &dir, &device).unwrap();
    let AdapterConfig::Ia3(config) = loaded else {
        panic!("{fx}: {loaded:?}")
    };
    let got = to_vec(model.forward(ids.clone()));
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&base, &want);
    println!("{fx}: logits max |diff| vs PEFT = {d:e} (the adapter moves them by {moved:e})");
    assert!(d < TOL, "{fx}: {d}");
    assert!(
        moved > 100.0 * TOL,
        "{fx}: the adapter should change the logits ({moved})"
    );

    // Saving it again gives PEFT's exact tensors and config.
    let out = tempfile::tempdir().unwrap();
    save_ia3(&model, &config, out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter_model.safetensors")),
        read_st(&dir.join("adapter_model.safetensors")),
        "{fx}"
    );
    assert_eq!(IA3Config::from_file(out.path()).unwrap(), config, "{fx}");
    let mut keys = state_dict_keys(&model, &config).unwrap();
    keys.sort();
    let file: Vec<String> = read_st(&dir.join("adapter_model.safetensors"))
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(keys, file, "{fx}");

    let (want_m, _) = st.f32("logits_merged").unwrap();
    assert!(merge_and_unload(&mut model).unwrap() > 0);
    let got = to_vec(model.forward(ids));
    let d = max_abs_diff(&got, &want_m);
    println!("{fx}: merged logits max |diff| vs PEFT = {d:e}");
    assert!(d < TOL, "{fx} merged: {d}");
}

#[test]
fn gpt2_a_ia3_defaults_match_peft() {
    check_fixture(gpt2(), "gpt2_a_ia3");
}

#[test]
fn gpt2_a_ia3_regexes_match_peft() {
    check_fixture(gpt2(), "gpt2_a_ia3_re");
}

#[test]
fn llama_a_ia3_gqa_matches_peft() {
    check_fixture(llama(), "llama_a_ia3");
}

/// Keys and shapes of an adapter file.
fn key_shapes(path: &Path) -> Vec<(String, Vec<usize>)> {
    read_st(path).into_iter().map(|(k, s, _)| (k, s)).collect()
}

#[test]
fn null_targets_take_peft_defaults() {
    let device = Default::default();
    // GPT-2: c_attn (output scaling, [3·48, 1]) and mlp.c_proj (feed-forward, [1, 192]), the
    // targets PEFT chose for the gpt2_a_ia3 fixture, written with fan_in_fan_out = true.
    let mut g = gpt2();
    let c = cfg(r#"{"peft_type": "IA3", "task_type": "CAUSAL_LM"}"#);
    let names = apply_ia3(&mut g, &c, &device).unwrap();
    assert_eq!(names.len(), 4);
    let out = tempfile::tempdir().unwrap();
    save_ia3(&g, &c, out.path()).unwrap();
    let st = out.path().join("adapter_model.safetensors");
    let peft = fixtures().join("gpt2_a_ia3/adapter_model.safetensors");
    assert_eq!(key_shapes(&st), key_shapes(&peft));
    let saved = IA3Config::from_file(out.path()).unwrap();
    let peft_cfg = IA3Config::from_file(fixtures().join("gpt2_a_ia3")).unwrap();
    assert_eq!(saved.target_modules, peft_cfg.target_modules);
    assert_eq!(saved.feedforward_modules, peft_cfg.feedforward_modules);
    assert!(saved.fan_in_fan_out && peft_cfg.fan_in_fan_out);
    // Fresh vectors are ones: PEFT's identity init.
    for (k, s, v) in read_st(&st) {
        assert!(v.iter().all(|&x| x == 1.0), "{k} {s:?}");
    }

    // Llama: k_proj, v_proj (GQA: 64 → 32) scale their output, down_proj its input.
    let mut l = llama();
    apply_ia3(&mut l, &IA3Config::default(), &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_ia3(&l, &IA3Config::default(), out.path()).unwrap();
    let mut want = Vec::new();
    for i in 0..2 {
        let p = format!("base_model.model.model.layers.{i}");
        want.push((format!("{p}.mlp.down_proj.ia3_l"), vec![1, 96]));
        want.push((format!("{p}.self_attn.k_proj.ia3_l"), vec![32, 1]));
        want.push((format!("{p}.self_attn.v_proj.ia3_l"), vec![32, 1]));
    }
    want.sort();
    assert_eq!(
        key_shapes(&out.path().join("adapter_model.safetensors")),
        want
    );
    let saved = IA3Config::from_file(out.path()).unwrap();
    let list = |v: &[&str]| Some(TargetModules::from(v));
    assert_eq!(
        saved.target_modules,
        list(&["k_proj", "v_proj", "down_proj"])
    );
    assert_eq!(saved.feedforward_modules, list(&["down_proj"]));
    assert!(!saved.fan_in_fan_out);
}

#[test]
fn fresh_adapters_leave_the_logits_unchanged() {
    let device = Default::default();
    let (ids, st) = io("gpt2_a");
    let (base, _) = st.f32("logits").unwrap();
    let mut g = gpt2();
    let before = to_vec(g.forward(ids.clone()));
    assert!(max_abs_diff(&before, &base) < TOL);
    apply_ia3(&mut g, &IA3Config::default(), &device).unwrap();
    assert_eq!(to_vec(g.forward(ids)), before);
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

/// `io.safetensors` with the fixture's `input_ids` and our `logits`, for check_peft_load.py.
fn write_io(dir: &Path, st: &StFile, logits: Tensor<B, 3>) {
    let (ids, shape) = st.i64("input_ids").unwrap();
    let dims = logits.dims().to_vec();
    let tensors = vec![
        (
            "input_ids".to_string(),
            StTensor {
                dtype: safetensors::Dtype::I64,
                shape,
                bytes: ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ),
        ("logits".to_string(), StTensor::f32(dims, &to_vec(logits))),
    ];
    lora_io::write_safetensors(dir.join("io.safetensors"), &tensors, None).unwrap();
}

/// Random (non-identity) vectors applied here, saved, reloaded here to the same logits; with
/// `LORA_BURN_EXPORT_DIR` the directory is kept for `check_peft_load.py`.
fn export_case<M: LanguageModel<B> + NamedLinears<B>>(
    mut model: M,
    fresh: M,
    fx: &str,
    name: &str,
    json: &str,
) {
    let device = Default::default();
    B::seed(&device, 7);
    let (ids, st) = io(fx);
    let config = cfg(json);
    apply_ia3(&mut model, &config, &device).unwrap();
    let logits = model.forward(ids.clone());
    let (out, _keep) = out_dir(name);
    save_ia3(&model, &config, &out).unwrap();
    write_io(&out, &st, logits.clone());
    let mut fresh = fresh;
    load_ia3(&mut fresh, &out, &device).unwrap();
    let d = max_abs_diff(&to_vec(fresh.forward(ids)), &to_vec(logits));
    println!("{name}: reload max diff {d:e}");
    assert_eq!(d, 0.0, "{name}");
}

#[test]
fn adapters_written_here_reload_to_the_same_logits() {
    export_case(
        gpt2(),
        gpt2(),
        "gpt2_a",
        "ia3_gpt2_a",
        r#"{"peft_type": "IA3", "task_type": "CAUSAL_LM", "init_ia3_weights": false,
        "target_modules": ["c_attn", "c_fc", "mlp.c_proj"], "feedforward_modules": ["mlp.c_proj"]}"#,
    );
    export_case(
        llama(),
        llama(),
        "llama_a",
        "ia3_llama_a",
        r#"{"peft_type": "IA3", "task_type": "CAUSAL_LM", "init_ia3_weights": false,
        "target_modules": ["k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
        "feedforward_modules": ["down_proj", "gate_proj"]}"#,
    );
}

/// Copies the adapter files of fixture `name` into a temp dir.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(f), d.path().join(f)).unwrap();
    }
    d
}

fn adapter_count(m: &Toy<B>) -> usize {
    m.layers.iter().filter(|l| l.has_adapter()).count()
}

fn toy() -> Toy<B> {
    Toy::new(&gpt2_a_spec(), 5, &Default::default())
}

/// Rewrites tensor `key` of `dir`'s adapter file with `shape` (values 1.0).
fn rewrite(dir: &Path, key: &str, shape: Option<Vec<usize>>) {
    let path = dir.join("adapter_model.safetensors");
    let tensors: Vec<(String, StTensor)> = read_st(&path)
        .into_iter()
        .filter_map(|(k, s, v)| {
            if k != key {
                return Some((k, StTensor::f32(s, &v)));
            }
            let s = shape.clone()?;
            let n = s.iter().product();
            Some((k, StTensor::f32(s, &vec![1.0; n])))
        })
        .collect();
    lora_io::write_safetensors(&path, &tensors, None).unwrap();
}

#[test]
fn wrong_ia3_l_shape_is_refused_naming_key_and_shapes() {
    let device = Default::default();
    // c_attn is output scaling: PEFT stores [144, 1]; [1, 144] (or a feed-forward [1, 48]) is
    // refused and the model is left untouched.
    let key = "base_model.model.transformer.h.0.attn.c_attn.ia3_l";
    for bad in [vec![1, 144], vec![1, 48], vec![144]] {
        let d = copy_fixture("gpt2_a_ia3");
        rewrite(d.path(), key, Some(bad.clone()));
        let mut m = toy();
        let e = load_ia3(&mut m, d.path(), &device).unwrap_err();
        match &e {
            PeftError::Shape {
                key: k,
                expected,
                got,
                ..
            } => {
                assert_eq!(k, key);
                assert_eq!(expected, &vec![144, 1]);
                assert_eq!(got, &bad);
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains(key), "{e}");
        assert_eq!(adapter_count(&m), 0);
    }
    // A missing vector and a stray one are refused too.
    let d = copy_fixture("gpt2_a_ia3");
    rewrite(d.path(), key, None);
    let e = load_ia3(&mut toy(), d.path(), &device).unwrap_err();
    assert!(
        matches!(&e, PeftError::MissingKey { key: k, .. } if k == key),
        "{e}"
    );
    let d = copy_fixture("gpt2_a_ia3_re");
    let path = d.path().join("adapter_model.safetensors");
    let mut tensors: Vec<(String, StTensor)> = read_st(&path)
        .into_iter()
        .map(|(k, s, v)| (k, StTensor::f32(s, &v)))
        .collect();
    let stray = "base_model.model.transformer.h.0.attn.c_proj.ia3_l";
    tensors.push((stray.into(), StTensor::f32(vec![48, 1], &[1.0; 48])));
    lora_io::write_safetensors(&path, &tensors, None).unwrap();
    let e = load_ia3(&mut toy(), d.path(), &device).unwrap_err();
    assert!(
        matches!(&e, PeftError::UnexpectedKey { key: k, .. } if k == stray),
        "{e}"
    );
}

#[test]
fn feedforward_outside_target_modules_is_refused() {
    let device = Default::default();
    let c = cfg(r#"{"target_modules": ["c_attn"], "feedforward_modules": ["mlp.c_proj"]}"#);
    let e = apply_ia3(&mut toy(), &c, &device).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, PeftError::Config { ref field, .. } if field == "feedforward_modules"));
    assert!(
        m.contains("subset of target_modules") && m.contains("mlp.c_proj"),
        "{m}"
    );
    // The same config in a file is refused on load, as PEFT's IA3Config.__post_init__ does.
    let d = copy_fixture("gpt2_a_ia3");
    c.save(d.path()).unwrap();
    let mut m = toy();
    let e = load_ia3(&mut m, d.path(), &device).unwrap_err();
    assert!(e.to_string().contains("subset of target_modules"), "{e}");
    assert_eq!(adapter_count(&m), 0);
    // A regex on either side has no subset rule (PEFT checks only two lists).
    let c = cfg(r#"{"target_modules": ".*c_attn", "feedforward_modules": ["mlp.c_proj"]}"#);
    assert_eq!(apply_ia3(&mut toy(), &c, &device).unwrap().len(), 2);
}

#[test]
fn default_feedforward_outside_explicit_targets() {
    let device = Default::default();
    // Llama, target_modules ["q_proj"]: PEFT fills feedforward_modules ["down_proj"] and saves a
    // config its own loader refuses; here the list is cut to [] (no targeted layer changes role)
    // and the saved adapter loads back.
    let mut l = llama();
    let c = cfg(r#"{"target_modules": ["q_proj"], "init_ia3_weights": false}"#);
    apply_ia3(&mut l, &c, &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_ia3(&l, &c, out.path()).unwrap();
    let saved = IA3Config::from_file(out.path()).unwrap();
    assert_eq!(saved.feedforward_modules, Some(TargetModules::List(vec![])));
    let mut fresh = llama();
    load_ia3(&mut fresh, out.path(), &device).unwrap();
    let (ids, _) = io("llama_a");
    assert_eq!(to_vec(fresh.forward(ids.clone())), to_vec(l.forward(ids)));
    // GPT-2, target_modules ["c_proj"]: the default ["mlp.c_proj"] makes mlp.c_proj
    // feed-forward, which no subset of ["c_proj"] can say: refused with the reason.
    let c = cfg(r#"{"target_modules": ["c_proj"]}"#);
    let e = apply_ia3(&mut toy(), &c, &device).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("feedforward_modules") && m.contains("mlp.c_proj"),
        "{m}"
    );
    // A model with no known default needs both fields.
    let mut odd = Toy::<B>::new(&[("blocks.0.ff", 8, 8, true, false)], 1, &device);
    let e = apply_ia3(&mut odd, &IA3Config::default(), &device).unwrap_err();
    assert!(e.to_string().contains("target_modules = null"), "{e}");
    let c = cfg(r#"{"target_modules": ["ff"]}"#);
    let e = apply_ia3(&mut odd, &c, &device).unwrap_err();
    assert!(e.to_string().contains("feedforward_modules = null"), "{e}");
}

#[test]
fn unknown_target_and_bad_config_are_refused() {
    let device = Default::default();
    let mut m = toy();
    let c = cfg(r#"{"target_modules": ["c_attn", "c_atn"], "feedforward_modules": []}"#);
    let e = apply_ia3(&mut m, &c, &device).unwrap_err();
    assert!(matches!(e, PeftError::NoMatch { .. }), "{e}");
    assert!(e.to_string().contains("c_atn"), "{e}");
    assert_eq!(adapter_count(&m), 0);
    let c = cfg(r#"{"target_modules": ["nothing_here"], "feedforward_modules": []}"#);
    assert!(matches!(
        apply_ia3(&mut m, &c, &device).unwrap_err(),
        PeftError::NoMatch { .. }
    ));
    let c = cfg(r#"{"target_modules": "c_attn(", "feedforward_modules": []}"#);
    assert!(matches!(
        apply_ia3(&mut m, &c, &device).unwrap_err(),
        PeftError::Regex { .. }
    ));
    let c =
        cfg(r#"{"peft_type": "LORA", "target_modules": ["c_attn"], "feedforward_modules": []}"#);
    let e = apply_ia3(&mut m, &c, &device).unwrap_err();
    assert!(e.to_string().contains("peft_type"), "{e}");
    // A LoRA adapter where the IA3 config expects an (IA)³ one cannot be saved as IA3.
    let c = cfg(r#"{"target_modules": ["c_attn"], "feedforward_modules": []}"#);
    let lc = LoraLayerConfig::default();
    m.layers[0].attach(&lc, &device).unwrap();
    let e = save_ia3(&m, &c, tempfile::tempdir().unwrap().path()).unwrap_err();
    assert!(e.to_string().contains("another method"), "{e}");
    // An output-scaling vector where the config says feed-forward.
    let mut m = toy();
    apply_ia3(&mut m, &c, &device).unwrap();
    let ff = cfg(r#"{"target_modules": ["c_attn"], "feedforward_modules": ["c_attn"]}"#);
    let e = save_ia3(&m, &ff, tempfile::tempdir().unwrap().path()).unwrap_err();
    assert!(e.to_string().contains("feed-forward"), "{e}");
}

#[test]
fn feedforward_list_entries_match_plain_suffixes_as_peft() {
    // PEFT's `key.endswith(entry)`: "c_proj" in feedforward_modules makes both attn.c_proj and
    // mlp.c_proj feed-forward; "proj" would too.
    let c = cfg(r#"{"target_modules": ["c_proj"], "feedforward_modules": ["c_proj"]}"#);
    assert!(c.is_feedforward("transformer.h.0.attn.c_proj").unwrap());
    let c = cfg(r#"{"target_modules": ".*", "feedforward_modules": ["proj"]}"#);
    assert!(c.is_feedforward("transformer.h.0.mlp.c_proj").unwrap());
    assert!(!c.is_feedforward("transformer.h.0.mlp.c_fc").unwrap());
    let c = cfg(r#"{"target_modules": ".*", "feedforward_modules": ".*\\.c_fc"}"#);
    assert!(c.is_feedforward("transformer.h.1.mlp.c_fc").unwrap());
    assert!(!c.is_feedforward("c_fc").unwrap());
}

#[test]
fn merge_unload_and_the_seam() {
    let device = Default::default();
    B::seed(&device, 3);
    let c = cfg(r#"{"target_modules": ["c_attn", "c_fc", "mlp.c_proj"],
        "feedforward_modules": ["mlp.c_proj"], "init_ia3_weights": false,
        "modules_to_save": ["attn.c_proj"]}"#);
    let any = AdapterConfig::Ia3(c.clone());
    let base = toy();
    let mut m = base.clone();
    assert_eq!(tuners::inject(&mut m, &any, &device).unwrap().len(), 6);
    let a = m
        .layer("transformer.h.1.mlp.c_proj")
        .attached_adapter()
        .unwrap();
    assert_eq!(a.as_ia3().unwrap().ia3_l().dims(), [192]);
    let want = m.outputs(&device);
    assert!(max_abs_diff(&want.concat(), &base.outputs(&device).concat()) > 1e-2);
    // Through the dispatcher: save, load into a fresh model, same outputs.
    let dir = tempfile::tempdir().unwrap();
    tuners::save(&m, &any, dir.path()).unwrap();
    let mut fresh = base.clone();
    // The file says fan_in_fan_out = true: PEFT's flag follows the (Conv1D) layers' layout.
    let mut written = c.clone();
    written.fan_in_fan_out = true;
    assert_eq!(
        tuners::load(&mut fresh, dir.path(), &device).unwrap(),
        AdapterConfig::Ia3(written)
    );
    assert_eq!(fresh.outputs(&device), want);
    // merge_and_unload: plain layers, same outputs; unload: the base's outputs.
    let mut merged = m.clone();
    assert_eq!(merge_and_unload(&mut merged).unwrap(), 6);
    let d = max_abs_diff(&merged.outputs(&device).concat(), &want.concat());
    assert!(d < 1e-5, "{d}");
    assert_eq!(adapter_count(&merged), 0);
    assert_eq!(unload(&mut m).unwrap(), 6);
    assert_eq!(m.outputs(&device), base.outputs(&device));
    // A merged layer takes no new vector.
    let mut l = base.clone();
    l.layers[0]
        .attach_adapter(Ia3Adapter::<B>::new(48, 144, false, true, &device))
        .unwrap();
    l.layers[0].merge().unwrap();
    let e = apply_ia3(&mut l, &c, &device).unwrap_err();
    assert!(e.to_string().contains("merged"), "{e}");
}
