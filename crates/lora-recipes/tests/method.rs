//! The method configs `finetune --method` builds from its flags (closed forms: which layers,
//! which fields), and a few steps of each method on a tiny GPT-2 classifier.

mod common;

use common::finetune_opts;
use lora_peft::tuners::bottleneck::ReductionFactor;
use lora_peft::{LoraConfig, TargetModules};
use lora_recipes::{count_layers, lora_config, method_config, MethodConfig};

/// A 4-layer Llama's linear names.
fn names() -> Vec<String> {
    (0..4)
        .flat_map(|i| {
            ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]
                .map(|m| format!("model.layers.{i}.{m}"))
        })
        .collect()
}

fn config(flags: &[&str]) -> MethodConfig {
    let opts = finetune_opts(flags);
    let n = count_layers(&names());
    let lora: LoraConfig = lora_config(&opts, &["q_proj", "v_proj", "down_proj"], "m", n).unwrap();
    let encode = |t: &str| -> Result<Vec<u32>, lora_recipes::AnyError> {
        Ok(t.bytes().map(u32::from).collect())
    };
    method_config(&opts, lora, &names(), n, &encode).unwrap()
}

#[test]
fn lora_and_dora() {
    let MethodConfig::Lora(c) = config(&["--method", "lora"]) else {
        panic!()
    };
    assert!(!c.use_dora);
    let MethodConfig::Lora(c) = config(&["--method", "dora", "--r", "4"]) else {
        panic!()
    };
    assert!(c.use_dora && c.r == 4);
    assert!(config(&["--method", "dora"]).mergeable());
}

#[test]
fn ia3_targets_the_lora_layers_of_the_top_half() {
    let MethodConfig::Ia3(c) = config(&["--method", "ia3"]) else {
        panic!()
    };
    let (Some(TargetModules::Pattern(t)), Some(TargetModules::Pattern(ff))) =
        (&c.target_modules, &c.feedforward_modules)
    else {
        panic!("{c:?}")
    };
    let re = regex::Regex::new(&format!("^{t}$")).unwrap();
    let hit: Vec<String> = names().into_iter().filter(|n| re.is_match(n)).collect();
    let want: Vec<String> = names()
        .into_iter()
        .filter(|n| n.contains(".2.") || n.contains(".3."))
        .collect();
    assert_eq!(hit, want);
    let ff = regex::Regex::new(&format!("^{ff}$")).unwrap();
    let ffs: Vec<String> = names().into_iter().filter(|n| ff.is_match(n)).collect();
    assert_eq!(
        ffs,
        [
            "model.layers.2.mlp.down_proj",
            "model.layers.3.mlp.down_proj"
        ]
    );
    assert_eq!(c.task_type.as_deref(), Some("SEQ_CLS"));
    assert_eq!(c.modules_to_save, Some(vec!["score".to_string()]));
}

#[test]
fn prompt_learning_and_bottleneck_fields() {
    let MethodConfig::PrefixTuning(c) = config(&[
        "--method",
        "prefix-tuning",
        "--num-virtual-tokens",
        "7",
        "--prefix-projection",
    ]) else {
        panic!()
    };
    assert!(c.num_virtual_tokens == 7 && c.prefix_projection);
    let MethodConfig::PromptTuning(c, ids) = config(&[
        "--method",
        "prompt-tuning",
        "--prompt-tuning-init-text",
        "ab",
    ]) else {
        panic!()
    };
    assert_eq!(ids, Some(vec![97, 98]));
    assert_eq!(c.prompt_tuning_init_text.as_deref(), Some("ab"));
    let MethodConfig::PromptTuning(_, None) = config(&[
        "--method",
        "prompt-tuning",
        "--prompt-tuning-init",
        "random",
    ]) else {
        panic!()
    };
    let cfg = config(&[
        "--method",
        "bottleneck",
        "--reduction-factor",
        "8",
        "--layers",
        "1,3",
    ]);
    assert!(!cfg.mergeable());
    let MethodConfig::Bottleneck(c) = cfg else {
        panic!()
    };
    assert_eq!(c.leave_out, vec![0, 2]);
    assert_eq!(
        c.reduction_factor,
        ReductionFactor::Scalar(serde_json::Number::from_f64(8.0).unwrap())
    );
}

#[test]
fn bad_layers_for_bottleneck_are_refused() {
    let opts = finetune_opts(&["--method", "bottleneck", "--layers", "9"]);
    let lora = LoraConfig::new(8, 8.0, &["q_proj"]);
    let encode = |_: &str| -> Result<Vec<u32>, lora_recipes::AnyError> { Ok(vec![]) };
    let e = method_config(&opts, lora, &names(), 4, &encode).unwrap_err();
    assert!(e.to_string().contains("--layers: layer 9"), "{e}");
}
