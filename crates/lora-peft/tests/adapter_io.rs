//! Saving and loading PEFT adapter directories: round trips, PEFT's keys and shapes (compared
//! with the PEFT-written fixtures), and bad input.
mod common;

use burn::tensor::{Distribution, Tensor};
use common::{fixtures, gpt2_a_spec, gpt2_cls_spec, max_abs_diff, read_st, to_vec, Toy, B};
use lora_core::NamedLinears;
use lora_io::StTensor;
use lora_peft::{
    apply_lora, load_adapter, merge_and_unload, save_adapter, unload, LoraConfig, PeftError,
};
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;

fn llama_a_spec() -> Vec<(String, usize, usize, bool, bool)> {
    let mut v = Vec::new();
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        for (m, a, b) in [
            ("self_attn.q_proj", 64, 64),
            ("self_attn.k_proj", 64, 32),
            ("self_attn.v_proj", 64, 32),
            ("self_attn.o_proj", 64, 64),
            ("mlp.gate_proj", 64, 96),
            ("mlp.up_proj", 64, 96),
            ("mlp.down_proj", 96, 64),
        ] {
            v.push((format!("{p}.{m}"), a, b, false, false));
        }
    }
    v.push(("score".into(), 64, 2, false, false));
    v
}

fn toy_from(spec: &[(String, usize, usize, bool, bool)], seed: u64) -> Toy<B> {
    let s: Vec<(&str, usize, usize, bool, bool)> = spec
        .iter()
        .map(|(n, a, b, c, d)| (n.as_str(), *a, *b, *c, *d))
        .collect();
    Toy::new(&s, seed, &Default::default())
}

fn cfg(json: &str) -> LoraConfig {
    LoraConfig::from_json_str(json, Path::new("<test>")).unwrap()
}

/// Copies the two adapter files of fixture `name` into a temp dir.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(f), d.path().join(f)).unwrap();
    }
    d
}

/// Rewrites `dir/adapter_model.safetensors` from `(key, dtype, shape, bytes)`.
fn write_st(dir: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let tensors: Vec<(String, StTensor)> = tensors
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            let t = StTensor {
                dtype: *dtype,
                shape: shape.clone(),
                bytes: bytes.clone(),
            };
            (k.clone(), t)
        })
        .collect();
    let bytes = lora_io::serialize_safetensors(&tensors, None).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), bytes).unwrap();
}

fn raw_tensors(dir: &Path) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(k, t)| (k, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn adapter_count(m: &Toy<B>) -> usize {
    m.layers.iter().filter(|l| l.has_adapter()).count()
}

#[test]
fn save_load_round_trip_reproduces_outputs() {
    let device = Default::default();
    let base = Toy::<B>::new(&gpt2_cls_spec(), 7, &device);
    let config = cfg(
        r#"{"target_modules": ["c_attn", "c_proj", "c_fc"], "r": 4, "lora_alpha": 8,
        "init_lora_weights": false, "fan_in_fan_out": true, "rank_pattern": {"c_fc": 2},
        "alpha_pattern": {"h.1.attn.c_attn": 3}, "modules_to_save": ["score", "lm_head"]}"#,
    );
    let mut m = base.clone();
    apply_lora(&mut m, &config, &device).unwrap();
    // "Train" the modules_to_save layers: new weights (and lm_head has no bias, score neither).
    for i in [8, 9] {
        let (a, b) = m.layers[i].dims();
        let w = Tensor::<B, 2>::random([a, b], Distribution::Normal(0.0, 1.0), &device);
        let b = m.layers[i].bias();
        m.layers[i].replace_base(w, b).unwrap();
    }
    let want = m.outputs(&device);

    let dir = tempfile::tempdir().unwrap();
    save_adapter(&m, &config, dir.path()).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["adapter_config.json", "adapter_model.safetensors"]);

    // The file holds lora_A as [r, d_in] = our A transposed, lora_B as [d_out, r].
    let st = read_st(&dir.path().join("adapter_model.safetensors"));
    let get = |k: &str| {
        st.iter()
            .find(|t| t.0 == k)
            .unwrap_or_else(|| panic!("{k}"))
            .clone()
    };
    let (_, sa, va) = get("base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight");
    assert_eq!(sa, [2, 48]);
    let a = to_vec(m.layers[2].adapter().unwrap().lora_a()); // [48, 2]
    for i in 0..48 {
        for j in 0..2 {
            assert_eq!(va[j * 48 + i], a[i * 2 + j]);
        }
    }
    let (_, sb, vb) = get("base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight");
    assert_eq!(sb, [192, 2]);
    let b = to_vec(m.layers[2].adapter().unwrap().lora_b()); // [2, 192]
    assert_eq!(vb[5 * 2 + 1], b[192 + 5]);
    // modules_to_save: nn.Linear layout [out, in].
    let (_, ss, vs) = get("base_model.model.score.weight");
    assert_eq!(ss, [2, 48]);
    let w = to_vec(m.layers[9].base_weight()); // [48, 2]
    assert_eq!(vs[48 + 3], w[3 * 2 + 1]);
    assert_eq!(st.len(), 8 * 2 + 2);

    let mut fresh = base.clone();
    let loaded = load_adapter(&mut fresh, dir.path(), &device).unwrap();
    assert_eq!(loaded, config);
    let got = fresh.outputs(&device);
    let mut worst = 0f32;
    for (a, b) in want.iter().zip(&got) {
        worst = worst.max(max_abs_diff(a, b));
    }
    println!("save→load max |diff| = {worst:e}");
    assert_eq!(worst, 0.0);
    let s = fresh
        .layer("transformer.h.1.attn.c_attn")
        .adapter()
        .unwrap()
        .scaling();
    assert_eq!(s, 3.0 / 4.0);

    // merge_and_unload keeps the outputs and leaves no adapters; unload restores the base.
    let mut merged = fresh.clone();
    assert_eq!(merge_and_unload(&mut merged).unwrap(), 8);
    assert_eq!(adapter_count(&merged), 0);
    let out_m = merged.outputs(&device);
    let mut worst = 0f32;
    for (a, b) in want.iter().zip(&out_m) {
        worst = worst.max(max_abs_diff(a, b));
    }
    println!("merge_and_unload max |diff| = {worst:e}");
    assert!(worst < 1e-5, "{worst}");
    let mut un = fresh.clone();
    assert_eq!(unload(&mut un).unwrap(), 8);
    let base_out = base.outputs(&device);
    for (i, (a, b)) in base_out.iter().zip(&un.outputs(&device)).enumerate() {
        if i < 8 {
            assert_eq!(max_abs_diff(a, b), 0.0);
        }
    }
}

