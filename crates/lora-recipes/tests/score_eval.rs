//! The verbalizer head, accuracy and language-model loss on a tiny random GPT-2, against
//! values computed independently from the model's own logits.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{tiny_gpt2, values, B};
use lora_data::imdb::Batch;
use lora_models::gpt2::Gpt2;
use lora_models::LanguageModel;
use lora_recipes::eval::{accuracy, lm_loss_sum, perplexity};
use lora_recipes::score::{init_classifier, verbalizer_classifier};
use lora_recipes::ScoreInit;

/// A right-padded batch of two rows of 5 columns: lengths 5 and 3, pad id 0.
fn batch(labels: [i64; 2]) -> Batch {
    Batch {
        input_ids: vec![4, 9, 2, 17, 30, 11, 6, 45, 0, 0],
        lengths: vec![5, 3],
        labels: labels.to_vec(),
        batch: 2,
        seq: 5,
    }
}

fn ids(b: &Batch) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(b.input_ids.clone(), [b.batch, b.seq]),
        &Default::default(),
    )
}

/// The LM logits `[batch, seq, vocab]` of `m` on the host. Tests build their model once and
/// clone it: the backend's seeded generator is shared by the test threads, so two models drawn
/// from the same seed in one test can differ.
fn lm_logits(m: &Gpt2<B>, b: &Batch) -> (Vec<f32>, usize) {
    let v = m.vocab_size();
    (values(m.forward(ids(b))), v)
}

#[test]
fn verbalizer_head_scores_are_the_lm_logits_of_the_two_words() {
    // With score rows = the tied output embeddings of ids 12 and 33, the classifier's logits
    // are the LM's next-token logits of those two ids at each row's last real token.
    let b = batch([0, 1]);
    let m = tiny_gpt2(7);
    let (lm, v) = lm_logits(&m, &b);
    let clf = verbalizer_classifier(m, (12, 33)).unwrap();
    let got = values(clf.forward(ids(&b), &b.lengths));
    for (row, &len) in b.lengths.iter().enumerate() {
        let at = (row * b.seq + len - 1) * v;
        for (j, id) in [12usize, 33].into_iter().enumerate() {
            let want = lm[at + id];
            let g = got[row * 2 + j];
            assert!(
                (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{g} vs {want}"
            );
        }
    }
}

#[test]
fn random_head_has_two_labels() {
    let tok = lora_models::tokenizer::Tokenizer::gpt2().unwrap();
    let device = Default::default();
    let clf = init_classifier(tiny_gpt2(1), &tok, ScoreInit::Random, &device).unwrap();
    assert_eq!(clf.num_labels(), 2);
}

#[test]
fn accuracy_counts_argmax_hits() {
    let b = batch([0, 0]);
    let clf = verbalizer_classifier(tiny_gpt2(7), (12, 33)).unwrap();
    let logits = values(clf.forward(ids(&b), &b.lengths));
    // Labels = the argmax of each row: accuracy 1; the opposite labels: 0.
    let arg: Vec<i64> = logits
        .chunks(2)
        .map(|r| if r[1] > r[0] { 1 } else { 0 })
        .collect();
    let right = batch([arg[0], arg[1]]);
    let wrong = batch([1 - arg[0], 1 - arg[1]]);
    let half = batch([arg[0], 1 - arg[1]]);
    let device = Default::default();
    assert_eq!(accuracy(&clf, std::slice::from_ref(&right), &device).0, 1.0);
    assert_eq!(accuracy(&clf, &[wrong], &device).0, 0.0);
    assert_eq!(accuracy(&clf, &[half, right], &device).0, 0.75);
}

#[test]
fn lm_loss_sum_is_the_masked_nll_of_the_next_tokens() {
    let b = batch([0, 0]);
    let m = tiny_gpt2(7);
    let (lm, v) = lm_logits(&m, &b);
    // Host computation in f64: −Σ log softmax(logits[t])[ids[t+1]] over t + 1 < length.
    let mut want = 0.0f64;
    let mut count = 0usize;
    for (row, &len) in b.lengths.iter().enumerate() {
        for t in 0..len - 1 {
            let at = (row * b.seq + t) * v;
            let l = &lm[at..at + v];
            let max = l.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x)) as f64;
            let lse = max + l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            let next = b.input_ids[row * b.seq + t + 1] as usize;
            want += lse - l[next] as f64;
            count += 1;
        }
    }
    assert_eq!(count, 4 + 2);
    let device = Default::default();
    let (sum, n) = lm_loss_sum::<B, _>(&m, &b, &device);
    assert_eq!(n, count);
    let got = values(sum)[0] as f64;
    assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
    let ppl = perplexity(&m, &[b], &device);
    let want_ppl = (want / count as f64).exp();
    assert!(
        (ppl - want_ppl).abs() < 1e-4 * want_ppl,
        "{ppl} vs {want_ppl}"
    );
}
