//! The logits processors of transformers' greedy search and multinomial sampling, in the order
//! `generate` applies them (`generation/utils.py::_get_logits_processor`): repetition penalty,
//! then — only when sampling — temperature, top-k, top-p; and the token choice (argmax, or a
//! draw from the softmax with a seeded RNG). Each works on one row of next-token scores (f32,
//! `[vocab]`), on the host: the scores are read back once per step anyway.
use super::GenerationConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The RNG of sampling: rand's `StdRng` seeded with [`GenerationConfig::seed`], so a run is
/// reproducible (not the same draws as PyTorch's generator).
pub fn seeded_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// CTRL repetition penalty (`logits_process.py::RepetitionPenaltyLogitsProcessor`): for every
/// distinct id of `seen` (the sequence so far, prompt included) inside `scores`, a score < 0 is
/// multiplied by `penalty`, any other divided by it. Ids ≥ `scores.len()` are ignored, as
/// transformers does.
///
/// # Shapes
/// `scores` `[vocab]`, `seen` `[len]`.
pub fn apply_repetition_penalty(scores: &mut [f32], seen: &[u32], penalty: f32) {
    let mut done = vec![false; scores.len()];
    for &id in seen {
        let i = id as usize;
        if i < scores.len() && !done[i] {
            done[i] = true;
            let s = scores[i];
            scores[i] = if s < 0.0 { s * penalty } else { s / penalty };
        }
    }
}

/// Temperature (`TemperatureLogitsWarper`): every score divided by `temperature`.
pub fn apply_temperature(scores: &mut [f32], temperature: f32) {
    for s in scores {
        *s /= temperature;
    }
}

/// Top-k (`TopKLogitsWarper`, `min_tokens_to_keep` 1): scores below the `k`-th largest become
/// −∞; ties with the `k`-th are kept. `k` = 0 or ≥ `scores.len()` keeps everything.
pub fn apply_top_k(scores: &mut [f32], k: usize) {
    if k == 0 || k >= scores.len() {
        return;
    }
    let mut sorted = scores.to_vec();
    let (_, &mut kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for s in scores {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Top-p / nucleus (`TopPLogitsWarper`, `min_tokens_to_keep` 1): with the scores sorted
/// ascending (ties by id), the tokens whose cumulative softmax probability is ≤ `1 − top_p`
/// become −∞; the most likely token always stays. `top_p` ≥ 1 keeps everything.
pub fn apply_top_p(scores: &mut [f32], top_p: f32) {
    if top_p >= 1.0 || scores.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let sorted: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
    let probs = softmax(&sorted);
    let cut = 1.0 - top_p;
    let mut cum = 0f32;
    let last = order.len() - 1;
    for (j, (&i, p)) in order.iter().zip(probs).enumerate() {
        cum += p;
        if cum <= cut && j < last {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

/// Softmax of `scores` (f32, max-subtracted; −∞ → 0).
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = scores.iter().map(|&s| (s - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// Index of the largest score, the first one on ties (`torch.argmax`). `scores` must not be
/// empty (0 is returned for an empty slice).
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// A draw from the softmax of `scores` (`torch.multinomial(softmax(scores), 1)`): a uniform
/// number in [0, 1) from `rng` walks the cumulative probabilities (f64). Tokens at −∞ are never
/// drawn.
pub fn sample(scores: &[f32], rng: &mut impl Rng) -> usize {
    let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = scores.iter().map(|&s| (s as f64 - m).exp()).collect();
    let z: f64 = e.iter().sum();
    let u = rng.random::<f64>() * z;
    let mut cum = 0.0;
    let mut last = argmax(scores);
    for (i, &p) in e.iter().enumerate() {
        if p > 0.0 {
            cum += p;
            last = i;
            if u < cum {
                return i;
            }
        }
    }
    // Rounding left u at the total: the last token with any probability.
    last
}

/// Applies the processors `config` switches on to one row of next-token `scores` `[vocab]`,
/// in transformers' order: repetition penalty (when ≠ 1, over `seen`), then when sampling
/// temperature (≠ 1), top-k (≠ 0), top-p (< 1).
pub fn process(scores: &mut [f32], seen: &[u32], config: &GenerationConfig) {
    if config.repetition_penalty != 1.0 {
        apply_repetition_penalty(scores, seen, config.repetition_penalty);
    }
    if config.do_sample {
        if config.temperature != 1.0 {
            apply_temperature(scores, config.temperature);
        }
        apply_top_k(scores, config.top_k);
        apply_top_p(scores, config.top_p);
    }
}

/// The next token of one row: [`process`] then [`sample`] when `config.do_sample`, else
/// [`argmax`].
pub fn next_token(
    scores: &mut [f32],
    seen: &[u32],
    config: &GenerationConfig,
    rng: &mut impl Rng,
) -> u32 {
    process(scores, seen, config);
    let i = if config.do_sample {
        sample(scores, rng)
    } else {
        argmax(scores)
    };
    i as u32
}
