//! `load_adapters`, the any-method loader of the `logits` and `generate` examples: every
//! fixture the reference libraries wrote (PEFT 0.21: DoRA, IA3, prefix and prompt tuning,
//! several LoRA adapters at once; AdapterHub 1.3: bottleneck) gives the reference logits through
//! it, merged where the method merges, and the combinations that cannot work are refused.

mod common;

use common::prompt::{gpt2, io, llama};
use common::{fixtures, max_abs_diff, to_vec, B};
use lora_models::LanguageModel;
use lora_peft::{adapter_kind, load_adapters, AdapterKind, PeftError, PeftType};
use std::path::PathBuf;

/// Max |our logits − the fixture's tensor `want`| with `dirs` (fixture names) loaded.
fn diff<M>(model: M, dirs: &[&str], merge: bool, io_of: &str, want: &str) -> f32
where
    M: LanguageModel<B> + burn::module::ModuleDisplay + lora_core::BottleneckLayers<B>,
{
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| fixtures().join(d)).collect();
    let m = load_adapters(model, &dirs, merge, &Default::default()).unwrap();
    let (ids, st) = io::<B>(io_of);
    let (want, _) = st.f32(want).unwrap();
    max_abs_diff(&to_vec(m.forward(ids)), &want)
}

#[test]
fn every_method_through_one_loader() {
    let cases: [(&str, bool, &str); 10] = [
        ("gpt2_a_dora", false, "logits"),
        ("gpt2_a_dora", true, "logits_merged"),
        ("gpt2_a_ia3", true, "logits_merged"),
        ("gpt2_a_prefix", false, "logits"),
        ("gpt2_a_prompt", false, "logits"),
        ("gpt2_a_seq_bn", false, "logits"),
        ("llama_a_dora", false, "logits"),
        ("llama_a_ia3", false, "logits"),
        ("llama_a_prefix_proj", false, "logits"),
        ("llama_a_double_seq_bn", false, "logits"),
    ];
    for (fx, merge, want) in cases {
        let d = if fx.starts_with("gpt2") {
            diff(gpt2::<B>(), &[fx], merge, fx, want)
        } else {
            diff(llama::<B>(), &[fx], merge, fx, want)
        };
        println!("{fx} (merge {merge}): max |logits − reference| = {d:.2e}");
        assert!(d <= 1e-4, "{fx}: {d}");
    }
}

#[test]
fn several_lora_adapters_add() {
    let ab = ["gpt2_a_multi", "gpt2_a_multi/b"];
    let d = diff(gpt2::<B>(), &ab, false, "gpt2_a_multi", "logits_ab");
    assert!(d <= 1e-4, "{d}");
    let d = diff(gpt2::<B>(), &ab, true, "gpt2_a_multi", "logits_ab");
    assert!(d <= 1e-4, "merged: {d}");
    let ab = ["llama_a_multi", "llama_a_multi/b"];
    let d = diff(llama::<B>(), &ab, false, "llama_a_multi", "logits_ab");
    assert!(d <= 1e-4, "{d}");
}

#[test]
fn kinds_are_read_from_the_configs() {
    let k = |fx: &str| adapter_kind(&fixtures().join(fx)).unwrap();
    assert_eq!(k("gpt2_a_lora"), AdapterKind::Peft(PeftType::Lora));
    assert_eq!(k("gpt2_a_dora"), AdapterKind::Peft(PeftType::Lora));
    assert_eq!(k("gpt2_a_ia3"), AdapterKind::Peft(PeftType::Ia3));
    assert_eq!(
        k("gpt2_a_prefix"),
        AdapterKind::Peft(PeftType::PrefixTuning)
    );
    assert_eq!(
        k("gpt2_a_prompt"),
        AdapterKind::Peft(PeftType::PromptTuning)
    );
    assert_eq!(k("gpt2_a_seq_bn"), AdapterKind::Bottleneck);
    assert!(k("gpt2_a_ia3").mergeable() && !k("gpt2_a_prefix").mergeable());
}

#[test]
fn impossible_combinations_are_refused() {
    let load = |dirs: &[&str], merge: bool| {
        let dirs: Vec<PathBuf> = dirs.iter().map(|d| fixtures().join(d)).collect();
        load_adapters(gpt2::<B>(), &dirs, merge, &Default::default()).map(|_| ())
    };
    for (dirs, merge, words) in [
        (
            &["gpt2_a_prefix"][..],
            true,
            ["gpt2_a_prefix", "PREFIX_TUNING"],
        ),
        (
            &["gpt2_a_seq_bn"][..],
            true,
            ["gpt2_a_seq_bn", "bottleneck"],
        ),
        (
            &["gpt2_a_multi", "gpt2_a_ia3"][..],
            false,
            ["gpt2_a_ia3", "IA3"],
        ),
        (
            &["gpt2_a_prompt", "gpt2_a_multi"][..],
            false,
            ["gpt2_a_prompt", "PROMPT_TUNING"],
        ),
    ] {
        let e = load(dirs, merge).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, PeftError::State(_)), "{m}");
        assert!(words.iter().all(|w| m.contains(w)), "{m}");
    }
    // A prefix made for GPT-2 does not fit the GQA Llama: refused with the field named.
    let dirs = [fixtures().join("gpt2_a_prefix")];
    let e = load_adapters(llama::<B>(), &dirs, false, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("gpt2_a_prefix"), "{e}");
}
