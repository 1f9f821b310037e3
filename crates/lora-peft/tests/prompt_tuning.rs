//! Prompt tuning against PEFT 0.21 (`tests/fixtures/make_prompt_fixtures.py`): logits of the
//! real tokens (PEFT's forward also returns the virtual positions; the fixtures slice them off)
//! and gradients equal PEFT's on GPT-2 and Llama; `TEXT` init in closed form; classification
//! and incremental decoding on top; saving, training and the refusals.
mod common;

use burn::module::{Module, ModuleDisplay};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::prompt::{edited, export_dir, gpt2, io, llama, next_token_loss, write_io};
use common::{fixtures, max_abs_diff, read_st, to_vec, AB, B};
use lora_models::classify::SequenceClassifier;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::tuners::prompt_tuning::init_token_ids;
use lora_peft::{
    AdapterConfig, PeftError, PeftModel, PeftType, PromptEmbedding, PromptLearner,
    PromptTuningConfig, PromptTuningInit,
};
use std::path::Path;

const TOL: f32 = 1e-4;

fn prompt_of<Bk: Backend, M: Module<Bk>>(m: &PeftModel<Bk, M>) -> &PromptEmbedding<Bk> {
    match &m.prompt_encoder {
        Some(PromptLearner::PromptTuning(p)) => p,
        _ => panic!("no prompt"),
    }
}

fn check_logits<M: LanguageModel<B> + ModuleDisplay>(base: M, fx: &str) {
    let (ids, st) = io::<B>(fx);
    let (want, shape) = st.f32("logits").unwrap();
    let plain = to_vec(base.forward(ids.clone()));
    let m = PeftModel::from_pretrained(base, fixtures().join(fx), &Default::default()).unwrap();
    assert_eq!(m.peft_type(), Some(PeftType::PromptTuning));
    let v = prompt_of(&m).num_virtual_tokens();
    assert_eq!(m.num_virtual_tokens(), v);
    assert_eq!(m.new_cache(2).past_len(), 0);
    let logits = m.forward(ids);
    assert_eq!(logits.dims().to_vec(), shape, "real tokens only");
    let got = to_vec(logits);
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&plain, &want);
    println!("{fx}: logits max |diff| vs PEFT = {d:.3e} (the prompt moves them by {moved:.3e})");
    assert!(d < TOL, "{fx}: {d}");
    assert!(
        moved > 100.0 * TOL,
        "{fx}: the prompt should change the logits ({moved})"
    );

    let out = tempfile::tempdir().unwrap();
    m.save_pretrained(out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter_model.safetensors")),
        read_st(&fixtures().join(fx).join("adapter_model.safetensors")),
        "{fx}"
    );
    assert_eq!(
        PromptTuningConfig::from_file(out.path()).unwrap(),
        PromptTuningConfig::from_file(fixtures().join(fx)).unwrap(),
        "{fx}: config round trip"
    );
}

#[test]
fn gpt2_prompt_matches_peft() {
    check_logits(gpt2::<B>(), "gpt2_a_prompt");
}

#[test]
fn llama_prompt_matches_peft() {
    check_logits(llama::<B>(), "llama_a_prompt");
}

/// The gradient of the next-token loss with respect to the prompt equals PEFT's.
#[test]
fn prompt_gradients_match_peft() {
    for fx in ["gpt2_a_prompt", "llama_a_prompt"] {
        let dir = fixtures().join(fx);
        let (l, g) = if fx.starts_with("gpt2") {
            loss_grad(
                &PeftModel::from_pretrained(gpt2::<AB>(), &dir, &Default::default()).unwrap(),
                fx,
            )
        } else {
            loss_grad(
                &PeftModel::from_pretrained(llama::<AB>(), &dir, &Default::default()).unwrap(),
                fx,
            )
        };
        let (_, st) = io::<AB>(fx);
        let want = st.f32("grad_prompt_embeddings").unwrap().0;
        let dg = max_abs_diff(&g, &want);
        let dl = (l - st.f32("loss").unwrap().0[0]).abs();
        let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
        println!("{fx}: loss {dl:.3e}, grad_prompt_embeddings max |diff| vs PEFT {dg:.3e} (max |grad| {scale:.3e})");
        assert!(dl < TOL && dg < TOL, "{fx}: {dl} {dg}");
    }
}

