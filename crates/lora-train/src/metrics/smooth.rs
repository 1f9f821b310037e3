//! TensorBoard's smoothing of a noisy curve.

/// The smoothing weight of `loss.png`'s bold curve.
pub const LOSS_SMOOTHING: f64 = 0.9;

/// The exponential moving average TensorBoard draws for its smoothing slider, debiased like
/// Adam's moments: `ema_i = w·ema_{i−1} + (1 − w)·x_i` from `ema_0 = 0`, shown as
/// `ema_i / (1 − w^n)` where `n` counts the finite values so far. Non-finite values (skipped
/// steps) are left out of the average and give NaN at their place. `weight` is in `[0, 1)`;
/// 0 returns the values themselves.
///
/// Source: TensorBoard's `vz_line_chart2/line-chart.ts` (`resmoothDataset`).
pub fn ema(values: &[f64], weight: f64) -> Vec<f64> {
    let (mut last, mut n) = (0.0f64, 0i32);
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return f64::NAN;
            }
            last = last * weight + (1.0 - weight) * v;
            n += 1;
            last / (1.0 - weight.powi(n))
        })
        .collect()
}
