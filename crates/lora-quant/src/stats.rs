//! Storage and reconstruction-error reporting.

/// Storage and error of one quantized tensor against its f32 original.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantStats {
    /// Number of values.
    pub numel: usize,
    /// Bytes of the quantized representation (codes and scales).
    pub quant_bytes: usize,
    /// Bytes of the f32 original (`4 · numel`).
    pub f32_bytes: usize,
    /// `8 · quant_bytes / numel`.
    pub bits_per_parameter: f64,
    /// `max |x − dequant(x)|`.
    pub max_abs_error: f64,
    /// `sqrt(mean((x − dequant(x))²))`.
    pub rms_error: f64,
}

/// Compares an original with its reconstruction; `quant_bytes` is the quantized storage size
/// (for example [`crate::Nf4Tensor::storage_bytes`]). Slices of different lengths are compared
/// over the shorter one.
pub fn error_stats(original: &[f32], reconstructed: &[f32], quant_bytes: usize) -> QuantStats {
    let n = original.len().min(reconstructed.len());
    let (mut max, mut sq) = (0f64, 0f64);
    for (&a, &b) in original.iter().zip(reconstructed) {
        let d = (a as f64 - b as f64).abs();
        max = max.max(d);
        sq += d * d;
    }
    QuantStats {
        numel: n,
        quant_bytes,
        f32_bytes: 4 * n,
        bits_per_parameter: if n == 0 {
            0.0
        } else {
            8.0 * quant_bytes as f64 / n as f64
        },
        max_abs_error: max,
        rms_error: if n == 0 { 0.0 } else { (sq / n as f64).sqrt() },
    }
}

impl std::fmt::Display for QuantStats {
    /// One line: `n values: 1155 B vs 9240 B f32 (4.50 bits/param), max abs err …, rms …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} values: {} B vs {} B f32 ({:.3} bits/param, {:.2}x smaller), max abs err {:.3e}, rms {:.3e}",
            self.numel,
            self.quant_bytes,
            self.f32_bytes,
            self.bits_per_parameter,
            self.f32_bytes as f64 / self.quant_bytes.max(1) as f64,
            self.max_abs_error,
            self.rms_error
        )
    }
}