fn loss_grad<M: LanguageModel<AB> + ModuleDisplay>(
    m: &PeftModel<AB, M>,
    fx: &str,
) -> (f32, Vec<f32>) {
    let (ids, _) = io::<AB>(fx);
    let loss = next_token_loss(m.forward(ids.clone()), ids);
    let l = to_vec(loss.clone())[0];
    let grads = loss.backward();
    (
        l,
        to_vec(
            prompt_of(m)
                .embedding
                .grad(&grads)
                .expect("the prompt gets a gradient"),
        ),
    )
}

/// `TEXT` init (PEFT `PromptEmbedding.__init__`): the word-embedding rows of the ids, repeated
/// or cut to V, read from the checkpoint's `transformer.wte.weight` directly.
#[test]
fn text_init_copies_word_embedding_rows() {
    assert_eq!(
        init_token_ids(&[5, 7, 9], 7).unwrap(),
        [5, 7, 9, 5, 7, 9, 5]
    );
    assert_eq!(init_token_ids(&[5, 7, 9], 2).unwrap(), [5, 7]);
    let st = StFile::open(fixtures().join("gpt2_a/model.safetensors")).unwrap();
    let (wte, shape) = st.f32("transformer.wte.weight").unwrap();
    let h = shape[1];
    for (ids, v, rows) in [
        (vec![5u32, 7, 9], 7, vec![5usize, 7, 9, 5, 7, 9, 5]),
        (vec![3, 1, 4, 1, 5], 2, vec![3, 1]),
    ] {
        let mut c = PromptTuningConfig::new(v);
        c.prompt_tuning_init_text = Some("some text".into());
        c.tokenizer_name_or_path = Some("gpt2".into());
        let m =
            PeftModel::prompt_tuning_from_text(gpt2::<B>(), c, &ids, &Default::default()).unwrap();
        let want: Vec<f32> = rows
            .iter()
            .flat_map(|&r| wte[r * h..(r + 1) * h].to_vec())
            .collect();
        assert_eq!(to_vec(prompt_of(&m).embedding.val()), want);
        let AdapterConfig::PromptTuning(c) = m.peft_config().unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.prompt_tuning_init, c.token_dim),
            (PromptTuningInit::Text, Some(48))
        );
    }
    // Refusals: empty ids, ids out of the vocabulary, TEXT without its text (PEFT's check),
    // TEXT through get_peft_model (ids needed).
    let mut c = PromptTuningConfig::new(3);
    c.prompt_tuning_init_text = Some("x".into());
    c.tokenizer_name_or_path = Some("gpt2".into());
    for (ids, what) in [
        (vec![], "no token ids"),
        (vec![1, 101], "vocabulary size 101"),
    ] {
        let e =
            PeftModel::prompt_tuning_from_text(gpt2::<B>(), c.clone(), &ids, &Default::default())
                .err()
                .unwrap();
        assert!(e.to_string().contains(what), "{e}");
    }
    let e = PeftModel::prompt_tuning_from_text(
        gpt2::<B>(),
        PromptTuningConfig::new(3),
        &[1],
        &Default::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("prompt_tuning_init_text"), "{e}");
    c.prompt_tuning_init = PromptTuningInit::Text;
    let e = PeftModel::get_peft_model(
        gpt2::<B>(),
        AdapterConfig::PromptTuning(c),
        &Default::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("prompt_tuning_from_text"), "{e}");
}

/// `SAMPLE_VOCAB` init: every row is some row of the word embedding.
#[test]
fn sample_vocab_init_takes_word_embedding_rows() {
    let mut c = PromptTuningConfig::new(5);
    c.prompt_tuning_init = PromptTuningInit::SampleVocab;
    let m = PeftModel::get_peft_model(
        llama::<B>(),
        AdapterConfig::PromptTuning(c),
        &Default::default(),
    )
    .unwrap();
    let st = StFile::open(fixtures().join("llama_a/model.safetensors")).unwrap();
    let (emb, shape) = st.f32("model.embed_tokens.weight").unwrap();
    let h = shape[1];
    let got = to_vec(prompt_of(&m).embedding.val());
    for row in got.chunks(h) {
        assert!(
            emb.chunks(h).any(|r| r == row),
            "a row not from the vocabulary"
        );
    }
}

