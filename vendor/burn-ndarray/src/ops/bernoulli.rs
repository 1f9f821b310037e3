//! lora-burn patch (vendor/PATCHES.md): Bernoulli tensors (dropout masks) in two passes.
//!
//! rand 0.10's `Bernoulli::sample` draws one `u64` and returns `v < p_int`, with
//! `p_int = ⌊p · 2⁶⁴⌋`, and draws nothing when `p` is 1 (always true). Drawing the tensor's words
//! with one `fill` (the generator's `fill_bytes`: the same words in the same order as successive
//! `next_u64` calls) and comparing them over threads gives the same values and leaves the
//! generator where per-element sampling leaves it, without a call per element.
use alloc::vec::Vec;
use burn_backend::{Element, ElementConversion};
use rand::RngExt;

/// `n` values, each 1 with probability `p` and 0 otherwise, drawn from `rng` as burn's
/// per-element sampler draws them, through a temporary of 8 bytes an element. Panics where
/// `rand::distr::Bernoulli::new(p)` refuses `p` (outside `[0, 1]`, or NaN), as that sampler
/// does.
pub(crate) fn bernoulli<E: Element>(n: usize, p: f64, rng: &mut crate::rand::NdArrayRng) -> Vec<E> {
    let distribution = rand::distr::Bernoulli::new(p).unwrap();
    let (one, zero): (E, E) = (1.elem(), 0.elem());
    if distribution.p() == 1.0 {
        return alloc::vec![one; n];
    }
    let p_int = (p * 2.0 * (1u64 << 63) as f64) as u64;
    let mut words = alloc::vec![0u64; n];
    rng.fill(&mut words[..]);
    let keep = move |&v: &u64| if v < p_int { one } else { zero };
    #[cfg(feature = "multi-threads")]
    if super::par_elementwise::is_large(n) {
        use rayon::prelude::*;
        return words.par_iter().map(keep).collect();
    }
    words.iter().map(keep).collect()
}
