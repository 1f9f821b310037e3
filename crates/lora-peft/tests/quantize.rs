//! `quantize_model` (QLoRA) on the real GPT-2 / Llama fixtures: which layers get quantized,
//! embeddings / norms / biases untouched, PEFT adapters loading onto quantized bases (logits
//! equal to the same adapter on the dequantized f32 weights, and within the quantization error
//! of PEFT's f32 logits), merge into quantized bases, and errors.
mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{fixtures, max_abs_diff, read_st, to_vec, AB, B};
use lora_core::{LoraLinear, NamedLinears, QuantKind};
use lora_models::classify::SequenceClassifier;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{
    apply_lora, load_adapter, merge_and_unload, quantize_model, save_adapter, unload, LoraConfig,
    PeftError,
};
use std::path::Path;

fn io(fx: &str) -> (Tensor<B, 2, Int>, StFile) {
    let st = StFile::open(fixtures().join(fx).join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st)
}

/// `(name, quantized)` of every linear layer.
fn quantized<M: NamedLinears<B>>(m: &M) -> Vec<(String, bool)> {
    let mut v = Vec::new();
    m.visit_linears(&mut |n, l| v.push((n.to_string(), l.is_quantized())));
    v
}

/// Every layer made dense again (the dequantized weights, f32).
fn dequantized<M: NamedLinears<B> + Clone>(m: &M) -> M {
    let mut d = m.clone();
    d.visit_linears_mut(&mut |_, l| l.dequantize());
    d
}

#[test]
fn gpt2_quantize_model_skips_score_and_keeps_embeddings_norms_biases() {
    let device = Default::default();
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &device).unwrap();
    let clf = SequenceClassifier::new_random(m, 2, 0.02, &device);
    let before = clf.clone();
    for kind in [QuantKind::NF4, QuantKind::NF4_DQ, QuantKind::Int8] {
        let mut q = before.clone();
        let rep = quantize_model(&mut q, &kind, &["score", "lm_head"]).unwrap();
        let names: Vec<&str> = rep.layers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 8, "{kind}: the 8 block linears");
        assert!(names.iter().all(|n| n.starts_with("transformer.h.")));
        assert_eq!(rep.skipped, ["score"]);
        assert_eq!(
            rep.unused_skip,
            ["lm_head"],
            "GPT-2's head is tied: no linear"
        );
        let flags = quantized(&q);
        assert!(flags.iter().all(|(n, f)| *f == (n != "score")), "{flags:?}");
        // 2 × (48·144 + 48·48 + 48·192 + 192·48) values
        assert_eq!(rep.numel(), 2 * (48 * 144 + 48 * 48 + 2 * 48 * 192));
        assert_eq!(rep.f32_bytes(), 4 * rep.numel());
        println!("gpt2_a {kind}: {rep}; rms {:.3e}", rep.rms_error());
        // embeddings, norms, biases and the skipped head are untouched f32
        let g = &q.model;
        assert_eq!(to_vec(g.wte.val()), to_vec(before.model.wte.val()));
        assert_eq!(to_vec(g.wpe.val()), to_vec(before.model.wpe.val()));
        assert_eq!(
            to_vec(g.ln_f.weight.val()),
            to_vec(before.model.ln_f.weight.val())
        );
        assert_eq!(
            to_vec(g.h[1].ln_2.bias.val()),
            to_vec(before.model.h[1].ln_2.bias.val())
        );
        let c_fc = &g.h[0].mlp.c_fc;
        assert_eq!(
            to_vec(c_fc.bias().unwrap()),
            to_vec(before.model.h[0].mlp.c_fc.bias().unwrap())
        );
        assert_eq!(
            to_vec(q.score.base_weight()),
            to_vec(before.score.base_weight())
        );
        // worst error = the largest per-layer error, each checked against the layer's weights
        let mut worst = 0f64;
        q.visit_linears(&mut |n, l| {
            if n == "score" {
                return;
            }
            let mut orig = None;
            before.visit_linears(&mut |m, b| {
                if m == n {
                    orig = Some(to_vec(b.base_weight()));
                }
            });
            let d = max_abs_diff(&to_vec(l.base_weight()), &orig.unwrap()) as f64;
            worst = worst.max(d);
        });
        assert_eq!(rep.max_abs_error(), worst, "{kind}");
    }
    // bits per parameter (NF4: 4 + 32/64 bits; DQ ≈ 4.13 + word padding; int8: 8 + 32/d_in)
    let bits = |k: QuantKind| {
        let mut q = before.clone();
        quantize_model(&mut q, &k, &["score"])
            .unwrap()
            .bits_per_parameter()
    };
    let (b4, bdq, b8) = (
        bits(QuantKind::NF4),
        bits(QuantKind::NF4_DQ),
        bits(QuantKind::Int8),
    );
    println!("bits/param: nf4 {b4:.4}, nf4-dq {bdq:.4}, int8 {b8:.4}");
    assert!((b4 - 4.5).abs() < 1e-9, "{b4}");
    assert!(bdq > 4.12 && bdq < 4.2, "{bdq}");
    assert!(b8 > 8.0 && b8 < 8.7, "{b8}");
}

