//! `LoraConfig`: PEFT defaults, reading PEFT-written files, round trips and validation.
mod common;

use lora_core::LoraInit;
use lora_peft::{
    AdapterConfig, InitLoraWeights, LayersToTransform, LoraConfig, PatternMap, PeftError, PeftType,
    StringOrList, TargetModules,
};
use serde_json::Value;
use std::path::Path;

/// Written by PEFT 0.21.2: `LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"])
/// .save_pretrained(...)`.
const PEFT_WRITTEN: &str = r#"{
  "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null,
  "auto_mapping": null, "base_model_name_or_path": null, "bias": "none",
  "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
  "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": false,
  "init_lora_weights": true, "kasa_config": null, "layer_replication": null,
  "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
  "lora_alpha": 8, "lora_bias": false, "lora_dropout": 0.0, "lora_ga_config": null,
  "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": null,
  "monteclora_config": null, "peft_type": "LORA", "peft_version": "0.21.2",
  "qalora_group_size": 16, "r": 4, "rank_pattern": {}, "revision": null,
  "target_modules": ["c_attn"], "target_parameters": null, "task_type": null,
  "trainable_token_indices": null, "use_bdlora": null, "use_dora": false,
  "use_qalora": false, "use_rslora": false, "velora_config": null
}"#;

fn parse(s: &str) -> LoraConfig {
    LoraConfig::from_json_str(s, Path::new("<test>")).unwrap()
}

#[test]
fn defaults_are_peft_defaults() {
    // PEFT 0.21 LoraConfig(): r=8, lora_alpha=8, lora_dropout=0.0, bias="none",
    // init_lora_weights=True, use_rslora=False, fan_in_fan_out=False, target_modules=None.
    let c = LoraConfig::default();
    assert_eq!((c.r, c.lora_alpha, c.lora_dropout), (8, 8.0, 0.0));
    assert_eq!(c.bias, "none");
    assert_eq!(c.peft_type, "LORA");
    assert_eq!(c.init_lora_weights, InitLoraWeights::Bool(true));
    assert!(!c.use_rslora && !c.fan_in_fan_out && !c.use_dora && c.target_modules.is_none());
    // An empty JSON object gets the same defaults.
    assert_eq!(parse("{}"), c);
    c.validate().unwrap();
}

#[test]
fn reads_peft_written_config_and_keeps_extra_fields() {
    let c = parse(PEFT_WRITTEN);
    assert_eq!(c.r, 4);
    assert_eq!(c.lora_alpha, 8.0);
    assert_eq!(
        c.target_modules,
        Some(TargetModules::List(vec!["c_attn".into()]))
    );
    assert_eq!(c.extra["peft_version"], Value::from("0.21.2"));
    assert_eq!(c.extra["megatron_core"], Value::from("megatron.core"));
    assert_eq!(c.extra["qalora_group_size"], Value::from(16));
    c.validate().unwrap();

    // Written back: every field PEFT wrote is there with the same value.
    let back: serde_json::Map<String, Value> = serde_json::from_str(&c.to_json_string()).unwrap();
    let orig: serde_json::Map<String, Value> = serde_json::from_str(PEFT_WRITTEN).unwrap();
    for (k, v) in &orig {
        assert_eq!(back.get(k), Some(v), "field {k}");
    }
    assert_eq!(back.len(), orig.len());
    assert_eq!(parse(&c.to_json_string()), c);
}

