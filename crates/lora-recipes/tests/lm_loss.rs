//! The chunked next-token training loss against the full-logits one on a tiny GPT-2 and on the
//! Llama fixture (tied head, grouped-query attention), each with LoRA (both paths from the same
//! model and batch): the loss, and every LoRA gradient; and the full path against
//! `lm_loss_sum`, which `score_eval.rs` checks against a host computation.

mod common;

use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{values, AB};
use lora_data::imdb::Batch;
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_models::llama::Llama;
use lora_models::LanguageModel;
use lora_peft::tuners::lora::InitLoraWeights;
use lora_peft::{apply_lora, LoraConfig};
use lora_recipes::eval::lm_loss_sum;
use lora_recipes::lm_loss::{next_token_loss_sum, next_token_mask, LmLoss};
use std::path::Path;

/// Right-padded rows of lengths 7, 4 and 2 (pad id 0).
fn batch() -> Batch {
    Batch {
        input_ids: vec![
            4, 9, 2, 17, 30, 11, 6, //
            45, 3, 8, 21, 0, 0, 0, //
            12, 5, 0, 0, 0, 0, 0,
        ],
        lengths: vec![7, 4, 2],
        labels: vec![0; 3],
        batch: 3,
        seq: 7,
    }
}

/// A tiny GPT-2 (vocab 50) with LoRA on `c_attn` and `c_fc`, B not zeroed so that every LoRA
/// matrix gets a gradient.
fn model() -> Gpt2<AB> {
    let device = Default::default();
    AB::seed(&device, 11);
    let c = Gpt2Config::sized(50, 16, 8, 2, 2).expect("valid config");
    let mut m = Gpt2::<AB>::random(&c, &device).expect("random model");
    let mut cfg = LoraConfig::new(4, 8.0, &["c_attn", "c_fc"]);
    cfg.fan_in_fan_out = true;
    cfg.init_lora_weights = InitLoraWeights::Bool(false);
    apply_lora(&mut m, &cfg, &device).expect("LoRA");
    m
}

/// The Llama fixture `tests/fixtures/llama_a` (tied head) with LoRA on `q_proj` and `v_proj`,
/// B not zeroed.
fn llama() -> Llama<AB> {
    let device = Default::default();
    AB::seed(&device, 12);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama_a");
    let (mut m, _) = Llama::<AB>::load_hf(&dir, &device).expect("llama_a fixture");
    let mut cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    cfg.init_lora_weights = InitLoraWeights::Bool(false);
    apply_lora(&mut m, &cfg, &device).expect("LoRA");
    m
}

/// The loss value and the gradients of every LoRA matrix, in visiting order.
fn loss_and_grads<M: LanguageModel<AB>>(m: &M, how: LmLoss) -> (f32, Vec<Vec<f32>>) {
    let device = Default::default();
    let b = batch();
    let ids = Tensor::<AB, 2, Int>::from_data(
        TensorData::new(b.input_ids.clone(), [b.batch, b.seq]),
        &device,
    );
    let (mask, count) = next_token_mask::<AB>(&b, &device);
    assert_eq!(count, 6 + 3 + 1);
    let loss = next_token_loss_sum(m, ids, mask, how).expect("loss");
    let value = values(loss.clone().inner())[0];
    let grads = loss.backward();
    let mut out = Vec::new();
    m.visit_linears(&mut |_, l| {
        if let Some(a) = l.adapter() {
            for t in [a.lora_a(), a.lora_b()] {
                out.push(values(t.grad(&grads).expect("LoRA gradient")));
            }
        }
    });
    (value, out)
}

#[test]
fn chunked_loss_and_lora_gradients_equal_the_full_logits_ones() {
    let m = model();
    let want = values(lm_loss_sum::<common::B, _>(&m.valid(), &batch(), &Default::default()).0);
    compare(&m, want[0], 8);
    let l = llama();
    assert!(
        l.lm_head_weight().is_some(),
        "a tied Llama head is one weight"
    );
    let want = values(lm_loss_sum::<common::B, _>(&l.valid(), &batch(), &Default::default()).0);
    compare(&l, want[0], l.layers.len() * 2 * 2);
}

/// Chunked and full losses within 1e-5 of `want`, and `n` LoRA gradients, none all zero, equal
/// within 1e-5.
fn compare<M: LanguageModel<AB>>(m: &M, want: f32, n: usize) {
    let (full, g_full) = loss_and_grads(m, LmLoss::Full);
    let (chunked, g_chunked) = loss_and_grads(m, LmLoss::Chunked);
    println!("loss: full {full}, chunked {chunked}, lm_loss_sum {want}");
    assert!((full - want).abs() <= 1e-5 * want.abs(), "{full} vs {want}");
    assert!(
        (chunked - want).abs() <= 1e-5 * want.abs(),
        "{chunked} vs {want}"
    );
    assert_eq!(g_full.len(), n, "layers × targets × (A, B)");
    let mut worst = 0.0f32;
    for (a, b) in g_full.iter().zip(&g_chunked) {
        assert!(a.iter().any(|x| *x != 0.0), "a LoRA gradient is zero");
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    println!("LoRA gradients: max abs diff {worst:.2e}");
    assert!(worst <= 1e-5, "LoRA gradients differ by {worst}");
}

#[test]
fn a_short_sequence_or_a_wrong_mask_is_an_error() {
    let m = model();
    let device = Default::default();
    let one = Tensor::<AB, 2, Int>::zeros([2, 1], &device);
    let e = next_token_loss_sum(&m, one, Tensor::zeros([2, 0], &device), LmLoss::Chunked);
    assert!(e.unwrap_err().contains("seq ≥ 2"));
    let ids = Tensor::<AB, 2, Int>::zeros([2, 5], &device);
    let e = next_token_loss_sum(&m, ids, Tensor::zeros([2, 5], &device), LmLoss::Full);
    assert!(e.unwrap_err().contains("mask [2, 4]"));
}
