//! Prefix tuning against PEFT 0.21 (`tests/fixtures/make_prompt_fixtures.py`): logits of the
//! real tokens and gradients equal PEFT's on GPT-2 and on Llama with grouped-query attention,
//! with and without `prefix_projection`; the prefix's layout in the key/value cache in closed
//! form; saving, training and the refusals.
mod common;

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::prompt::{edited, export_dir, gpt2, io, llama, next_token_loss, write_io};
use common::{fixtures, max_abs_diff, read_st, to_vec, AB, B};
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::tuners::prefix_tuning::{PrefixGeometry, PrefixProjection};
use lora_peft::{
    AdapterConfig, PeftError, PeftModel, PeftType, PrefixEncoder, PrefixTuningConfig, PromptLearner,
};
use std::path::Path;

const TOL: f32 = 1e-4;

/// PEFT's adapter `fx` on `base`: logits within 1e-4 of PEFT's, and the prefix moves them.
fn check_logits<M: LanguageModel<B> + burn::module::ModuleDisplay>(base: M, fx: &str) {
    let (ids, st) = io::<B>(fx);
    let (want, _) = st.f32("logits").unwrap();
    let plain = to_vec(base.forward(ids.clone()));
    let m = PeftModel::from_pretrained(base, fixtures().join(fx), &Default::default()).unwrap();
    assert_eq!(m.peft_type(), Some(PeftType::PrefixTuning));
    assert_eq!(
        m.new_cache(2).past_len(),
        m.prompt_encoder.as_ref().unwrap().num_virtual_tokens()
    );
    let got = to_vec(m.forward(ids));
    let d = max_abs_diff(&got, &want);
    let moved = max_abs_diff(&plain, &want);
    println!("{fx}: logits max |diff| vs PEFT = {d:.3e} (the prefix moves them by {moved:.3e})");
    assert!(d < TOL, "{fx}: {d}");
    assert!(
        moved > 100.0 * TOL,
        "{fx}: the prefix should change the logits ({moved})"
    );

    // Saving it again writes PEFT's tensor exactly.
    let out = tempfile::tempdir().unwrap();
    m.save_pretrained(out.path()).unwrap();
    assert_eq!(
        read_st(&out.path().join("adapter_model.safetensors")),
        read_st(&fixtures().join(fx).join("adapter_model.safetensors")),
        "{fx}"
    );
    let AdapterConfig::PrefixTuning(c) = AdapterConfig::from_file(out.path()).unwrap() else {
        panic!("not a prefix config")
    };
    assert!(c.inference_mode);
    let want_c = PrefixTuningConfig::from_file(fixtures().join(fx)).unwrap();
    assert_eq!(c, want_c, "{fx}: config round trip");
}

#[test]
fn gpt2_prefix_matches_peft() {
    check_logits(gpt2::<B>(), "gpt2_a_prefix");
}

#[test]
fn llama_gqa_prefix_matches_peft() {
    let c = PrefixTuningConfig::from_file(fixtures().join("llama_a_prefix")).unwrap();
    // PEFT's GQA rule: token_dim = head_dim · num_key_value_heads (16 · 2), heads = KV heads.
    assert_eq!((c.token_dim, c.num_attention_heads), (Some(32), Some(2)));
    check_logits(llama::<B>(), "llama_a_prefix");
}

/// The projected adapters load as PEFT loads them (the file holds the projected prefix).
#[test]
fn projected_prefix_files_match_peft() {
    check_logits(gpt2::<B>(), "gpt2_a_prefix_proj");
    check_logits(llama::<B>(), "llama_a_prefix_proj");
}

/// PEFT's config filling (`_prepare_prompt_learning_config`) from the model's geometry.
#[test]
fn config_is_filled_in_from_the_model_as_peft_does() {
    for (fx, shape) in [
        ("gpt2_a_prefix", gpt2::<B>().attention_shape()),
        ("llama_a_prefix_proj", llama::<B>().attention_shape()),
    ] {
        let file = PrefixTuningConfig::from_file(fixtures().join(fx)).unwrap();
        let mut c = PrefixTuningConfig::new(file.num_virtual_tokens);
        c.prefix_projection = file.prefix_projection;
        c.encoder_hidden_size = file.encoder_hidden_size;
        c.prepare(shape);
        for (name, ours, peft) in [
            ("num_layers", c.num_layers, file.num_layers),
            ("token_dim", c.token_dim, file.token_dim),
            (
                "num_attention_heads",
                c.num_attention_heads,
                file.num_attention_heads,
            ),
            (
                "num_transformer_submodules",
                c.num_transformer_submodules,
                file.num_transformer_submodules,
            ),
            (
                "encoder_hidden_size",
                c.encoder_hidden_size,
                file.encoder_hidden_size,
            ),
        ] {
            assert_eq!(ours, peft, "{fx}: {name}");
        }
    }
    // Without a projection, encoder_hidden_size defaults to token_dim.
    let mut c = PrefixTuningConfig::new(2);
    c.prepare(llama::<B>().attention_shape());
    assert_eq!(c.encoder_hidden_size, Some(32));
}

