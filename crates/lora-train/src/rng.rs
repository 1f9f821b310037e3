//! The random stream of a step.

/// The seed of step `step`'s random stream (1-based): SplitMix64 (Steele et al. 2014) of
/// `seed + step·φ`, where φ = 0x9E3779B97F4A7C15. Reseeding the backend with it before every
/// step makes the dropout masks of step s depend on (seed, s) only, so a run resumed at any
/// step draws exactly the masks of an uninterrupted one.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed.wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
