//! Closed forms of transformers' logits processors (`generation/logits_process.py`), seeded
//! sampling, and ChatML prompt rendering.
use lora_models::generate::sampling::{
    apply_repetition_penalty, apply_temperature, apply_top_k, apply_top_p, argmax, sample,
    seeded_rng,
};
use lora_models::generate::ChatTemplate;

const NEG: f32 = f32::NEG_INFINITY;

#[test]
fn repetition_penalty_closed_form() {
    // Seen ids 0, 1 (twice), 4 and one outside the vocabulary: each penalised once.
    let mut s = [2.0, -1.0, 0.5, -3.0, 0.0];
    apply_repetition_penalty(&mut s, &[0, 1, 1, 7, 4], 2.0);
    assert_eq!(s, [1.0, -2.0, 0.5, -3.0, 0.0]);
    let mut s = [2.0, -1.0];
    apply_repetition_penalty(&mut s, &[0, 1], 0.5);
    assert_eq!(s, [4.0, -0.5]);
}

#[test]
fn temperature_and_top_k_closed_form() {
    let mut s = [1.0, -2.0, 4.0];
    apply_temperature(&mut s, 0.5);
    assert_eq!(s, [2.0, -4.0, 8.0]);
    let mut s = [1.0, 3.0, 2.0, 2.0, 0.0];
    apply_top_k(&mut s, 2);
    // The 2nd largest is 2.0, so both 2.0s stay (transformers keeps ties with the k-th).
    assert_eq!(s, [NEG, 3.0, 2.0, 2.0, NEG]);
    let mut s = [1.0, 3.0, 2.0];
    apply_top_k(&mut s, 1);
    assert_eq!(s, [NEG, 3.0, NEG]);
    let mut s = [1.0, 3.0, 2.0];
    apply_top_k(&mut s, 0);
    assert_eq!(s, [1.0, 3.0, 2.0]);
}

#[test]
fn top_p_closed_form() {
    // Probabilities 0.1, 0.2, 0.3, 0.4 (shuffled): ascending cumulative 0.1, 0.3, 0.6, 1.0.
    let logits = || [0.3f32.ln(), 0.1f32.ln(), 0.4f32.ln(), 0.2f32.ln()];
    let kept = |p: f32| {
        let mut s = logits();
        apply_top_p(&mut s, p);
        s.iter().map(|x| x.is_finite()).collect::<Vec<_>>()
    };
    // top_p 0.65: drop cumulative ≤ 0.35 (0.1, 0.2).
    assert_eq!(kept(0.65), [true, false, true, false]);
    // top_p 0.8: drop ≤ 0.2 (0.1 only).
    assert_eq!(kept(0.8), [true, false, true, true]);
    // top_p 0.35: drop ≤ 0.65 (0.1, 0.2, 0.3).
    assert_eq!(kept(0.35), [false, false, true, false]);
    // The most likely token always stays.
    assert_eq!(kept(1e-6), [false, false, true, false]);
    assert_eq!(kept(1.0), [true; 4]);
    let mut s = logits();
    apply_top_p(&mut s, 0.65);
    assert_eq!(s[0], 0.3f32.ln());
}

#[test]
fn argmax_takes_the_first_maximum() {
    assert_eq!(argmax(&[1.0, 5.0, 5.0, 2.0]), 1);
    assert_eq!(argmax(&[NEG, -1.0]), 1);
}

#[test]
fn seeded_draws_follow_the_softmax() {
    let scores = [0.2f32.ln(), NEG, 0.8f32.ln()];
    let mut rng = seeded_rng(7);
    let n = 20_000;
    let mut counts = [0usize; 3];
    for _ in 0..n {
        counts[sample(&scores, &mut rng)] += 1;
    }
    assert_eq!(counts[1], 0, "a token at −∞ was drawn");
    let f = counts[0] as f64 / n as f64;
    // Binomial standard deviation sqrt(0.2·0.8/20000) ≈ 0.0028.
    assert!((f - 0.2).abs() < 0.015, "frequency of p=0.2 token: {f}");
    let mut r1 = seeded_rng(7);
    let first: Vec<usize> = (0..20).map(|_| sample(&scores, &mut r1)).collect();
    let mut r2 = seeded_rng(7);
    let again: Vec<usize> = (0..20).map(|_| sample(&scores, &mut r2)).collect();
    assert_eq!(first, again);
}

#[test]
fn chatml_template_closed_form() {
    let t = ChatTemplate::from_template(
        "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{{'<|im_start|>' + message['role']}}",
    )
    .unwrap();
    assert_eq!(t.default_system.as_deref(), Some("Be brief."));
    assert_eq!(
        t.render(None, "Hi"),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(Some("S"), "Hi"),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let plain =
        ChatTemplate::from_template("{{'<|im_start|>' + message['role'] + '\\n'}}").unwrap();
    assert_eq!(plain.default_system, None);
    assert_eq!(
        plain.render(None, "x"),
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(ChatTemplate::from_template("[INST] {{ message }} [/INST]").is_none());
}