/// Our file for the config of a PEFT fixture has exactly PEFT's keys and shapes.
#[test]
fn saved_keys_and_shapes_equal_peft_fixtures() {
    let device = Default::default();
    let gpt2: Vec<(String, usize, usize, bool, bool)> = gpt2_cls_spec()
        .iter()
        .map(|(n, a, b, c, d)| (n.to_string(), *a, *b, *c, *d))
        .collect();
    for (fx, spec) in [
        ("gpt2_a_lora", gpt2.clone()),
        ("gpt2_a_lora_rs", gpt2.clone()),
        ("gpt2_cls_lora", gpt2.clone()),
        ("llama_a_lora", llama_a_spec()),
        ("llama_cls_lora", llama_a_spec()),
    ] {
        let config = LoraConfig::from_file(fixtures().join(fx)).unwrap();
        let mut m = toy_from(&spec, 3);
        let targeted = apply_lora(&mut m, &config, &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_adapter(&m, &config, dir.path()).unwrap();
        let ours: Vec<(String, Vec<usize>)> =
            read_st(&dir.path().join("adapter_model.safetensors"))
                .into_iter()
                .map(|(k, s, _)| (k, s))
                .collect();
        let peft: Vec<(String, Vec<usize>)> =
            read_st(&fixtures().join(fx).join("adapter_model.safetensors"))
                .into_iter()
                .map(|(k, s, _)| (k, s))
                .collect();
        assert_eq!(ours, peft, "{fx}");
        println!(
            "{fx}: {} keys equal PEFT's ({} adapted layers)",
            ours.len(),
            targeted.len()
        );
        // Metadata {"format": "pt"} like PEFT's.
        let bytes = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let want = HashMap::from([("format".to_string(), "pt".to_string())]);
        assert_eq!(meta.metadata().as_ref(), Some(&want), "{fx}");
        // The config written back reads as the same config.
        assert_eq!(LoraConfig::from_file(dir.path()).unwrap(), config, "{fx}");
    }
}

/// Loading a PEFT file and saving it again reproduces every tensor bit for bit.
#[test]
fn peft_fixture_load_then_save_is_identity() {
    let device = Default::default();
    let gpt2: Vec<(String, usize, usize, bool, bool)> = gpt2_cls_spec()
        .iter()
        .map(|(n, a, b, c, d)| (n.to_string(), *a, *b, *c, *d))
        .collect();
    for (fx, spec, scaling) in [
        ("gpt2_a_lora", gpt2.clone(), 2.0),
        ("gpt2_a_lora_rs", gpt2.clone(), 16.0 / 8f64.sqrt()),
        ("gpt2_cls_lora", gpt2.clone(), 2.0),
        ("llama_a_lora", llama_a_spec(), 2.0),
        ("llama_cls_lora", llama_a_spec(), 2.0),
    ] {
        let mut m = toy_from(&spec, 4);
        let config = load_adapter(&mut m, &fixtures().join(fx), &device).unwrap();
        for l in &m.layers {
            if let Some(a) = l.adapter() {
                assert!((a.scaling() - scaling).abs() < 1e-12, "{fx}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        save_adapter(&m, &config, dir.path()).unwrap();
        let ours = read_st(&dir.path().join("adapter_model.safetensors"));
        let peft = read_st(&fixtures().join(fx).join("adapter_model.safetensors"));
        assert_eq!(ours, peft, "{fx}");
    }
}

#[test]
fn accepts_keys_with_adapter_name() {
    let device = Default::default();
    let dir = copy_fixture("gpt2_a_lora");
    let t: Vec<_> = raw_tensors(dir.path())
        .into_iter()
        .map(|(k, d, s, b)| {
            (
                k.replace(".lora_A.", ".lora_A.default.")
                    .replace(".lora_B.", ".lora_B.default."),
                d,
                s,
                b,
            )
        })
        .collect();
    assert!(t[0].0.contains(".default."));
    write_st(dir.path(), &t);
    let mut m = Toy::<B>::new(&gpt2_a_spec(), 5, &device);
    load_adapter(&mut m, dir.path(), &device).unwrap();
    assert_eq!(adapter_count(&m), 8);
    // Same values as from the plain fixture.
    let mut m2 = Toy::<B>::new(&gpt2_a_spec(), 5, &device);
    load_adapter(&mut m2, &fixtures().join("gpt2_a_lora"), &device).unwrap();
    let (a, b) = (m.outputs(&device), m2.outputs(&device));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(max_abs_diff(x, y), 0.0);
    }
}

fn load_err(dir: &Path) -> (PeftError, Toy<B>) {
    let device = Default::default();
    let mut m = Toy::<B>::new(&gpt2_a_spec(), 6, &device);
    let e = load_adapter(&mut m, dir, &device).unwrap_err();
    // Nothing attached after a failed load.
    assert_eq!(adapter_count(&m), 0, "{e}");
    (e, m)
}

#[test]
fn bad_files_give_clear_errors() {
    // Missing adapter_model.safetensors.
    let dir = copy_fixture("gpt2_a_lora");
    std::fs::remove_file(dir.path().join("adapter_model.safetensors")).unwrap();
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, PeftError::Io { .. }));
    assert!(e.to_string().contains("adapter_model.safetensors"), "{e}");
    std::fs::write(dir.path().join("adapter_model.bin"), b"pickle").unwrap();
    let (e, _) = load_err(dir.path());
    assert!(e.to_string().contains("adapter_model.bin"), "{e}");

    // Missing adapter_config.json.
    let dir = copy_fixture("gpt2_a_lora");
    std::fs::remove_file(dir.path().join("adapter_config.json")).unwrap();
    let (e, _) = load_err(dir.path());
    assert!(e.to_string().contains("adapter_config.json"), "{e}");

    // Truncated file.
    let dir = copy_fixture("gpt2_a_lora");
    let p = dir.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, PeftError::SafeTensors { .. }), "{e}");
    assert!(e.to_string().contains("adapter_model.safetensors"), "{e}");
    std::fs::write(&p, &bytes[..5]).unwrap();
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, PeftError::SafeTensors { .. }), "{e}");

    // Wrong shape ([4, 48] stored as [2, 96]).
    let dir = copy_fixture("gpt2_a_lora");
    let key = "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight";
    let t: Vec<_> = raw_tensors(dir.path())
        .into_iter()
        .map(|(k, d, s, b)| {
            if k == key {
                (k, d, vec![2, 96], b)
            } else {
                (k, d, s, b)
            }
        })
        .collect();
    write_st(dir.path(), &t);
    let (e, _) = load_err(dir.path());
    match &e {
        PeftError::Shape {
            key: k,
            expected,
            got,
            ..
        } => {
            assert_eq!(
                (k.as_str(), expected.as_slice(), got.as_slice()),
                (key, &[4, 48][..], &[2, 96][..])
            )
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains(key), "{e}");

    // Unknown key (a DoRA magnitude vector).
    let dir = copy_fixture("gpt2_a_lora");
    let mut t = raw_tensors(dir.path());
    let extra = "base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector";
    t.push((extra.into(), Dtype::F32, vec![144], vec![0u8; 144 * 4]));
    write_st(dir.path(), &t);
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, PeftError::UnexpectedKey { .. }), "{e}");
    assert!(
        e.to_string().contains(extra) && e.to_string().contains("adapter_model.safetensors"),
        "{e}"
    );

    // Missing key.
    let dir = copy_fixture("gpt2_a_lora");
    let gone = "base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight";
    let t: Vec<_> = raw_tensors(dir.path())
        .into_iter()
        .filter(|t| t.0 != gone)
        .collect();
    write_st(dir.path(), &t);
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, PeftError::MissingKey { .. }), "{e}");
    assert!(e.to_string().contains(gone), "{e}");

    // Integer dtype.
    let dir = copy_fixture("gpt2_a_lora");
    let t: Vec<_> = raw_tensors(dir.path())
        .into_iter()
        .map(|(k, d, s, b)| {
            if k == key {
                (k, Dtype::I32, s, b)
            } else {
                (k, d, s, b)
            }
        })
        .collect();
    write_st(dir.path(), &t);
    let (e, _) = load_err(dir.path());
    assert!(
        matches!(e, PeftError::Dtype { .. }) && e.to_string().contains(key),
        "{e}"
    );
}