/// Decoding in pieces (the prompt in the first pass, then one token at a time from the cache)
/// gives PEFT's full-pass logits of the real tokens.
#[test]
fn incremental_decoding_after_the_prompt_matches_peft() {
    let fx = "gpt2_a_prompt";
    let (ids, st) = io::<B>(fx);
    let m =
        PeftModel::from_pretrained(gpt2::<B>(), fixtures().join(fx), &Default::default()).unwrap();
    let v = m.num_virtual_tokens();
    let [b, s] = ids.dims();
    let mut cache = m.new_cache(b);
    let first = m.forward_cached(m.input_embeds(ids.clone().narrow(1, 0, 3)), &mut cache);
    let mut parts = vec![m.lm_logits(first.narrow(1, v, 3))];
    for p in 3..s {
        assert_eq!(cache.past_len(), v + p);
        parts.push(m.lm_logits(m.forward_cached(m.embed(ids.clone().narrow(1, p, 1)), &mut cache)));
    }
    let d = max_abs_diff(&to_vec(Tensor::cat(parts, 1)), &st.f32("logits").unwrap().0);
    println!("{fx}: incremental logits max |diff| vs PEFT {d:.3e}");
    assert!(d < TOL, "{d}");
    // GPT-2's 32 positions: the virtual tokens take 4 of them.
    assert_eq!(m.max_positions(), Some(32 - v));
}

/// `SequenceClassifier` on top: the score of the last real token's hidden state, computed
/// here from the PEFT-matched hidden states (virtual positions dropped, lengths of the real
/// tokens).
#[test]
fn sequence_classification_on_top_of_prompt_tuning() {
    let fx = "llama_a_prompt";
    let (ids, _) = io::<B>(fx);
    let m =
        PeftModel::from_pretrained(llama::<B>(), fixtures().join(fx), &Default::default()).unwrap();
    let hidden = m.hidden_states(ids.clone());
    assert_eq!(hidden.dims(), [2, 9, 64]);
    let w: Vec<f32> = (0..64 * 3)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 50.0)
        .collect();
    let w = Tensor::<B, 2>::from_data(TensorData::new(w, [64, 3]), &Default::default());
    let cls = SequenceClassifier::with_score(m, w.clone()).unwrap();
    let got = to_vec(cls.forward(ids, &[9, 5]));
    let h = to_vec(hidden);
    let wv = to_vec(w);
    let mut want = Vec::new();
    for (row, len) in [(0usize, 9usize), (1, 5)] {
        let x = &h[(row * 9 + len - 1) * 64..(row * 9 + len) * 64];
        for j in 0..3 {
            want.push((0..64).map(|k| x[k] * wv[k * 3 + j]).sum::<f32>());
        }
    }
    assert!(max_abs_diff(&got, &want) < 1e-5, "{got:?} {want:?}");
}

/// A fresh prompt trains: SGD steps lower the loss and only the prompt changes; the trained
/// adapter saves and reloads to the same logits (and is exported for PEFT with
/// LORA_BURN_EXPORT_DIR).
#[test]
fn training_moves_only_the_prompt_and_lowers_the_loss() {
    AB::seed(&Default::default(), 11);
    let gpt = train(gpt2::<AB>(), "gpt2_a", "gpt2_a_prompt", 101);
    let lla = train(llama::<AB>(), "llama_a", "llama_a_prompt", 97);
    println!(
        "prompt tuning: loss {:.4} -> {:.4} (gpt2), {:.4} -> {:.4} (llama)",
        gpt.0, gpt.1, lla.0, lla.1
    );
}