#[test]
fn llama_quantize_model_skips_lm_head() {
    let device = Default::default();
    let (mut m, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &device).unwrap();
    // Untie the head (same values) so that the model has an `lm_head` linear.
    let head = LoraLinear::new(m.embed_tokens.val().transpose(), None, false).unwrap();
    m.lm_head = Some(head);
    let embed = to_vec(m.embed_tokens.val());
    let norm = to_vec(m.norm.weight.val());
    let rows = to_vec(m.output_embedding_rows(&[3, 5]));
    let rep = quantize_model(&mut m, &QuantKind::NF4, &["lm_head", "score"]).unwrap();
    assert_eq!(rep.layers.len(), 14, "7 projections × 2 layers");
    assert_eq!(rep.skipped, ["lm_head"]);
    assert_eq!(rep.unused_skip, ["score"]);
    for (n, f) in quantized(&m) {
        assert_eq!(f, n != "lm_head", "{n}");
    }
    assert_eq!(to_vec(m.embed_tokens.val()), embed);
    assert_eq!(to_vec(m.norm.weight.val()), norm);
    assert_eq!(to_vec(m.layers[0].input_layernorm.weight.val()), {
        let (m0, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &device).unwrap();
        to_vec(m0.layers[0].input_layernorm.weight.val())
    });
    println!("llama_a nf4: {rep}");

    // A quantized untied head reads its rows dequantized (output_embedding_rows).
    let mut all = m.clone();
    all.lm_head
        .as_mut()
        .unwrap()
        .quantize(&QuantKind::Int8)
        .unwrap();
    let qrows = to_vec(all.output_embedding_rows(&[3, 5]));
    let d = max_abs_diff(&qrows, &rows);
    assert!(d > 0.0 && d < 0.01, "int8 head rows vs f32: {d}");
    assert_eq!(
        qrows,
        to_vec(
            all.lm_head
                .as_ref()
                .unwrap()
                .base_weight()
                .transpose()
                .select(
                    0,
                    Tensor::from_data(TensorData::new(vec![3i64, 5], [2]), &device)
                )
        )
    );

    // quantize_model refuses a model that is already quantized, naming the layer
    let e = quantize_model(&mut m, &QuantKind::NF4, &["lm_head"]).unwrap_err();
    assert!(
        matches!(&e, PeftError::Lora { name, .. } if name == "model.layers.0.self_attn.q_proj"),
        "{e}"
    );
    // and a bad block size before touching anything
    let (mut fresh, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &device).unwrap();
    let e = quantize_model(&mut fresh, &QuantKind::NF4.with_blocksize(100), &[]).unwrap_err();
    assert!(e.to_string().contains("blocksize 100"), "{e}");
    assert!(quantized(&fresh).iter().all(|(_, f)| !f));
}

/// Loads `lora_fx` onto the model quantized with `kind` and compares logits.
fn adapter_on_quantized<M: LanguageModel<B> + Clone>(model: M, lora_fx: &str, kind: QuantKind) {
    let device = Default::default();
    let dir = fixtures().join(lora_fx);
    let (ids, st) = io(lora_fx);
    let (want, _) = st.f32("logits").unwrap();
    let (want_merged, _) = st.f32("logits_merged").unwrap();
    let base_f32 = to_vec(model.forward(ids.clone()));

    let mut q = model;
    let rep = quantize_model(&mut q, &kind, &["lm_head"]).unwrap();
    let base_q = to_vec(q.forward(ids.clone()));
    let config = load_adapter(&mut q, &dir, &device).unwrap();
    let got = to_vec(q.forward(ids.clone()));
    // the same adapter on the dequantized f32 weights
    let dense = to_vec(dequantized(&q).forward(ids.clone()));
    let d_dense = max_abs_diff(&got, &dense);
    let d_peft = max_abs_diff(&got, &want);
    let d_base = max_abs_diff(&base_q, &base_f32);
    let moved = max_abs_diff(&base_f32, &want);
    println!(
        "{lora_fx} on {kind} base ({rep}): logits vs the same adapter on the dequantized weights \
         {d_dense:e}; vs PEFT f32 {d_peft:e} (quantizing the base alone moves the base logits by \
         {d_base:e}; the adapter moves them by {moved:e})"
    );
    assert!(d_dense < 1e-4, "{lora_fx} {kind}: {d_dense}");
    // the gap to PEFT's f32 logits is the base's quantization error carried through the
    // network: of the order of the gap it makes without the adapter (these toy models have
    // weights of std 0.1, so NF4 moves their logits visibly)
    assert!(d_peft < 3.0 * d_base + 1e-4, "{lora_fx} {kind}: {d_peft}");
    assert!(d_peft < moved, "{lora_fx} {kind}");

    // Saved again: PEFT's exact tensors (adapters do not depend on the base's storage).
    let out = tempfile::tempdir().unwrap();
    save_adapter(&q, &config, out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter_model.safetensors")),
        read_st(&dir.join("adapter_model.safetensors")),
        "{lora_fx}"
    );

    // merge_and_unload requantizes into the quantized base: close to the unmerged output
    assert!(merge_and_unload(&mut q).unwrap() > 0);
    assert!(quantized(&q).iter().all(|(n, f)| *f || n == "lm_head"));
    let merged = to_vec(q.forward(ids));
    let d_m = max_abs_diff(&merged, &got);
    let d_mp = max_abs_diff(&merged, &want_merged);
    println!(
        "{lora_fx} {kind}: merged (requantized) vs unmerged {d_m:e}, vs PEFT merged f32 {d_mp:e}"
    );
    assert!(
        d_m > 0.0 && d_m < 3.0 * d_base + 1e-4,
        "{lora_fx} {kind}: {d_m}"
    );
}

