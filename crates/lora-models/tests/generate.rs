//! Text generation against transformers' `generate` (greedy outputs saved by
//! `tests/fixtures/make_generate_fixtures.py`), seeded sampling through the loop, configuration
//! and prompt errors, prompt-learning wrappers, and the SmolLM2 chat prompt (closed forms of the
//! processors: `generate_processors.rs`).
use burn::tensor::{Tensor, TensorData};
use lora_core::{LoraLayerConfig, NamedLinears};
use lora_models::generate::sampling::argmax;
use lora_models::generate::{
    generate, ChatMessage, ChatTemplate, GenerateError, Generation, GenerationConfig,
    JinjaChatTemplate, SpecialIds, StopReason,
};
use lora_models::gguf::GgufFile;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::tokenizer::Tokenizer;
use lora_models::LanguageModel;
use std::path::Path;

mod common;
use common::{fixtures, real_gguf, B};

/// A transformers `generate` case: prompts, expected sequences and its settings.
struct Case {
    prompts: Vec<Vec<u32>>,
    want: Vec<Vec<u32>>,
    config: GenerationConfig,
}

fn rows(ids: Vec<i64>, shape: &[usize]) -> Vec<Vec<u32>> {
    ids.chunks(shape[1])
        .map(|r| r.iter().map(|&t| t as u32).collect())
        .collect()
}

fn case(name: &str) -> Case {
    let st = StFile::open(
        fixtures()
            .join("generate")
            .join(format!("{name}.safetensors")),
    )
    .unwrap();
    let (ids, s) = st.i64("input_ids").unwrap();
    let (out, so) = st.i64("output_ids").unwrap();
    let one = |k: &str| st.i64(k).unwrap().0[0];
    let (eos, pad) = (one("eos_token_id"), one("pad_token_id"));
    Case {
        prompts: rows(ids, &s),
        want: rows(out, &so),
        config: GenerationConfig {
            max_new_tokens: one("max_new_tokens") as usize,
            repetition_penalty: st.f32("repetition_penalty").unwrap().0[0],
            eos_token_ids: if eos < 0 { vec![] } else { vec![eos as u32] },
            pad_token_id: (pad >= 0).then_some(pad as u32),
            ..Default::default()
        },
    }
}

fn gpt2() -> Gpt2<B> {
    Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default())
        .unwrap()
        .0
}

fn llama() -> Llama<B> {
    Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default())
        .unwrap()
        .0
}

/// Attaches a PEFT LoRA fixture adapter (r 4, lora_alpha 8; A `[r, in]`, B `[out, r]`).
fn with_lora<M: NamedLinears<B>>(mut model: M, dir: &Path) -> M {
    let st = StFile::open(dir.join("adapter_model.safetensors")).unwrap();
    let cfg = LoraLayerConfig {
        r: 4,
        lora_alpha: 8.0,
        ..Default::default()
    };
    let mut n = 0;
    model.visit_linears_mut(&mut |name, l| {
        let ka = format!("base_model.model.{name}.lora_A.weight");
        let kb = format!("base_model.model.{name}.lora_B.weight");
        let (Ok((a, sa)), Ok((b, sb))) = (st.f32(&ka), st.f32(&kb)) else {
            return;
        };
        let dev = Default::default();
        let a = Tensor::<B, 2>::from_data(TensorData::new(a, [sa[0], sa[1]]), &dev).transpose();
        let b = Tensor::<B, 2>::from_data(TensorData::new(b, [sb[0], sb[1]]), &dev).transpose();
        l.attach_tensors(a, b, &cfg).unwrap();
        n += 1;
    });
    assert!(n > 0, "no adapter layer attached from {}", dir.display());
    model
}

fn run<M: LanguageModel<B>>(model: &M, prompts: &[Vec<u32>], c: &GenerationConfig) -> Generation {
    generate(model, prompts, c, &Default::default()).unwrap()
}

/// Greedy decoding equals transformers token for token; returns the stop reason.
fn check<M: LanguageModel<B>>(name: &str, model: &M) -> StopReason {
    let c = case(name);
    let g = run(model, &c.prompts, &c.config);
    println!(
        "{name}: {:?} new tokens, stop {:?}",
        g.new_tokens(0),
        g.stop
    );
    assert_eq!(g.prompt_len, c.prompts[0].len());
    assert_eq!(
        g.sequences, c.want,
        "{name}: sequences differ from transformers"
    );
    g.stop
}