/// A `[d_out, d_in]` PyTorch weight of `st` as burn's `[d_in, d_out]`.
fn linear_weight(st: &StFile, key: &str) -> Tensor<AB, 2> {
    let (v, s) = st.f32(key).unwrap();
    Tensor::<AB, 2>::from_data(TensorData::new(v, [s[0], s[1]]), &Default::default()).transpose()
}

fn vector(st: &StFile, key: &str) -> Tensor<AB, 1> {
    let (v, s) = st.f32(key).unwrap();
    Tensor::from_data(TensorData::new(v, [s[0]]), &Default::default())
}

/// The trainable projection PEFT had (`encoder.safetensors`), on the autodiff backend.
fn projected_model<M: LanguageModel<AB> + burn::module::ModuleDisplay>(
    base: M,
    fx: &str,
) -> PeftModel<AB, M> {
    let dir = fixtures().join(fx);
    let st = StFile::open(dir.join("encoder.safetensors")).unwrap();
    let (e, s) = st.f32("embedding.weight").unwrap();
    let emb = Tensor::from_data(TensorData::new(e, [s[0], s[1]]), &Default::default());
    let t = PrefixProjection {
        weight1: Param::from_tensor(linear_weight(&st, "transform.0.weight")),
        bias1: Param::from_tensor(vector(&st, "transform.0.bias")),
        weight2: Param::from_tensor(linear_weight(&st, "transform.2.weight")),
        bias2: Param::from_tensor(vector(&st, "transform.2.bias")),
    };
    let mut c = PrefixTuningConfig::from_file(&dir).unwrap();
    c.inference_mode = false;
    let g = c.geometry().unwrap();
    let enc = PrefixEncoder::with_projection(emb, t, &g).unwrap();
    PeftModel::with_prompt_learner(
        base,
        PromptLearner::PrefixTuning(enc),
        AdapterConfig::PrefixTuning(c),
    )
    .unwrap()
}

/// With `prefix_projection`, PEFT saves the encoder's output for all V tokens: the projection
/// rebuilt from PEFT's encoder weights gives the saved tensor, PEFT's logits, PEFT's gradient
/// of the embedding, and `save_pretrained` writes the projection's output.
#[test]
fn projection_gives_the_saved_prefix_logits_and_gradients() {
    for fx in ["gpt2_a_prefix_proj", "llama_a_prefix_proj"] {
        if fx.starts_with("gpt2") {
            check_projection(projected_model(gpt2::<AB>(), fx), fx)
        } else {
            check_projection(projected_model(llama::<AB>(), fx), fx)
        }
    }
}

fn check_projection<M: LanguageModel<AB> + burn::module::ModuleDisplay>(
    m: PeftModel<AB, M>,
    fx: &str,
) {
    let dir = fixtures().join(fx);
    let Some(PromptLearner::PrefixTuning(enc)) = &m.prompt_encoder else {
        panic!("no prefix")
    };
    assert!(enc.has_projection());
    let saved = read_st(&dir.join("adapter_model.safetensors"));
    let d_saved = max_abs_diff(&to_vec(enc.prompt_embeddings()), &saved[0].2);
    println!("{fx}: projection output vs PEFT's saved prompt_embeddings: {d_saved:.3e}");
    assert!(d_saved < 1e-5, "{fx}: {d_saved}");

    let (ids, st) = io::<AB>(fx);
    let logits = m.forward(ids.clone());
    let d = max_abs_diff(&to_vec(logits.clone()), &st.f32("logits").unwrap().0);
    let loss = next_token_loss(logits, ids);
    let dl = (to_vec(loss.clone())[0] - st.f32("loss").unwrap().0[0]).abs();
    let grads = loss.backward();
    let g = enc
        .embedding
        .grad(&grads)
        .expect("the embedding gets a gradient");
    let want_g = st.f32("grad_embedding").unwrap().0;
    let dg = max_abs_diff(&to_vec(g), &want_g);
    let scale = want_g.iter().fold(0f32, |a, x| a.max(x.abs()));
    println!(
        "{fx}: logits {d:.3e}, loss {dl:.3e}, grad_embedding {dg:.3e} (max |grad| {scale:.3e})"
    );
    assert!(d < TOL && dl < TOL && dg < TOL, "{fx}: {d} {dl} {dg}");
    assert!(enc
        .transform
        .as_ref()
        .unwrap()
        .weight1
        .grad(&grads)
        .is_some());

    let out = tempfile::tempdir().unwrap();
    m.save_pretrained(out.path()).unwrap();
    let ours = read_st(&out.path().join("adapter_model.safetensors"));
    assert_eq!(
        (ours.len(), &ours[0].0, &ours[0].1),
        (1, &saved[0].0, &saved[0].1)
    );
    assert!(max_abs_diff(&ours[0].2, &saved[0].2) < 1e-5);
}

