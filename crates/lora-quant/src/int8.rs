//! Absmax int8 quantization: LLM.int8 vector-wise (one absmax per row; Dettmers et al. 2022,
//! "LLM.int8()", §3.2) and per-tensor.
//!
//! Bit-exact with bitsandbytes' `int8_vectorwise_quant(A, threshold=0.0)` (the PyTorch "default"
//! kernel in `bitsandbytes/backends/default/ops.py`, which the CPU runs):
//! `SCB = max|row|` (f32), `CB = round(A · (127 / SCB))` with `torch.round` (half to even), as
//! int8; and `int8_vectorwise_dequant`: `CB · SCB · 7.874015718698502e-3` (f32, in that order;
//! 1/127 as a multiply).
//!
//! With the default threshold 0 no outlier columns are split off. A row of zeros (bitsandbytes
//! divides by 0 and casts NaN to int8) gets codes 0 and SCB 0 here, so it dequantizes to zeros.

use crate::{check_values, QuantError};

/// `1/127` as bitsandbytes writes it in `int8_vectorwise_dequant` (rounded to f32 by torch).
#[allow(clippy::excessive_precision)]
pub(crate) const INV_127: f32 = 7.874_015_718_698_502e-3;

/// An int8-quantized 2-D tensor (`[rows, cols]`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Tensor {
    /// Codes `[rows, cols]` in `[-127, 127]` (bitsandbytes' `CB`).
    pub q: Vec<i8>,
    /// Absmax per row (`[rows]`, vector-wise; bitsandbytes' `SCB`) or one value (per-tensor).
    pub scale: Vec<f32>,
    /// `[rows, cols]`.
    pub shape: [usize; 2],
}

fn quantize_rows(values: &[f32], rows: usize, cols: usize, per_row: bool) -> Int8Tensor {
    let quant = |chunk: &[f32], am: f32, out: &mut Vec<i8>| {
        if am == 0.0 {
            out.extend(std::iter::repeat_n(0i8, chunk.len()));
        } else {
            // torch evaluates bitsandbytes' `A * (127.0 / SCB)` as `reciprocal(SCB) * 127`: the
            // rounding of the reciprocal decides ~1 code in 10^4 (seen on the llama_a fixture).
            let s = (1.0f32 / am) * 127.0;
            out.extend(chunk.iter().map(|&v| (v * s).round_ties_even() as i8));
        }
    };
    let absmax = |c: &[f32]| c.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut q = Vec::with_capacity(values.len());
    let scale = if per_row {
        let mut scale = Vec::with_capacity(rows);
        for row in values.chunks(cols) {
            let am = absmax(row);
            scale.push(am);
            quant(row, am, &mut q);
        }
        scale
    } else {
        let am = absmax(values);
        quant(values, am, &mut q);
        vec![am]
    };
    Int8Tensor {
        q,
        scale,
        shape: [rows, cols],
    }
}

fn check_2d(values: &[f32], rows: usize, cols: usize) -> Result<(), QuantError> {
    check_values(values, "int8 input")?;
    if rows * cols != values.len() || rows == 0 || cols == 0 {
        return Err(QuantError::Shape {
            what: "int8 input (rows × cols vs number of values)".into(),
            expected: vec![values.len()],
            got: vec![rows, cols],
        });
    }
    Ok(())
}

/// LLM.int8 vector-wise quantization of a row-major `[rows, cols]` matrix: one absmax per row
/// (bitsandbytes `int8_vectorwise_quant(A)` → `(CB, SCB)`).
///
/// # Errors
/// [`QuantError::Shape`] when `rows·cols != values.len()` or either is 0; [`QuantError::Empty`],
/// [`QuantError::NonFinite`].
pub fn quantize_int8_vectorwise(
    values: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Int8Tensor, QuantError> {
    check_2d(values, rows, cols)?;
    Ok(quantize_rows(values, rows, cols, true))
}

/// Per-tensor absmax int8: `q = round_half_even(x · 127/absmax)` with one absmax for the whole
/// `[rows, cols]` tensor (equal to `int8_vectorwise_quant(A.reshape(1, -1))`).
///
/// # Errors
/// As [`quantize_int8_vectorwise`].
pub fn quantize_int8_per_tensor(
    values: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Int8Tensor, QuantError> {
    check_2d(values, rows, cols)?;
    Ok(quantize_rows(values, rows, cols, false))
}

impl Int8Tensor {
    /// `q · scale · (1/127)` in f32 (bitsandbytes `int8_vectorwise_dequant`), row-major
    /// `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let cols = self.shape[1];
        self.q
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let s = if self.scale.len() == 1 {
                    self.scale[0]
                } else {
                    self.scale[i / cols]
                };
                q as f32 * s * INV_127
            })
            .collect()
    }

    /// Bytes of storage: one per code plus 4 per scale.
    pub fn storage_bytes(&self) -> usize {
        self.q.len() + 4 * self.scale.len()
    }
}