#[test]
fn round_trip_of_every_field_kind() {
    let c = LoraConfig {
        task_type: Some("SEQ_CLS".into()),
        r: 16,
        lora_alpha: 12.5,
        lora_dropout: 0.05,
        target_modules: Some(TargetModules::Pattern(r".*\.(q|v)_proj".into())),
        exclude_modules: Some(TargetModules::List(vec!["lm_head".into()])),
        use_rslora: true,
        init_lora_weights: InitLoraWeights::Name("gaussian".into()),
        modules_to_save: Some(vec!["score".into()]),
        rank_pattern: PatternMap(vec![("z_proj".into(), 2), ("a_proj".into(), 3)]),
        alpha_pattern: PatternMap(vec![("q_proj".into(), 4.0), ("k".into(), 0.5)]),
        base_model_name_or_path: Some("x/y".into()),
        ..LoraConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = c.save(dir.path()).unwrap();
    assert_eq!(path.file_name().unwrap(), "adapter_config.json");
    let back = LoraConfig::from_file(dir.path()).unwrap();
    assert_eq!(back, c);
    // Pattern order is preserved (PEFT uses the first matching key), integral alpha written as int.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.find("\"z_proj\"").unwrap() < text.find("\"a_proj\"").unwrap());
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["alpha_pattern"]["q_proj"], Value::from(4));
    assert_eq!(v["lora_alpha"], Value::from(12.5));
    // No temp files are left next to it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let c2 = LoraConfig {
        layers_to_transform: Some(LayersToTransform::List(vec![0, 2])),
        layers_pattern: Some(StringOrList::One("layers".into())),
        target_modules: Some(TargetModules::List(vec!["q_proj".into()])),
        ..LoraConfig::default()
    };
    assert_eq!(parse(&c2.to_json_string()), c2);
    let c3 = parse(
        r#"{"layers_to_transform": 3, "layers_pattern": ["h", "layers"], "rank_pattern": null}"#,
    );
    assert_eq!(c3.layers_to_transform, Some(LayersToTransform::One(3)));
    assert_eq!(
        c3.layers_pattern,
        Some(StringOrList::List(vec!["h".into(), "layers".into()]))
    );
    assert!(c3.rank_pattern.is_empty());
}

/// `(dir, r, alpha, fan_in_fan_out, use_rslora, task_type)` of a fixture config.
type FixtureConfig = (&'static str, usize, f64, bool, bool, Option<&'static str>);