/// The gradient of the next-token loss with respect to the prefix equals PEFT's.
#[test]
fn prefix_gradients_match_peft() {
    for fx in ["gpt2_a_prefix", "llama_a_prefix"] {
        let (ids, st) = io::<AB>(fx);
        let dir = fixtures().join(fx);
        let (logits, grad) = if fx.starts_with("gpt2") {
            let m = PeftModel::from_pretrained(gpt2::<AB>(), &dir, &Default::default()).unwrap();
            loss_grad(&m, ids)
        } else {
            let m = PeftModel::from_pretrained(llama::<AB>(), &dir, &Default::default()).unwrap();
            loss_grad(&m, ids)
        };
        let (loss, dg) = (
            logits,
            max_abs_diff(&grad, &st.f32("grad_prompt_embeddings").unwrap().0),
        );
        let dl = (loss - st.f32("loss").unwrap().0[0]).abs();
        println!("{fx}: loss {dl:.3e}, grad_prompt_embeddings max |diff| vs PEFT {dg:.3e}");
        assert!(dl < TOL && dg < TOL, "{fx}: {dl} {dg}");
    }
}

fn loss_grad<M: LanguageModel<AB> + burn::module::ModuleDisplay>(
    m: &PeftModel<AB, M>,
    ids: Tensor<AB, 2, burn::tensor::Int>,
) -> (f32, Vec<f32>) {
    let loss = next_token_loss(m.forward(ids.clone()), ids);
    let l = to_vec(loss.clone())[0];
    let grads = loss.backward();
    let Some(PromptLearner::PrefixTuning(enc)) = &m.prompt_encoder else {
        panic!("no prefix")
    };
    (l, to_vec(enc.embedding.grad(&grads).unwrap()))
}

/// Closed form of PEFT's `get_prompt` layout: with prefix values p[v, c] = c + 1000·v, layer
/// l's key at (head h, token v, dim d) is p[v, (2l·H + h)·D + d] and its value
/// p[v, ((2l+1)·H + h)·D + d], for every row of the batch.
#[test]
fn prefix_cache_layout_is_peft_get_prompt() {
    let g = PrefixGeometry {
        num_virtual_tokens: 3,
        num_layers: 2,
        num_heads: 2,
        head_dim: 4,
        encoder_hidden_size: None,
    };
    let (v, w) = (g.num_virtual_tokens, g.flat_dim());
    let vals: Vec<f32> = (0..v * w)
        .map(|i| ((i % w) + 1000 * (i / w)) as f32)
        .collect();
    let p = Tensor::<B, 2>::from_data(TensorData::new(vals, [v, w]), &Default::default());
    let enc = PrefixEncoder::from_prompt_embeddings(p, &g).unwrap();
    let cache = enc.past_key_values(2);
    assert_eq!((cache.num_layers(), cache.past_len()), (2, 3));
    for l in 0..2 {
        let kv = cache.layer(l).unwrap();
        assert_eq!(kv.key.dims(), [2, 2, 3, 4]);
        for (slot, t) in [(2 * l, &kv.key), (2 * l + 1, &kv.value)] {
            let got = to_vec(t.clone());
            let mut want = Vec::new();
            for _b in 0..2 {
                for h in 0..2 {
                    for tok in 0..3 {
                        for d in 0..4 {
                            want.push(((slot * 2 + h) * 4 + d + 1000 * tok) as f32);
                        }
                    }
                }
            }
            assert_eq!(got, want, "layer {l} slot {slot}");
        }
    }
}

