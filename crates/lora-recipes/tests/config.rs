//! Layer lists, layer counting and the LoRA config built from the finetune options.

mod common;

use common::finetune_opts;
use lora_peft::{LayersToTransform, TargetModules};
use lora_recipes::{count_layers, lora_config, parse_layers};

#[test]
fn parse_layers_ranges_and_lists() {
    assert_eq!(
        parse_layers("15-29").unwrap(),
        (15..=29).collect::<Vec<_>>()
    );
    assert_eq!(parse_layers("28,29").unwrap(), vec![28, 29]);
    assert_eq!(parse_layers(" 1, 4-6 ,9").unwrap(), vec![1, 4, 5, 6, 9]);
    assert_eq!(parse_layers("3-3").unwrap(), vec![3]);
}

#[test]
fn parse_layers_errors_name_the_flag_and_part() {
    let e = parse_layers("5-3").unwrap_err().to_string();
    assert_eq!(e, "--layers: bad range \"5-3\"");
    let e = parse_layers("1,x").unwrap_err().to_string();
    assert_eq!(e, "--layers: bad layer index \"x\"");
    assert!(parse_layers("a-2").is_err());
}

#[test]
fn count_layers_from_llama_and_gpt2_names() {
    let llama: Vec<String> = [
        "model.layers.0.self_attn.q_proj",
        "model.layers.29.mlp.up_proj",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(count_layers(&llama), 30);
    let gpt2: Vec<String> = ["h.0.attn.c_attn", "h.11.mlp.c_fc", "lm_head"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(count_layers(&gpt2), 12);
    assert_eq!(count_layers(&["score".to_string()]), 0);
}

#[test]
fn default_config_is_top_half_seq_cls() {
    let opts = finetune_opts(&[]);
    let cfg = lora_config(&opts, &["q_proj", "v_proj"], "m.gguf", 30).unwrap();
    assert_eq!(cfg.r, 8);
    assert_eq!(cfg.lora_alpha, 16.0);
    assert_eq!(cfg.lora_dropout, 0.05);
    assert_eq!(
        cfg.layers_to_transform,
        Some(LayersToTransform::List((15..30).collect()))
    );
    assert_eq!(cfg.task_type.as_deref(), Some("SEQ_CLS"));
    assert_eq!(cfg.modules_to_save, Some(vec!["score".to_string()]));
    assert_eq!(cfg.base_model_name_or_path.as_deref(), Some("m.gguf"));
    assert!(!cfg.fan_in_fan_out);
    assert_eq!(
        cfg.target_modules,
        Some(TargetModules::from(&["q_proj", "v_proj"][..]))
    );
}

#[test]
fn gpt2_causal_lm_all_layers_and_targets() {
    let opts = finetune_opts(&[
        "--model",
        "gpt2",
        "--task",
        "causal-lm",
        "--layers",
        "all",
        "--target-modules",
        "c_attn, c_proj",
        "--r",
        "4",
        "--lora-alpha",
        "8",
    ]);
    let cfg = lora_config(&opts, &["c_attn"], "dir", 12).unwrap();
    assert!(cfg.fan_in_fan_out);
    assert_eq!(cfg.layers_to_transform, None);
    assert_eq!(cfg.task_type.as_deref(), Some("CAUSAL_LM"));
    assert_eq!(cfg.modules_to_save, None);
    assert_eq!((cfg.r, cfg.lora_alpha), (4, 8.0));
    assert_eq!(
        cfg.target_modules,
        Some(TargetModules::from(&["c_attn", "c_proj"][..]))
    );
}

#[test]
fn single_name_is_a_list_and_anything_else_a_regex() {
    let one = finetune_opts(&["--target-modules", "q_proj", "--layers", "1,3"]);
    let cfg = lora_config(&one, &["x"], "m", 4).unwrap();
    assert_eq!(
        cfg.target_modules,
        Some(TargetModules::from(&["q_proj"][..]))
    );
    assert_eq!(
        cfg.layers_to_transform,
        Some(LayersToTransform::List(vec![1, 3]))
    );
    // A regex selects layers itself: PEFT refuses layers_to_transform beside it.
    let re = finetune_opts(&["--target-modules", r".*\.(q|v)_proj", "--layers", "all"]);
    let cfg = lora_config(&re, &["x"], "m", 4).unwrap();
    assert_eq!(
        cfg.target_modules,
        Some(TargetModules::Pattern(r".*\.(q|v)_proj".into()))
    );
}

#[test]
fn bad_layers_flag_fails_the_config() {
    let opts = finetune_opts(&["--layers", "9-2"]);
    let e = lora_config(&opts, &["q_proj"], "m", 10).unwrap_err();
    assert!(e.to_string().contains("--layers"), "{e}");
}
