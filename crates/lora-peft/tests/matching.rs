//! Target matching. Expected name lists were produced by PEFT 0.21.2's own
//! `check_target_module_exists` / `get_peft_model` on the same module names (see the comments).
mod common;

use common::{count_layer, gpt2_cls_spec, Toy, AB, B};
use lora_core::NamedLinears;
use lora_peft::{apply_lora, resolve_targets, LoraConfig, PatternMap, PeftError, TargetModules};

fn names() -> Vec<String> {
    gpt2_cls_spec().iter().map(|s| s.0.to_string()).collect()
}

fn cfg(json: &str) -> LoraConfig {
    LoraConfig::from_json_str(json, std::path::Path::new("<test>")).unwrap()
}

fn targets(json: &str) -> Vec<String> {
    resolve_targets(&names(), &cfg(json))
        .unwrap_or_else(|e| panic!("{json}: {e}"))
        .target_names()
}

fn h(layer: usize, m: &str) -> String {
    format!("transformer.h.{layer}.{m}")
}

#[test]
fn list_suffix_and_exact() {
    // PEFT: ['c_attn','c_proj'] -> attn.c_attn, attn.c_proj, mlp.c_proj of both layers.
    assert_eq!(
        targets(r#"{"target_modules": ["c_attn", "c_proj"]}"#),
        [
            h(0, "attn.c_attn"),
            h(0, "attn.c_proj"),
            h(0, "mlp.c_proj"),
            h(1, "attn.c_attn"),
            h(1, "attn.c_proj"),
            h(1, "mlp.c_proj")
        ]
    );
    // Suffix on a "." boundary and the exact full name.
    assert_eq!(
        targets(r#"{"target_modules": ["h.0.attn.c_attn"]}"#),
        [h(0, "attn.c_attn")]
    );
    assert_eq!(
        targets(r#"{"target_modules": ["transformer.h.0.attn.c_attn"]}"#),
        [h(0, "attn.c_attn")]
    );
    // PEFT applies layers_to_transform only to suffix matches: an exact name is kept.
    assert_eq!(
        targets(
            r#"{"target_modules": ["transformer.h.0.attn.c_attn"], "layers_to_transform": [1]}"#
        ),
        [h(0, "attn.c_attn")]
    );
    // Top-level layers match by exact name.
    assert_eq!(
        targets(r#"{"target_modules": ["score", "lm_head"]}"#),
        ["lm_head", "score"]
    );
}

#[test]
fn regex_is_full_match() {
    assert_eq!(
        targets(r#"{"target_modules": ".*\\.1\\.attn\\.c_attn"}"#),
        [h(1, "attn.c_attn")]
    );
    // "c_attn" as a regex must match the whole name: PEFT matches nothing.
    let e = resolve_targets(&names(), &cfg(r#"{"target_modules": "c_attn"}"#)).unwrap_err();
    assert!(matches!(e, PeftError::NoMatch { .. }), "{e}");
    assert_eq!(
        targets(r#"{"target_modules": ".*(c_fc|lm_head)"}"#),
        [h(0, "mlp.c_fc"), h(1, "mlp.c_fc"), "lm_head".into()]
    );
}

#[test]
fn layers_to_transform_and_pattern() {
    // PEFT: ['c_fc','c_proj'], layers_to_transform=1 -> layer 1 only.
    assert_eq!(
        targets(r#"{"target_modules": ["c_fc", "c_proj"], "layers_to_transform": 1}"#),
        [h(1, "attn.c_proj"), h(1, "mlp.c_fc"), h(1, "mlp.c_proj")]
    );
    assert_eq!(
        targets(
            r#"{"target_modules": ["c_fc", "c_proj"], "layers_to_transform": [0], "layers_pattern": "h"}"#
        ),
        [h(0, "attn.c_proj"), h(0, "mlp.c_fc"), h(0, "mlp.c_proj")]
    );
    // An empty list means no filter.
    assert_eq!(
        targets(r#"{"target_modules": ["c_fc"], "layers_to_transform": []}"#).len(),
        2
    );
    // Wrong pattern: PEFT matches nothing; the error says why.
    let e = resolve_targets(
        &names(),
        &cfg(r#"{"target_modules": ["c_fc", "c_proj"], "layers_to_transform": [0], "layers_pattern": "layers"}"#),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PeftError::NoMatch { .. }));
    assert!(
        msg.contains("layers_to_transform = [0]") && msg.contains("\"layers\""),
        "{msg}"
    );
    // The default layer pattern takes the FIRST numbered segment (PEFT 0.21's lazy regex).
    let nested: Vec<String> = ["model.layers.1.experts.0.w1", "model.layers.0.experts.1.w1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let c = cfg(r#"{"target_modules": ["w1"], "layers_to_transform": [1]}"#);
    assert_eq!(
        resolve_targets(&nested, &c).unwrap().target_names(),
        ["model.layers.1.experts.0.w1"]
    );
}

#[test]
fn exclusions() {
    // PEFT: ['c_proj'] with exclude ['attn.c_proj'] -> the two mlp.c_proj.
    assert_eq!(
        targets(r#"{"target_modules": ["c_proj"], "exclude_modules": ["attn.c_proj"]}"#),
        [h(0, "mlp.c_proj"), h(1, "mlp.c_proj")]
    );
    // Regex exclusion (full match).
    assert_eq!(
        targets(r#"{"target_modules": ["c_proj"], "exclude_modules": ".*h\\.0.*"}"#),
        [h(1, "attn.c_proj"), h(1, "mlp.c_proj")]
    );
    // modules_to_save layers are never adapted.
    let plan = resolve_targets(
        &names(),
        &cfg(r#"{"target_modules": ["c_attn", "score"], "modules_to_save": ["score"]}"#),
    )
    .unwrap();
    assert_eq!(
        plan.target_names(),
        [h(0, "attn.c_attn"), h(1, "attn.c_attn")]
    );
    assert_eq!(plan.modules_to_save, ["score"]);
    // Everything excluded -> error that says so.
    let e = resolve_targets(
        &names(),
        &cfg(r#"{"target_modules": ["c_fc"], "exclude_modules": ["c_fc"]}"#),
    )
    .unwrap_err();
    assert!(e.to_string().contains("2 matching layers excluded"), "{e}");
}

#[test]
fn all_linear_skips_output_layer() {
    // PEFT on GPT2LMHeadModel: all 8 block linears, not lm_head.
    let mut expect: Vec<String> = names()[..8].to_vec();
    expect.push("score".into());
    assert_eq!(targets(r#"{"target_modules": "all-linear"}"#), expect);
    assert_eq!(targets(r#"{"target_modules": "ALL-LINEAR"}"#), expect);
    // SEQ_CLS: the head is neither adapted (all-linear) nor missing from modules_to_save.
    let plan = resolve_targets(
        &names(),
        &cfg(r#"{"target_modules": "all-linear", "task_type": "SEQ_CLS"}"#),
    )
    .unwrap();
    assert_eq!(plan.target_names(), names()[..8].to_vec());
    assert_eq!(plan.modules_to_save, ["score"]);
}

#[test]
fn default_targets_per_architecture() {
    // PEFT's default for GPT-2 is ["c_attn"], for Llama ["q_proj", "v_proj"].
    assert_eq!(targets("{}"), [h(0, "attn.c_attn"), h(1, "attn.c_attn")]);
    let llama: Vec<String> = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .iter()
        .map(|m| format!("model.layers.0.self_attn.{m}"))
        .collect();
    let p = resolve_targets(&llama, &LoraConfig::default()).unwrap();
    assert_eq!(p.target_names(), [llama[0].clone(), llama[2].clone()]);
    let e = resolve_targets(&["fc".to_string()], &LoraConfig::default()).unwrap_err();
    assert!(e.to_string().contains("target_modules = null"), "{e}");
}

#[test]
fn rank_and_alpha_patterns() {
    // PEFT 0.21.2 on GPT2LMHeadModel with r=2, target [c_attn, c_proj],
    // rank_pattern {"c_proj": 3, "h.0.attn.c_attn": 5}, alpha_pattern {"mlp.c_proj": 7}:
    //   h.0.attn.c_attn r5 a8 s1.6 | h.0.attn.c_proj r3 a8 | h.0.mlp.c_proj r3 a7 s2.333
    //   h.1.attn.c_attn r2 a8 s4.0 | h.1.attn.c_proj r3 a8 | h.1.mlp.c_proj r3 a7
    let c = LoraConfig {
        r: 2,
        target_modules: Some(TargetModules::List(vec!["c_attn".into(), "c_proj".into()])),
        rank_pattern: PatternMap(vec![("c_proj".into(), 3), ("h.0.attn.c_attn".into(), 5)]),
        alpha_pattern: PatternMap(vec![("mlp.c_proj".into(), 7.0)]),
        ..LoraConfig::default()
    };
    let plan = resolve_targets(&names(), &c).unwrap();
    let got: Vec<(String, usize, f64, f64)> = plan
        .targets
        .iter()
        .map(|(n, l)| (n.clone(), l.r, l.lora_alpha, l.scaling().unwrap()))
        .collect();
    let expect = [
        (h(0, "attn.c_attn"), 5, 8.0, 1.6),
        (h(0, "attn.c_proj"), 3, 8.0, 8.0 / 3.0),
        (h(0, "mlp.c_proj"), 3, 7.0, 7.0 / 3.0),
        (h(1, "attn.c_attn"), 2, 8.0, 4.0),
        (h(1, "attn.c_proj"), 3, 8.0, 8.0 / 3.0),
        (h(1, "mlp.c_proj"), 3, 7.0, 7.0 / 3.0),
    ];
    assert_eq!(got.len(), expect.len());
    for (g, e) in got.iter().zip(&expect) {
        assert_eq!((&g.0, g.1, g.2), (&e.0, e.1, e.2));
        assert!((g.3 - e.3).abs() < 1e-12, "{g:?} vs {e:?}");
    }
    // First key in file order wins.
    let c2 = LoraConfig {
        rank_pattern: PatternMap(vec![("h.0.attn.c_attn".into(), 5), ("c_attn".into(), 6)]),
        ..c
    };
    let plan = resolve_targets(&names(), &c2).unwrap();
    assert_eq!(plan.targets[0].1.r, 5);
    assert_eq!(plan.targets[3].1.r, 6);
}

#[test]
fn unmatched_targets_list_the_model_layers() {
    for json in [
        r#"{"target_modules": ["q_proj"]}"#,
        r#"{"target_modules": ["attn"]}"#,
        r#"{"target_modules": ["c_"]}"#,
    ] {
        let e = resolve_targets(&names(), &cfg(json)).unwrap_err();
        let msg = e.to_string();
        match &e {
            PeftError::NoMatch { shown, count, .. } => {
                assert_eq!(*count, 10);
                assert_eq!(shown.len(), 10);
            }
            other => panic!("{other}"),
        }
        assert!(
            msg.contains("transformer.h.0.attn.c_attn") && msg.contains("10 linear layers"),
            "{msg}"
        );
    }
    // One entry of several matching nothing is an error too (never skipped silently).
    let e =
        resolve_targets(&names(), &cfg(r#"{"target_modules": ["c_attn", "wte"]}"#)).unwrap_err();
    assert!(e.to_string().contains("\"wte\""), "{e}");
    // Many layers: the first 20 are shown and the rest counted.
    let many: Vec<String> = (0..30).map(|i| format!("m.layers.{i}.fc")).collect();
    let e = resolve_targets(&many, &cfg(r#"{"target_modules": ["x"]}"#)).unwrap_err();
    assert!(e.to_string().contains("and 10 more"), "{e}");
    // modules_to_save naming nothing.
    let e = resolve_targets(
        &names(),
        &cfg(r#"{"target_modules": ["c_attn"], "modules_to_save": ["wte"]}"#),
    )
    .unwrap_err();
    assert!(matches!(e, PeftError::ModulesToSaveNoMatch { .. }), "{e}");
}

#[test]
fn apply_attaches_exactly_the_matched_layers() {
    let device = Default::default();
    let mut m = Toy::<B>::new(&gpt2_cls_spec(), 1, &device);
    let before = m.outputs(&device);
    let mut c = cfg(r#"{"target_modules": ["c_attn", "c_fc"], "r": 3, "lora_alpha": 6}"#);
    // Default init: B = 0, the adapted model computes the same outputs.
    let got = apply_lora(&mut m, &c, &device).unwrap();
    assert_eq!(
        got,
        [
            h(0, "attn.c_attn"),
            h(0, "mlp.c_fc"),
            h(1, "attn.c_attn"),
            h(1, "mlp.c_fc")
        ]
    );
    let mut with = Vec::new();
    m.visit_linears(&mut |n, l| {
        if let Some(a) = l.adapter() {
            assert_eq!(a.r(), 3);
            assert_eq!(a.scaling(), 2.0);
            with.push(n.to_string());
        }
    });
    assert_eq!(with, got);
    let after = m.outputs(&device);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(common::max_abs_diff(a, b), 0.0);
    }
    // init_lora_weights=false changes the outputs of the adapted layers only.
    c.init_lora_weights = lora_peft::InitLoraWeights::Bool(false);
    let mut m2 = Toy::<B>::new(&gpt2_cls_spec(), 1, &device);
    apply_lora(&mut m2, &c, &device).unwrap();
    let after2 = m2.outputs(&device);
    for (i, (a, b)) in before.iter().zip(&after2).enumerate() {
        let d = common::max_abs_diff(a, b);
        let adapted = got.contains(&m2.names[i]);
        assert_eq!(d > 1e-4, adapted, "{} diff {d}", m2.names[i]);
    }
}

#[test]
fn apply_makes_modules_to_save_trainable() {
    let device = Default::default();
    let mut m = Toy::<AB>::new(&gpt2_cls_spec(), 2, &device);
    assert_eq!(count_layer(&m.layers[9]).trainable, 0);
    let c = cfg(r#"{"target_modules": ["c_attn"], "r": 2, "task_type": "SEQ_CLS"}"#);
    apply_lora(&mut m, &c, &device).unwrap();
    // score: 48×2 weight, no bias, now trainable; lm_head stays frozen.
    let score = count_layer(&m.layers[9]);
    assert_eq!((score.trainable, score.all), (96, 96));
    assert_eq!(count_layer(&m.layers[8]).trainable, 0);
    // c_attn: frozen base 48×144+144, trainable A 48×2 + B 2×144.
    let attn = count_layer(&m.layers[0]);
    assert_eq!(
        (attn.trainable, attn.all),
        (96 + 288, 48 * 144 + 144 + 96 + 288)
    );
}