#[test]
fn gpt2_greedy_matches_transformers() {
    let m = gpt2();
    assert_eq!(check("gpt2_a_greedy", &m), StopReason::MaxNewTokens);
    assert_eq!(check("gpt2_a_penalty", &m), StopReason::MaxNewTokens);
    // One row stops at EOS, is filled with pad_token_id while the other continues.
    let c = case("gpt2_a_stop");
    let pad = c.config.pad_token_id.unwrap();
    assert!(c.want.iter().any(|r| r.ends_with(&[pad, pad])));
    check("gpt2_a_stop", &m);
}

#[test]
fn llama_gqa_greedy_matches_transformers() {
    let m = llama();
    assert_eq!(check("llama_a_greedy", &m), StopReason::MaxNewTokens);
    assert_eq!(check("llama_a_penalty", &m), StopReason::MaxNewTokens);
    check("llama_a_stop", &m);
}

#[test]
fn greedy_with_lora_adapter_matches_peft() {
    let g = with_lora(gpt2(), &fixtures().join("gpt2_a_lora"));
    check("gpt2_a_lora_greedy", &g);
    let l = with_lora(llama(), &fixtures().join("llama_a_lora"));
    check("llama_a_lora_greedy", &l);
    // The adapter matters: the base model decodes otherwise.
    assert_ne!(case("gpt2_a_lora_greedy").want, case("gpt2_a_greedy").want);
}

#[test]
fn gpt2_stops_at_max_positions() {
    let m = gpt2();
    let mut c = case("gpt2_a_full");
    // The last token is predicted at the last position and needs none of its own.
    assert_eq!(c.want[0].len(), m.max_positions().unwrap() + 1);
    c.config.max_new_tokens = 100;
    let g = run(&m, &c.prompts, &c.config);
    assert_eq!(g.stop, StopReason::MaxPositions);
    assert_eq!(g.sequences, c.want);
    // A prompt that does not fit is refused, naming max_positions.
    let long = vec![vec![1u32; 33]];
    let e = generate(&m, &long, &c.config, &Default::default()).unwrap_err();
    assert!(
        matches!(&e, GenerateError::Prompt(m) if m.contains("max_positions 32")),
        "{e}"
    );
}

#[test]
fn sampling_with_top_k_1_is_greedy_and_seeds_reproduce() {
    let m = llama();
    let c = case("llama_a_greedy");
    let top1 = GenerationConfig {
        do_sample: true,
        top_k: 1,
        temperature: 0.7,
        seed: 3,
        ..c.config.clone()
    };
    assert_eq!(run(&m, &c.prompts, &top1).sequences, c.want);
    let hot = GenerationConfig {
        do_sample: true,
        top_k: 0,
        temperature: 3.0,
        seed: 1,
        ..c.config.clone()
    };
    let a = run(&m, &c.prompts, &hot);
    assert_eq!(a, run(&m, &c.prompts, &hot), "same seed, other tokens");
    let b = run(&m, &c.prompts, &GenerationConfig { seed: 2, ..hot });
    assert_ne!(
        a.sequences, b.sequences,
        "seeds 1 and 2 drew the same 24 tokens"
    );
    assert_ne!(
        a.sequences, c.want,
        "sampling at temperature 3 reproduced greedy"
    );
}