#[test]
fn reads_every_fixture_config() {
    let fx = common::fixtures();
    let expect: &[FixtureConfig] = &[
        // (dir, r, alpha, fan_in_fan_out, use_rslora, task_type)
        ("gpt2_a_lora", 4, 8.0, true, false, None),
        ("gpt2_a_lora_rs", 8, 16.0, true, true, None),
        ("llama_a_lora", 4, 8.0, false, false, None),
        ("gpt2_cls_lora", 4, 8.0, true, false, Some("SEQ_CLS")),
        ("llama_cls_lora", 4, 8.0, false, false, Some("SEQ_CLS")),
        ("gpt2_a_dora", 4, 8.0, true, false, None),
        ("llama_a_dora", 4, 8.0, false, false, None),
        ("gpt2_a_multi", 3, 6.0, true, false, None),
        ("llama_a_multi", 3, 6.0, false, false, None),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(&fx).unwrap() {
        let p = entry.unwrap().path().join("adapter_config.json");
        // AdapterHub bottleneck adapters (tests/bottleneck.rs) are not PEFT configs.
        let adapterhub = p.exists() && {
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            lora_peft::tuners::bottleneck::is_adapterhub_config(&v)
        };
        // Only the LoRA fixtures (other methods' configs are checked by their own tests).
        if p.exists()
            && !adapterhub
            && AdapterConfig::from_file(&p).unwrap().peft_type() == PeftType::Lora
        {
            let c = LoraConfig::from_file(&p).unwrap();
            c.validate().unwrap();
            assert_eq!(parse(&c.to_json_string()), c, "{}", p.display());
            seen += 1;
        }
    }
    assert_eq!(seen, expect.len());
    for (d, r, alpha, fifo, rs, task) in expect {
        let c = LoraConfig::from_file(fx.join(d)).unwrap();
        assert_eq!(c.r, *r, "{d}");
        assert_eq!(c.lora_alpha, *alpha, "{d}");
        assert_eq!(c.fan_in_fan_out, *fifo, "{d}");
        assert_eq!(c.use_rslora, *rs, "{d}");
        assert_eq!(c.task_type.as_deref(), *task, "{d}");
        assert_eq!(c.init_lora_weights, InitLoraWeights::Bool(false), "{d}");
    }
    let c = LoraConfig::from_file(fx.join("gpt2_a_lora")).unwrap();
    let mut t = match c.target_modules.unwrap() {
        TargetModules::List(l) => l,
        other => panic!("{other:?}"),
    };
    t.sort();
    assert_eq!(t, ["c_attn", "c_fc", "c_proj"]);
    let c = LoraConfig::from_file(fx.join("gpt2_a_lora_rs")).unwrap();
    assert_eq!(
        c.target_modules,
        Some(TargetModules::Pattern(r".*\.1\.attn\.c_attn".into()))
    );
    let c = LoraConfig::from_file(fx.join("gpt2_cls_lora")).unwrap();
    let mut m = c.modules_to_save.unwrap();
    m.sort();
    assert_eq!(m, ["classifier", "score"]);
}

fn err_of(json: &str) -> String {
    let e = parse(json).validate().unwrap_err();
    e.to_string()
}

#[test]
fn validation_names_field_and_value() {
    let e = err_of(r#"{"r": 0}"#);
    assert!(e.contains("r = 0"), "{e}");
    let e = err_of(r#"{"lora_dropout": 1.0}"#);
    assert!(e.contains("lora_dropout = 1"), "{e}");
    let e = err_of(r#"{"lora_dropout": -0.1}"#);
    assert!(e.contains("lora_dropout = -0.1"), "{e}");
    let e = err_of(r#"{"bias": "all"}"#);
    assert!(
        e.contains("bias = \"all\"") && e.contains("not supported yet"),
        "{e}"
    );
    let e = err_of(r#"{"bias": "lora_only"}"#);
    assert!(
        e.contains("\"lora_only\"") && e.contains("not supported yet"),
        "{e}"
    );
    let e = err_of(r#"{"bias": "some"}"#);
    assert!(
        e.contains("bias = \"some\"") && e.contains("expected"),
        "{e}"
    );
    for init in ["pissa", "olora", "loftq", "pissa_niter_4", "eva", "corda"] {
        let e = err_of(&format!(r#"{{"init_lora_weights": "{init}"}}"#));
        assert!(
            e.contains(&format!("\"{init}\"")) && e.contains("not supported"),
            "{e}"
        );
    }
    let e = err_of(r#"{"init_lora_weights": "bogus"}"#);
    assert!(e.contains("\"bogus\""), "{e}");
    let e = err_of(r#"{"use_dora": true, "lora_bias": true}"#);
    assert!(e.contains("lora_bias") && e.contains("DoRA"), "{e}");
    let e = err_of(r#"{"lora_bias": true}"#);
    assert!(e.contains("lora_bias"), "{e}");
    let e = err_of(r#"{"peft_type": "IA3"}"#);
    assert!(e.contains("peft_type") && e.contains("IA3"), "{e}");
    let e = err_of(r#"{"use_qalora": true}"#);
    assert!(e.contains("use_qalora"), "{e}");
    let e = err_of(r#"{"layer_replication": [[0, 2]]}"#);
    assert!(e.contains("layer_replication"), "{e}");
    let e = err_of(r#"{"target_modules": "q.*", "layers_to_transform": [0]}"#);
    assert!(e.contains("layers_to_transform"), "{e}");
    let e = err_of(r#"{"target_modules": ["q"], "layers_pattern": "h"}"#);
    assert!(e.contains("layers_pattern"), "{e}");
    let e = err_of(r#"{"target_modules": "all-linear", "layers_to_transform": 1}"#);
    assert!(e.contains("layers_to_transform"), "{e}");
    let e = err_of(r#"{"target_modules": "(unclosed"}"#);
    assert!(
        e.contains("target_modules") && e.contains("(unclosed"),
        "{e}"
    );
    let e = err_of(r#"{"rank_pattern": {"q_proj": 0}}"#);
    assert!(e.contains("rank_pattern"), "{e}");
    // Switched-off variant fields as PEFT writes them are fine.
    parse(PEFT_WRITTEN).validate().unwrap();
    // gaussian maps to the layer's gaussian init.
    assert_eq!(
        InitLoraWeights::Name("gaussian".into())
            .to_lora_init()
            .unwrap(),
        LoraInit::Gaussian
    );
    assert_eq!(
        InitLoraWeights::Bool(false).to_lora_init().unwrap(),
        LoraInit::NoZero
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = LoraConfig::from_file(dir.path()).unwrap_err();
    assert!(matches!(e, PeftError::Io { .. }));
    assert!(e.to_string().contains("adapter_config.json"), "{e}");
    let p = dir.path().join("adapter_config.json");
    std::fs::write(&p, r#"{"r": -1}"#).unwrap();
    let e = LoraConfig::from_file(&p).unwrap_err();
    assert!(matches!(e, PeftError::Json { .. }));
    assert!(e.to_string().contains("adapter_config.json"), "{e}");
    std::fs::write(&p, r#"{"r": 4, "#).unwrap();
    assert!(matches!(
        LoraConfig::from_file(&p).unwrap_err(),
        PeftError::Json { .. }
    ));
}