/// Decoding in pieces from the prefix cache gives PEFT's full-pass logits (positions continue
/// after the prefix; Llama's RoPE included).
#[test]
fn incremental_decoding_after_the_prefix_matches_peft() {
    let fx = "llama_a_prefix";
    let (ids, st) = io::<B>(fx);
    let m =
        PeftModel::from_pretrained(llama::<B>(), fixtures().join(fx), &Default::default()).unwrap();
    let [b, s] = ids.dims();
    let mut cache = m.new_cache(b);
    let mut parts = vec![
        m.lm_logits(m.forward_cached(m.input_embeds(ids.clone().narrow(1, 0, 4)), &mut cache))
    ];
    for p in 4..s {
        parts.push(m.lm_logits(m.forward_cached(m.embed(ids.clone().narrow(1, p, 1)), &mut cache)));
    }
    let d = max_abs_diff(&to_vec(Tensor::cat(parts, 1)), &st.f32("logits").unwrap().0);
    println!("{fx}: incremental logits max |diff| vs PEFT {d:.3e}");
    assert!(d < TOL, "{d}");
}

/// A fresh prefix trains: SGD steps lower the loss, only the prefix encoder has gradients
/// (the base model is frozen) and changes; the trained adapter saves and reloads to the same
/// logits (and, with LORA_BURN_EXPORT_DIR set, is written there for PEFT to load).
#[test]
fn training_moves_only_the_prefix_and_lowers_the_loss() {
    AB::seed(&Default::default(), 7);
    train(llama::<AB>(), "llama_a", "llama_a_prefix", false, 97);
    train(llama::<AB>(), "llama_a", "llama_a_prefix_proj", true, 97);
    train(gpt2::<AB>(), "gpt2_a", "gpt2_a_prefix", false, 101);
}