fn config_error(c: GenerationConfig) -> &'static str {
    match generate(&llama(), &[vec![1, 2, 3]], &c, &Default::default()) {
        Err(GenerateError::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_settings_name_their_field() {
    let s = GenerationConfig {
        do_sample: true,
        ..Default::default()
    };
    let f = |c: GenerationConfig| config_error(c);
    assert_eq!(
        f(GenerationConfig {
            temperature: 0.0,
            ..s.clone()
        }),
        "temperature"
    );
    assert_eq!(
        f(GenerationConfig {
            temperature: f32::NAN,
            ..s.clone()
        }),
        "temperature"
    );
    for p in [0.0, -0.1, 1.5] {
        assert_eq!(
            f(GenerationConfig {
                top_p: p,
                ..s.clone()
            }),
            "top_p"
        );
    }
    assert_eq!(
        f(GenerationConfig {
            repetition_penalty: 0.0,
            ..Default::default()
        }),
        "repetition_penalty"
    );
    assert_eq!(
        f(GenerationConfig {
            max_new_tokens: 0,
            ..Default::default()
        }),
        "max_new_tokens"
    );
    assert_eq!(
        f(GenerationConfig {
            eos_token_ids: vec![97],
            ..Default::default()
        }),
        "eos_token_ids"
    );
    assert_eq!(
        f(GenerationConfig {
            eos_token_ids: vec![2],
            pad_token_id: Some(500),
            ..Default::default()
        }),
        "pad_token_id"
    );
    // Temperature 0 is fine for greedy decoding (transformers ignores it there).
    let greedy = GenerationConfig {
        temperature: 0.0,
        max_new_tokens: 2,
        ..Default::default()
    };
    assert!(generate(&llama(), &[vec![1, 2]], &greedy, &Default::default()).is_ok());
    let e = GenerateError::Config {
        field: "top_p",
        value: "1.5".into(),
        expected: "a number in (0, 1]".into(),
    };
    assert_eq!(
        e.to_string(),
        "generation config: `top_p` is 1.5, expected a number in (0, 1]"
    );
}

#[test]
fn bad_prompts_are_refused() {
    let m = llama();
    let c = GenerationConfig::default();
    let err = |p: &[Vec<u32>]| match generate(&m, p, &c, &Default::default()) {
        Err(GenerateError::Prompt(msg)) => msg,
        other => panic!("expected a prompt error, got {other:?}"),
    };
    assert!(err(&[]).contains("no rows"));
    assert!(err(&[vec![]]).contains("empty"));
    assert!(err(&[vec![1, 2], vec![3]]).contains("row 1 has 1 tokens but row 0 has 2"));
    assert!(err(&[vec![1, 97]]).contains("token 1 is 97, outside the vocabulary of 97"));
}

/// The real SmolLM2-135M-Instruct: chat prompt ids as transformers' `apply_chat_template`, and
/// greedy decoding to `<|im_end|>` as transformers' `generate` on the dequantized GGUF.
#[test]
fn smollm2_chat_greedy_matches_transformers() {
    let Some(path) = real_gguf() else { return };
    let g = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let chat = ChatTemplate::from_gguf(&g).unwrap().unwrap();
    assert_eq!(
        chat.default_system.as_deref(),
        Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    );
    let c = case("smollm2_chat");
    let prompt = tok
        .encode(&chat.render(None, "What is the capital of France?"))
        .unwrap();
    assert_eq!(vec![prompt], c.prompts);
    // The GGUF's own template rendered by minijinja gives the same prompt ids.
    let jinja = JinjaChatTemplate::from_tokenizer(&tok).unwrap().unwrap();
    let text = jinja
        .render(
            &[ChatMessage::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    assert_eq!(tok.encode_with(&text, false).unwrap(), c.prompts[0]);
    assert_eq!(
        c.config.eos_token_ids,
        [tok.token_id("<|im_end|>").unwrap()]
    );
    let (model, _) = Llama::<B>::from_gguf(&g, &Default::default()).unwrap();
    let out = run(&model, &c.prompts, &c.config);
    let text = tok.decode(out.new_tokens(0)).unwrap();
    println!("SmolLM2: {text:?} ({:?})", out.stop);
    assert_eq!(out.sequences, c.want);
    assert_eq!(out.stop, StopReason::Eos);
    assert_eq!(text, "The capital of France is Paris.<|im_end|>");
}

#[test]
fn special_ids_from_model_files() {
    let s = SpecialIds::from_model_path(&fixtures().join("gpt2_a")).unwrap();
    assert_eq!(
        s,
        SpecialIds {
            eos_token_ids: vec![100],
            pad_token_id: None
        }
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("generation_config.json"),
        r#"{"eos_token_id": [2, 7], "pad_token_id": 0}"#,
    )
    .unwrap();
    let s = SpecialIds::from_model_path(tmp.path()).unwrap();
    assert_eq!((s.eos_token_ids, s.pad_token_id), (vec![2, 7], Some(0)));
    std::fs::write(
        tmp.path().join("generation_config.json"),
        r#"{"eos_token_id": -1}"#,
    )
    .unwrap();
    let e = SpecialIds::from_model_path(tmp.path()).unwrap_err();
    assert!(e.to_string().contains("`eos_token_id`"), "{e}");
}

#[test]
fn output_ids_file_round_trip() {
    let c = case("llama_a_greedy");
    let g = run(&llama(), &c.prompts, &c.config);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("out.safetensors");
    g.save_safetensors(&p).unwrap();
    let (ids, shape) = StFile::open(&p).unwrap().i64("output_ids").unwrap();
    assert_eq!(shape, [2, 17]);
    assert_eq!(rows(ids, &shape), c.want);
}

/// A prompt-learning stand-in: `virtual_tokens` embeddings before the real ones
/// (`input_embeds`) and `prefix` keys/values in a fresh cache (`new_cache`), both random.
#[derive(burn::module::Module, Clone, Debug)]
struct Wrapped<Bk: burn::tensor::backend::Backend> {
    inner: Gpt2<Bk>,
    virtual_tokens: burn::module::Param<Tensor<Bk, 2>>,
    prefix_len: usize,
}

impl NamedLinears<B> for Wrapped<B> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &lora_core::LoraLinear<B>)) {
        self.inner.visit_linears(f)
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut lora_core::LoraLinear<B>)) {
        self.inner.visit_linears_mut(f)
    }
}

