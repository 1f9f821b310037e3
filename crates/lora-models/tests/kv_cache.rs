//! Incremental decoding through the key/value cache: feeding the tokens in pieces gives, at
//! every position, the logits transformers computed for the whole sequence in one pass
//! (fixtures written by `tests/fixtures/make_fixtures.py`).

use burn::tensor::Tensor;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::LanguageModel;

mod common;
use common::{fixtures, io, max_diff, values, B};

/// Logits of `ids` `[batch, seq]` computed in pieces: the first `first` positions in one pass,
/// then one position at a time, each pass continuing the same cache.
fn logits_in_pieces<M: LanguageModel<B>>(
    model: &M,
    ids: Tensor<B, 2, burn::tensor::Int>,
    first: usize,
) -> Tensor<B, 3> {
    let [b, s] = ids.dims();
    let mut cache = model.new_cache(b);
    let mut parts = vec![model
        .lm_logits(model.forward_cached(model.embed(ids.clone().narrow(1, 0, first)), &mut cache))];
    for p in first..s {
        assert_eq!(cache.past_len(), p);
        let h = model.forward_cached(model.embed(ids.clone().narrow(1, p, 1)), &mut cache);
        parts.push(model.lm_logits(h));
    }
    Tensor::cat(parts, 1)
}

fn check<M: LanguageModel<B>>(name: &str, model: &M) {
    let (ids, want, want_shape) = io(&fixtures().join(name), "logits");
    let (got, shape) = values(logits_in_pieces(model, ids, 3));
    assert_eq!(shape, want_shape);
    let d = max_diff(&got, &want);
    println!("{name}: incremental logits vs transformers, max abs diff {d:.3e}");
    assert!(d <= 1e-4, "{name}: max abs diff {d}");
}

#[test]
fn gpt2_incremental_equals_transformers_full_pass() {
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    check("gpt2_a", &m);
}

#[test]
fn llama_gqa_incremental_equals_transformers_full_pass() {
    let (m, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default()).unwrap();
    assert!(m.attention_shape().num_kv_heads < m.attention_shape().num_heads);
    check("llama_a", &m);
}

#[test]
fn attention_shapes() {
    let (g, c) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    let s = g.attention_shape();
    assert_eq!(
        (s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim),
        (c.n_layer, c.n_head, c.n_head, c.n_embd / c.n_head)
    );
    assert_eq!(g.max_positions(), Some(c.n_positions));
    let (l, c) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default()).unwrap();
    let s = l.attention_shape();
    assert_eq!(
        (s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim),
        (
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim
        )
    );
    assert_eq!(l.max_positions(), None);
}