#[test]
fn peft_adapters_load_onto_quantized_gpt2() {
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    for kind in [QuantKind::NF4, QuantKind::Int8] {
        adapter_on_quantized(m.clone(), "gpt2_a_lora", kind);
    }
}

#[test]
fn peft_adapters_load_onto_quantized_llama() {
    let (m, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default()).unwrap();
    for kind in [QuantKind::NF4_DQ, QuantKind::Int8] {
        adapter_on_quantized(m.clone(), "llama_a_lora", kind);
    }
}

#[test]
fn seq_cls_adapter_on_a_quantized_model_replaces_a_quantized_score() {
    let device = Default::default();
    let dir = fixtures().join("llama_cls");
    let (m, _) = Llama::<B>::load_hf(&dir, &device).unwrap();
    let clf = SequenceClassifier::load_score(m, &dir, &device).unwrap();
    let st = StFile::open(fixtures().join("llama_cls_lora").join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let (mask, _) = st.i64("attention_mask").unwrap();
    let lengths: Vec<usize> = mask
        .chunks(shape[1])
        .map(|r| r.iter().filter(|&&m| m == 1).count())
        .collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let (want, _) = st.f32("logits").unwrap();
    // Everything quantized, `score` included: the adapter's saved `score` replaces it densely.
    let mut q = clf.clone();
    let rep = quantize_model(&mut q, &QuantKind::Int8, &[]).unwrap();
    assert!(rep.layers.iter().any(|(n, _)| n == "score"));

    load_adapter(&mut q, &fixtures().join("llama_cls_lora"), &device).unwrap();
    assert!(!q.score.is_quantized());
    let got = to_vec(q.forward(ids.clone(), &lengths));
    let dense = to_vec(dequantized(&q).forward(ids.clone(), &lengths));
    let d = max_abs_diff(&got, &want);
    // what int8 does to the logits without the LoRA factors, with the file's score head on both
    let (mut f, mut g) = (clf.clone(), q.clone());
    load_adapter(&mut f, &fixtures().join("llama_cls_lora"), &device).unwrap();
    unload(&mut f).unwrap();
    unload(&mut g).unwrap();
    let d_base = max_abs_diff(
        &to_vec(g.forward(ids.clone(), &lengths)),
        &to_vec(f.forward(ids, &lengths)),
    );
    println!(
        "llama_cls_lora on an int8 base: logits vs PEFT f32 {d:e} (int8 moves the base logits \
         by {d_base:e})"
    );
    assert_eq!(max_abs_diff(&got, &dense), 0.0);
    assert!(d < 3.0 * d_base + 1e-4, "{d}");

    // apply_lora with modules_to_save on a quantized score makes it dense and trainable, and
    // quantize_model then refuses it unless skipped (on the autodiff backend, which tracks
    // require_grad).
    let (m, _) = Llama::<AB>::load_hf(&dir, &device).unwrap();
    let clf = SequenceClassifier::load_score(m, &dir, &device).unwrap();
    let mut q = clf.clone();
    quantize_model(&mut q, &QuantKind::NF4, &[]).unwrap();
    let cfg = LoraConfig::from_json_str(
        r#"{"target_modules": ["q_proj", "v_proj"], "task_type": "SEQ_CLS", "r": 2}"#,
        Path::new("-"),
    )
    .unwrap();
    apply_lora(&mut q, &cfg, &device).unwrap();
    assert!(!q.score.is_quantized() && q.score.is_base_trainable());
    let mut d = clf.clone();
    apply_lora(&mut d, &cfg, &device).unwrap();
    let e = quantize_model(&mut d, &QuantKind::NF4, &[]).unwrap_err();
    assert!(
        matches!(&e, PeftError::Lora { name, .. } if name == "score"),
        "{e}"
    );
    assert!(quantize_model(&mut d, &QuantKind::NF4, &["score"]).is_ok());
}