impl LanguageModel<B> for Wrapped<B> {
    fn embed(&self, ids: Tensor<B, 2, burn::tensor::Int>) -> Tensor<B, 3> {
        self.inner.embed(ids)
    }
    fn forward_cached(&self, e: Tensor<B, 3>, cache: &mut lora_models::KvCache<B>) -> Tensor<B, 3> {
        self.inner.forward_cached(e, cache)
    }
    fn attention_shape(&self) -> lora_models::AttentionShape {
        self.inner.attention_shape()
    }
    fn new_cache(&self, batch: usize) -> lora_models::KvCache<B> {
        let s = self.attention_shape();
        if self.prefix_len == 0 {
            return lora_models::KvCache::new(s.num_layers);
        }
        let dist = burn::tensor::Distribution::Normal(0.0, 1.0);
        let dev = Default::default();
        let kv = |seed: u64| {
            <B as burn::tensor::backend::Backend>::seed(&dev, seed);
            Tensor::<B, 4>::random([1, s.num_kv_heads, self.prefix_len, s.head_dim], dist, &dev)
                .repeat_dim(0, batch)
        };
        lora_models::KvCache::from_layers(
            (0..s.num_layers as u64)
                .map(|i| lora_models::LayerKv {
                    key: kv(2 * i),
                    value: kv(2 * i + 1),
                })
                .collect(),
        )
    }
    fn num_virtual_tokens(&self) -> usize {
        self.virtual_tokens.dims()[0]
    }
    fn input_embeds(&self, ids: Tensor<B, 2, burn::tensor::Int>) -> Tensor<B, 3> {
        if self.num_virtual_tokens() == 0 {
            return self.inner.embed(ids);
        }
        let b = ids.dims()[0];
        let v = self
            .virtual_tokens
            .val()
            .unsqueeze_dim::<3>(0)
            .repeat_dim(0, b);
        Tensor::cat(vec![v, self.inner.embed(ids)], 1)
    }
    fn lm_logits(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        self.inner.lm_logits(h)
    }
    fn output_embedding_rows(&self, ids: &[u32]) -> Tensor<B, 2> {
        self.inner.output_embedding_rows(ids)
    }
    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn max_positions(&self) -> Option<usize> {
        self.inner.max_positions()
    }
}

/// Greedy tokens recomputed without a cache: each step a full [`LanguageModel::forward`] over
/// the sequence so far (the wrapper's prefix and virtual tokens included), argmax of the last
/// position.
fn greedy_by_full_passes<M: LanguageModel<B>>(
    m: &M,
    prompts: &[Vec<u32>],
    n: usize,
) -> Vec<Vec<u32>> {
    let mut seqs = prompts.to_vec();
    for _ in 0..n {
        let len = seqs[0].len();
        let flat: Vec<i64> = seqs.iter().flatten().map(|&t| t as i64).collect();
        let ids = common::ids_tensor(flat, &[seqs.len(), len]);
        let logits: Vec<f32> = m
            .forward(ids)
            .narrow(1, len - 1, 1)
            .into_data()
            .into_vec()
            .unwrap();
        for (s, row) in seqs.iter_mut().zip(logits.chunks(m.vocab_size())) {
            s.push(argmax(row) as u32);
        }
    }
    seqs
}

/// Generation goes through `new_cache` and `input_embeds`: with a prefix and virtual tokens it
/// equals full passes of the wrapper (and differs from the bare model).
#[test]
fn wrappers_prefix_and_virtual_tokens_take_part() {
    for (prefix_len, virt) in [(3, 0), (0, 4), (2, 3)] {
        let dev = Default::default();
        let inner = gpt2();
        let hidden = inner.hidden_size();
        <B as burn::tensor::backend::Backend>::seed(&dev, 99);
        let w = Wrapped {
            inner,
            virtual_tokens: burn::module::Param::from_tensor(Tensor::random(
                [virt, hidden],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &dev,
            )),
            prefix_len,
        };
        let c = case("gpt2_a_greedy");
        let g = run(&w, &c.prompts, &c.config);
        let want = greedy_by_full_passes(&w, &c.prompts, c.config.max_new_tokens);
        assert_eq!(g.sequences, want, "prefix {prefix_len}, virtual {virt}");
        assert_ne!(
            g.sequences, c.want,
            "prefix {prefix_len}, virtual {virt}: no effect"
        );
        // Positions: prefix + virtual + prompt + new − 1 ≤ n_positions (32).
        let long = GenerationConfig {
            max_new_tokens: 100,
            ..c.config.clone()
        };
        let g = run(&w, &c.prompts, &long);
        assert_eq!(g.stop, StopReason::MaxPositions);
        assert_eq!(prefix_len + virt + g.sequences[0].len(), 33);
    }
}