fn train<M>(base: M, base_fx: &str, name: &str, proj: bool, vocab: usize)
where
    M: LanguageModel<AB> + burn::module::ModuleDisplay + burn::module::AutodiffModule<AB>,
    M::InnerModule: burn::module::ModuleDisplay,
{
    let mut c = PrefixTuningConfig::new(4);
    if proj {
        c.prefix_projection = true;
        c.encoder_hidden_size = Some(12);
    }
    let mut m =
        PeftModel::get_peft_model(base, AdapterConfig::PrefixTuning(c), &Default::default())
            .unwrap();
    let (ids, _) = io::<AB>(base_fx);
    let emb_before = encoder_of(&m).embedding.val();
    let base_before = to_vec(m.base_model.output_embedding_rows(&[0, 5, 9]));
    let mut opt = SgdConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..8 {
        let loss = next_token_loss(m.forward(ids.clone()), ids.clone());
        losses.push(to_vec(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        // Only the prefix encoder's tensors: the embedding (and the projection's four).
        assert_eq!(
            grads.len(),
            if proj { 5 } else { 1 },
            "{name}: trainable tensors"
        );
        m = opt.step(0.5, m, grads);
    }
    println!(
        "{name} (projection {proj}): training loss {:.4} -> {:.4}",
        losses[0], losses[7]
    );
    assert!(losses[7] < losses[0] - 0.01, "{name}: {losses:?}");
    assert!(max_abs_diff(&to_vec(encoder_of(&m).embedding.val()), &to_vec(emb_before)) > 1e-3);
    assert_eq!(
        to_vec(m.base_model.output_embedding_rows(&[0, 5, 9])),
        base_before
    );

    // Save, reload onto the base: same logits (a projection is saved as its output).
    let tmp = tempfile::tempdir().unwrap();
    let dir = export_dir(name).unwrap_or_else(|| tmp.path().to_path_buf());
    m.save_pretrained(&dir).unwrap();
    let ours = to_vec(m.forward(ids.clone()));
    let re = PeftModel::from_pretrained(m.into_base_model(), &dir, &Default::default()).unwrap();
    let d = max_abs_diff(&to_vec(re.forward(ids.clone())), &ours);
    assert!(d < 1e-5, "{name} reload: {d}");
    write_io(&dir, &to_vec_i64(&ids), [2, 9], &ours, [2, 9, vocab]);
}

fn encoder_of<M: Module<AB>>(m: &PeftModel<AB, M>) -> &PrefixEncoder<AB> {
    match &m.prompt_encoder {
        Some(PromptLearner::PrefixTuning(e)) => e,
        _ => panic!("no prefix"),
    }
}

fn to_vec_i64(t: &Tensor<AB, 2, burn::tensor::Int>) -> Vec<i64> {
    t.clone()
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap()
}

fn load_err(base: &str, dir: &Path) -> PeftError {
    let r = if base == "gpt2" {
        PeftModel::from_pretrained(gpt2::<B>(), dir, &Default::default()).map(|_| ())
    } else {
        PeftModel::from_pretrained(llama::<B>(), dir, &Default::default()).map(|_| ())
    };
    r.unwrap_err()
}

#[test]
fn prefixes_that_do_not_fit_the_model_are_refused() {
    let cases: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        (
            "gpt2",
            "num_layers",
            3.into(),
            "the model has 2 attention layers",
        ),
        (
            "gpt2",
            "token_dim",
            64.into(),
            "the model's keys are 48 wide",
        ),
        (
            "llama",
            "num_attention_heads",
            4.into(),
            "the model has 2 key/value heads",
        ),
    ];
    for (base, field, value, msg) in cases {
        let fx = format!("{}_a_prefix", base);
        let d = edited(&fx, |c| c[field] = value.clone(), None);
        let e = load_err(base, d.path());
        let m = e.to_string();
        println!("{m}");
        assert!(matches!(e, PeftError::ModelMismatch { .. }), "{m}");
        assert!(
            m.contains("adapter_config.json") && m.contains(field) && m.contains(msg),
            "{m}"
        );
    }
    // A prefix tensor of the wrong shape names the file, the key and both shapes.
    let d = edited("gpt2_a_prefix", |_| {}, Some((5, 100)));
    let e = load_err("gpt2", d.path());
    let m = e.to_string();
    assert!(matches!(e, PeftError::Shape { .. }), "{m}");
    assert!(
        m.contains("adapter_model.safetensors")
            && m.contains("prompt_embeddings")
            && m.contains("[5, 192]")
            && m.contains("[5, 100]"),
        "{m}"
    );
    // Encoder-decoder prefixes, missing num_virtual_tokens, unknown init_weights, unknown type.
    let d = edited(
        "gpt2_a_prefix",
        |c| c["num_transformer_submodules"] = 2.into(),
        None,
    );
    assert!(matches!(
        load_err("gpt2", d.path()),
        PeftError::Unsupported { .. }
    ));
    let d = edited(
        "gpt2_a_prefix",
        |c| {
            c.as_object_mut().unwrap().remove("num_virtual_tokens");
        },
        None,
    );
    let m = load_err("gpt2", d.path()).to_string();
    assert!(
        m.contains("num_virtual_tokens") && m.contains("adapter_config.json"),
        "{m}"
    );
    let d = edited("gpt2_a_prefix", |c| c["init_weights"] = "ones".into(), None);
    assert!(load_err("gpt2", d.path())
        .to_string()
        .contains("init_weights"));
    let d = edited("gpt2_a_prefix", |c| c["peft_type"] = "PREFIX".into(), None);
    let e = load_err("gpt2", d.path());
    assert!(matches!(e, PeftError::UnsupportedPeftType { .. }), "{e}");
    assert!(
        e.to_string().contains("\"PREFIX\"") && e.to_string().contains("\"PREFIX_TUNING\""),
        "{e}"
    );
    // An extra tensor is refused.
    let d = edited("gpt2_a_prefix", |_| {}, None);
    let (vals, shape) = (
        read_st(&d.path().join("adapter_model.safetensors"))
            .remove(0)
            .2,
        vec![5, 192],
    );
    lora_io::write_safetensors(
        d.path().join("adapter_model.safetensors"),
        &[
            (
                "prompt_embeddings".into(),
                lora_io::StTensor::f32(shape, &vals),
            ),
            ("extra".into(), lora_io::StTensor::f32(vec![1], &[0.0])),
        ],
        None,
    )
    .unwrap();
    assert!(matches!(
        load_err("gpt2", d.path()),
        PeftError::UnexpectedKey { .. }
    ));
    // The per-layer entry points refuse a prompt-learning config.
    let c = AdapterConfig::from_file(fixtures().join("gpt2_a_prefix")).unwrap();
    let mut g = gpt2::<B>();
    let e = lora_peft::tuners::inject(&mut g, &c, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("PeftModel"), "{e}");
}
