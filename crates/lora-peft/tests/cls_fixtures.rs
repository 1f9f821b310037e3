//! Sequence classification (transformers `GPT2ForSequenceClassification` /
//! `LlamaForSequenceClassification`, PEFT task_type SEQ_CLS with `score` in modules_to_save):
//! base logits and PEFT-adapter logits equal the fixtures written by transformers + PEFT
//! (`tests/fixtures/make_fixtures.py`) within 1e-4; our saved adapter has PEFT's keys.
mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{fixtures, max_abs_diff, to_vec, B};
use lora_models::classify::SequenceClassifier;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{load_adapter, save_adapter};

const TOL: f32 = 1e-4;

/// input_ids, lengths (from attention_mask), logits of an io.safetensors.
fn io(fx: &str) -> (Tensor<B, 2, Int>, Vec<usize>, Vec<f32>) {
    let st = StFile::open(fixtures().join(fx).join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let (mask, _) = st.i64("attention_mask").unwrap();
    let lengths = mask
        .chunks(shape[1])
        .map(|r| r.iter().filter(|&&m| m == 1).count())
        .collect();
    let (logits, lshape) = st.f32("logits").unwrap();
    assert_eq!(lshape, vec![shape[0], 2]);
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, lengths, logits)
}

fn check<M: LanguageModel<B>>(clf: SequenceClassifier<B, M>, base_fx: &str, lora_fx: &str) {
    let device = Default::default();
    // Base model + its own score head = transformers' logits.
    let (ids, lengths, want) = io(base_fx);
    assert_eq!(
        lengths,
        vec![8, 5, 3],
        "fixture rows are right-padded to lengths 8, 5, 3"
    );
    let got = to_vec(clf.forward(ids.clone(), &lengths));
    let d = max_abs_diff(&got, &want);
    println!("{base_fx}: classification logits max |diff| vs transformers = {d:e}");
    assert!(d < TOL, "{base_fx}: {d}");

    // + PEFT's SEQ_CLS adapter (LoRA + re-randomised score) = PEFT's logits.
    let mut clf = clf;
    let (ids2, lengths2, want2) = io(lora_fx);
    let cfg = load_adapter(&mut clf, &fixtures().join(lora_fx), &device).unwrap();
    assert_eq!(cfg.task_type.as_deref(), Some("SEQ_CLS"));
    let got2 = to_vec(clf.forward(ids2.clone(), &lengths2));
    let d2 = max_abs_diff(&got2, &want2);
    let moved = max_abs_diff(&got, &want2);
    println!("{lora_fx}: logits max |diff| vs PEFT = {d2:e} (adapter moves them by {moved:e})");
    assert!(d2 < TOL, "{lora_fx}: {d2}");
    assert!(moved > 100.0 * TOL, "the adapter must change the logits");

    // Saved again: exactly PEFT's key set and shapes (score as base_model.model.score.weight).
    let tmp = tempfile::tempdir().unwrap();
    save_adapter(&clf, &cfg, tmp.path()).unwrap();
    let ours = StFile::open(tmp.path().join("adapter_model.safetensors")).unwrap();
    let theirs = StFile::open(fixtures().join(lora_fx).join("adapter_model.safetensors")).unwrap();
    let mut a = ours.names();
    let mut b = theirs.names();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(a.contains(&"base_model.model.score.weight".to_string()));
    for k in &a {
        let (va, sa) = ours.f32(k).unwrap();
        let (vb, sb) = theirs.f32(k).unwrap();
        assert_eq!(sa, sb, "{k}");
        assert!(max_abs_diff(&va, &vb) == 0.0, "{k} must round-trip exactly");
    }
}

#[test]
fn gpt2_sequence_classification_matches_transformers_and_peft() {
    let dir = fixtures().join("gpt2_cls");
    let (m, _) = Gpt2::<B>::load(&dir, &Default::default()).unwrap();
    let clf = SequenceClassifier::load_score(m, &dir, &Default::default()).unwrap();
    assert_eq!(clf.num_labels(), 2);
    check(clf, "gpt2_cls", "gpt2_cls_lora");
}

#[test]
fn llama_sequence_classification_matches_transformers_and_peft() {
    let dir = fixtures().join("llama_cls");
    let (m, _) = Llama::<B>::load_hf(&dir, &Default::default()).unwrap();
    let clf = SequenceClassifier::load_score(m, &dir, &Default::default()).unwrap();
    check(clf, "llama_cls", "llama_cls_lora");
}

#[test]
fn classification_checkpoint_without_score_is_an_error() {
    let dir = fixtures().join("gpt2_a");
    let (m, _) = Gpt2::<B>::load(&dir, &Default::default()).unwrap();
    let e = SequenceClassifier::load_score(m, &dir, &Default::default()).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("score.weight") && s.contains("model.safetensors"),
        "{s}"
    );
}
