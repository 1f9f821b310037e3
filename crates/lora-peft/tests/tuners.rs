//! The method seam: routing an adapter directory on its `peft_type`, the refusal of methods not
//! implemented, and LoRA through the [`Tuner`] interface.
mod common;

use common::{fixtures, gpt2_cls_spec, read_st, Toy, B};
use lora_peft::tuners::{self, ia3::Ia3, lora::Lora};
use lora_peft::{AdapterConfig, IA3Config, LoraConfig, PeftError, PeftType, Tuner};
use std::path::Path;

fn dir_with_config(json: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("adapter_config.json"), json).unwrap();
    d
}

#[test]
fn peft_type_names() {
    assert_eq!(PeftType::Lora.as_str(), "LORA");
    assert_eq!(PeftType::from_name("LORA"), Some(PeftType::Lora));
    assert_eq!(PeftType::from_name("lora"), None);
    assert_eq!(PeftType::Ia3.as_str(), "IA3");
    assert_eq!(PeftType::from_name("IA3"), Some(PeftType::Ia3));
    assert_eq!(PeftType::from_name("ia3"), None);
    assert_eq!(PeftType::accepted(), "\"LORA\", \"IA3\"");
    assert_eq!(<Lora as Tuner>::PEFT_TYPE, PeftType::Lora);
    assert_eq!(<Ia3 as Tuner>::PEFT_TYPE, PeftType::Ia3);
    assert_eq!(<Ia3 as Tuner>::PREFIX, "ia3_");
}

#[test]
fn dispatcher_reads_lora_fixtures() {
    for fx in ["gpt2_a_lora", "gpt2_cls_lora", "llama_a_lora"] {
        let c = AdapterConfig::from_file(fixtures().join(fx)).unwrap();
        assert_eq!(c.peft_type(), PeftType::Lora);
        let want = LoraConfig::from_file(fixtures().join(fx)).unwrap();
        assert_eq!(c, AdapterConfig::Lora(want), "{fx}");
    }
    for fx in ["gpt2_a_ia3", "llama_a_ia3", "gpt2_a_ia3_re"] {
        let c = AdapterConfig::from_file(fixtures().join(fx)).unwrap();
        assert_eq!(c.peft_type(), PeftType::Ia3);
        let want = IA3Config::from_file(fixtures().join(fx)).unwrap();
        assert_eq!(c, AdapterConfig::Ia3(want), "{fx}");
    }
    // No peft_type: LoRA, as LoraConfig reads it.
    let d = dir_with_config(r#"{"r": 2, "target_modules": ["c_attn"]}"#);
    let c = AdapterConfig::from_file(d.path()).unwrap();
    assert_eq!(c.peft_type(), PeftType::Lora);
}

fn refused(json: &str) -> String {
    let d = dir_with_config(json);
    let e = AdapterConfig::from_file(d.path()).unwrap_err();
    assert!(matches!(e, PeftError::UnsupportedPeftType { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains("adapter_config.json"), "{m}");
    assert!(m.contains("peft_type"), "{m}");
    assert!(m.contains("accepted values: \"LORA\", \"IA3\""), "{m}");
    // tuners::load refuses it the same way, before looking for the weights file.
    let mut model = Toy::<B>::new(&gpt2_cls_spec(), 1, &Default::default());
    let e2 = tuners::load(&mut model, d.path(), &Default::default()).unwrap_err();
    assert_eq!(e2.to_string(), m);
    m
}

#[test]
fn unknown_or_unimplemented_peft_type_is_refused_with_file_key_and_value() {
    let m = refused(r#"{"peft_type": "LOHA", "target_modules": ["c_attn"]}"#);
    assert!(
        m.contains("\"LOHA\"") && m.contains("does not implement yet"),
        "{m}"
    );
    let m = refused(r#"{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 20}"#);
    assert!(m.contains("\"PREFIX_TUNING\""), "{m}");
    let m = refused(r#"{"peft_type": "LORAX"}"#);
    assert!(
        m.contains("\"LORAX\"") && m.contains("not a PEFT method"),
        "{m}"
    );
    let m = refused(r#"{"peft_type": 3}"#);
    assert!(m.contains("= 3") && m.contains("expected a string"), "{m}");
}

#[test]
fn bad_json_names_the_file() {
    let d = dir_with_config("{not json");
    let e = AdapterConfig::from_file(d.path()).unwrap_err();
    assert!(matches!(e, PeftError::Json { .. }), "{e}");
    assert!(e.to_string().contains("adapter_config.json"), "{e}");
}

/// inject → save → load through the dispatcher is LoRA's apply/save/load, and
/// `state_dict_keys` lists exactly the keys written.
#[test]
fn lora_round_trip_through_the_seam() {
    let device = Default::default();
    let config = LoraConfig::from_json_str(
        r#"{"target_modules": ["c_attn", "c_fc"], "r": 2, "lora_alpha": 4,
        "init_lora_weights": false, "task_type": "SEQ_CLS"}"#,
        Path::new("<test>"),
    )
    .unwrap();
    let any = AdapterConfig::Lora(config.clone());
    let mut m = Toy::<B>::new(&gpt2_cls_spec(), 3, &device);
    let names = tuners::inject(&mut m, &any, &device).unwrap();
    assert_eq!(names.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    tuners::save(&m, &any, dir.path()).unwrap();

    let mut keys = Lora::state_dict_keys(&m, &config).unwrap();
    assert_eq!(keys.len(), 4 * 2 + 1, "{keys:?}");
    keys.sort();
    let file: Vec<String> = read_st(&dir.path().join("adapter_model.safetensors"))
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(keys, file);

    let mut fresh = Toy::<B>::new(&gpt2_cls_spec(), 3, &device);
    let loaded = tuners::load(&mut fresh, dir.path(), &device).unwrap();
    let AdapterConfig::Lora(c) = &loaded else {
        panic!("{loaded:?}")
    };
    assert_eq!(
        c.modules_to_save,
        Some(vec!["classifier".into(), "score".into()])
    );
    assert_eq!(fresh.outputs(&device), m.outputs(&device));
}