fn with_config(edit: impl FnOnce(&mut LoraConfig)) -> tempfile::TempDir {
    let dir = copy_fixture("gpt2_a_lora");
    let mut c = LoraConfig::from_file(dir.path()).unwrap();
    edit(&mut c);
    c.save(dir.path()).unwrap();
    dir
}

#[test]
fn bad_configs_give_clear_errors() {
    let (e, _) = load_err(with_config(|c| c.r = 0).path());
    assert!(e.to_string().contains("r = 0"), "{e}");
    // Config rank differs from the file's.
    let (e, _) = load_err(with_config(|c| c.r = 8).path());
    match &e {
        PeftError::Shape { expected, got, .. } => assert_eq!(
            (expected.as_slice(), got.as_slice()),
            (&[8, 48][..], &[4, 48][..])
        ),
        other => panic!("{other}"),
    }
    // Unknown target module.
    let (e, _) = load_err(
        with_config(|c| {
            c.target_modules = Some(lora_peft::TargetModules::List(vec!["nonexistent".into()]))
        })
        .path(),
    );
    assert!(matches!(e, PeftError::NoMatch { .. }), "{e}");
    assert!(
        e.to_string().contains("nonexistent")
            && e.to_string().contains("transformer.h.0.attn.c_attn"),
        "{e}"
    );
    // Fewer targets than the file has: the rest is unexpected.
    let (e, _) = load_err(
        with_config(|c| {
            c.target_modules = Some(lora_peft::TargetModules::List(vec!["c_attn".into()]))
        })
        .path(),
    );
    assert!(
        matches!(e, PeftError::UnexpectedKey { total: 12, .. }),
        "{e}"
    );
    // use_dora on a plain LoRA file: the magnitude vectors are missing.
    let (e, _) = load_err(with_config(|c| c.use_dora = true).path());
    assert!(
        matches!(e, PeftError::MissingKey { ref key, .. } if key.ends_with(".lora_magnitude_vector")),
        "{e}"
    );
}