fn train<M: LanguageModel<AB> + ModuleDisplay + burn::module::AutodiffModule<AB>>(
    base: M,
    base_fx: &str,
    name: &str,
    vocab: usize,
) -> (f32, f32)
where
    M::InnerModule: ModuleDisplay,
{
    let mut m = PeftModel::get_peft_model(
        base,
        AdapterConfig::PromptTuning(PromptTuningConfig::new(3)),
        &Default::default(),
    )
    .unwrap();
    let (ids, _) = io::<AB>(base_fx);
    let before = to_vec(prompt_of(&m).embedding.val());
    let rows = to_vec(m.base_model.output_embedding_rows(&[0, 5, 9]));
    let mut opt = SgdConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..8 {
        let loss = next_token_loss(m.forward(ids.clone()), ids.clone());
        losses.push(to_vec(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        assert_eq!(grads.len(), 1, "only the prompt has a gradient");
        m = opt.step(1.0, m, grads);
    }
    assert!(losses[7] < losses[0] - 0.01, "{name}: {losses:?}");
    assert!(max_abs_diff(&to_vec(prompt_of(&m).embedding.val()), &before) > 1e-3);
    assert_eq!(to_vec(m.base_model.output_embedding_rows(&[0, 5, 9])), rows);

    let tmp = tempfile::tempdir().unwrap();
    let dir = export_dir(name).unwrap_or_else(|| tmp.path().to_path_buf());
    m.save_pretrained(&dir).unwrap();
    let ours = to_vec(m.forward(ids.clone()));
    let re =
        PeftModel::from_pretrained(m.clone().into_base_model(), &dir, &Default::default()).unwrap();
    assert!(max_abs_diff(&to_vec(re.forward(ids.clone())), &ours) < 1e-6);
    let idv = ids.into_data().convert::<i64>().to_vec::<i64>().unwrap();
    write_io(&dir, &idv, [2, 9], &ours, [2, 9, vocab]);
    (losses[0], losses[7])
}

fn load_err(dir: &Path) -> PeftError {
    PeftModel::from_pretrained(gpt2::<B>(), dir, &Default::default())
        .err()
        .unwrap()
}

#[test]
fn bad_prompts_are_refused() {
    // A tensor of the wrong shape: file, key, expected and found shapes.
    let d = edited("gpt2_a_prompt", |_| {}, Some((4, 47)));
    let e = load_err(d.path());
    let m = e.to_string();
    assert!(matches!(e, PeftError::Shape { .. }), "{m}");
    assert!(
        m.contains("adapter_model.safetensors")
            && m.contains("prompt_embeddings")
            && m.contains("[4, 48]")
            && m.contains("[4, 47]"),
        "{m}"
    );
    // V in the config differs from the tensor's rows.
    let d = edited(
        "gpt2_a_prompt",
        |c| c["num_virtual_tokens"] = 5.into(),
        None,
    );
    assert!(matches!(load_err(d.path()), PeftError::Shape { .. }));
    // token_dim of another model.
    let d = edited("gpt2_a_prompt", |c| c["token_dim"] = 64.into(), None);
    let e = load_err(d.path());
    let m = e.to_string();
    assert!(matches!(e, PeftError::ModelMismatch { .. }), "{m}");
    assert!(
        m.contains("adapter_config.json")
            && m.contains("token_dim = 64")
            && m.contains("hidden size is 48"),
        "{m}"
    );
    // A Llama prompt on GPT-2.
    let e = load_err(&fixtures().join("llama_a_prompt"));
    assert!(e.to_string().contains("hidden size is 48"), "{e}");
    // Unknown init, unknown peft_type, missing tensor.
    let d = edited(
        "gpt2_a_prompt",
        |c| c["prompt_tuning_init"] = "ZEROS".into(),
        None,
    );
    assert!(matches!(load_err(d.path()), PeftError::Json { .. }));
    let d = edited("gpt2_a_prompt", |c| c["peft_type"] = "PROMPT".into(), None);
    let e = load_err(d.path());
    assert!(matches!(e, PeftError::UnsupportedPeftType { .. }), "{e}");
    assert!(
        e.to_string().contains("\"PROMPT\"") && e.to_string().contains("\"PROMPT_TUNING\""),
        "{e}"
    );
    let d = edited("gpt2_a_prompt", |_| {}, None);
    lora_io::write_safetensors(
        d.path().join("adapter_model.safetensors"),
        &[(
            "prompt_embedding".into(),
            lora_io::StTensor::f32(vec![4, 48], &[0.0; 192]),
        )],
        None,
    )
    .unwrap();
    let e = load_err(d.path());
    assert!(
        matches!(e, PeftError::MissingKey { .. }) && e.to_string().contains("prompt_embeddings"),
        "{e}"
    );
    // A bare model has nothing to save.
    let e = PeftModel::new(gpt2::<B>())
        .save_pretrained(d.path())
        .unwrap_err();
    assert!(e.to_string().contains("no PEFT method"), "{e}");
}
