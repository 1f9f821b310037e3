//! `Gpt2::random` / `Gpt2Config::gpt2_124m`: shapes and initialisation against transformers.
use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use lora_core::count_parameters;
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_models::LanguageModel;

type B = NdArray<f32>;

fn std_of(t: burn::tensor::Tensor<B, 2>) -> f64 {
    let v: Vec<f32> = t.into_data().to_vec().unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn gpt2_124m_config_is_transformers_default() {
    let c = Gpt2Config::gpt2_124m();
    assert_eq!(
        (
            c.vocab_size,
            c.n_positions,
            c.n_embd,
            c.n_layer,
            c.n_head,
            c.n_inner
        ),
        (50257, 1024, 768, 12, 12, 3072)
    );
}

#[test]
fn random_tiny_matches_transformers_shape_and_init() {
    let device = Default::default();
    B::seed(&device, 7);
    let c = Gpt2Config::sized(1000, 128, 64, 2, 4).unwrap();
    let m = Gpt2::<B>::random(&c, &device).unwrap();
    // transformers: GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=128, n_embd=64,
    // n_layer=2, n_head=4)).num_parameters() == 172288 (tied head counted once).
    assert_eq!(count_parameters(&m).all, 172_288);
    assert_eq!(count_parameters(&m).trainable, 0);
    // _init_weights: N(0, 0.02); c_proj N(0, 0.02/sqrt(2·n_layer)) = 0.01 here.
    let s_attn = std_of(m.h[0].attn.c_attn.base_weight());
    let s_proj = std_of(m.h[1].mlp.c_proj.base_weight());
    let s_wte = std_of(m.wte.val());
    assert!((s_attn / 0.02 - 1.0).abs() < 0.05, "c_attn std {s_attn}");
    assert!((s_proj / 0.01 - 1.0).abs() < 0.05, "c_proj std {s_proj}");
    assert!((s_wte / 0.02 - 1.0).abs() < 0.05, "wte std {s_wte}");
    // A random-weight LM predicts near-uniformly: logits are finite and small.
    let ids = burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(vec![1i64, 5, 999, 0], [1, 4]),
        &device,
    );
    let logits = m.forward(ids);
    assert_eq!(logits.dims(), [1, 4, 1000]);
    let v: Vec<f32> = logits.into_data().to_vec().unwrap();
    assert!(v.iter().all(|x| x.is_finite() && x.abs() < 5.0));
}