#[test]
fn state_errors() {
    let device = Default::default();
    // Loading into a merged layer.
    let mut m = Toy::<B>::new(&gpt2_a_spec(), 8, &device);
    load_adapter(&mut m, &fixtures().join("gpt2_a_lora"), &device).unwrap();
    m.layers[0].merge().unwrap();
    let e = load_adapter(&mut m, &fixtures().join("gpt2_a_lora"), &device).unwrap_err();
    assert!(e.to_string().contains("merged"), "{e}");
    let e = apply_lora(&mut m, &LoraConfig::new(2, 4.0, &["c_attn"]), &device).unwrap_err();
    assert!(e.to_string().contains("merged"), "{e}");
    // Saving with a config that does not describe the adapters.
    let mut m = Toy::<B>::new(&gpt2_a_spec(), 8, &device);
    apply_lora(&mut m, &LoraConfig::new(2, 4.0, &["c_attn"]), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = save_adapter(&m, &LoraConfig::new(4, 4.0, &["c_attn"]), dir.path()).unwrap_err();
    assert!(e.to_string().contains("r = 2"), "{e}");
    let e = save_adapter(
        &m,
        &LoraConfig::new(2, 4.0, &["c_attn", "c_fc"]),
        dir.path(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no adapter"), "{e}");
    let e = save_adapter(
        &m,
        &LoraConfig::new(2, 4.0, &["h.0.attn.c_attn"]),
        dir.path(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not target"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let names = m.linear_names();
    assert_eq!(names.len(), 8);
}

#[test]
fn write_errors_say_write_and_name_the_path_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("adapter_config.json");
    std::fs::create_dir(&target).unwrap();
    let e = lora_peft::write_atomic(&target, b"{}").unwrap_err();
    assert!(matches!(e, PeftError::Write { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot write {}: is a directory, expected a file name",
            target.display()
        )
    );
}
