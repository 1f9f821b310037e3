//! The signed 8-bit dynamic map and the blockwise 8-bit quantizer of bitsandbytes, as used by NF4
//! double quantization (`quantize_4bit(compress_statistics=True)` quantizes the centred absmax with
//! `quantize_blockwise(absmax - offset, blocksize=256)` and the default dynamic code).
//!
//! Sources: `bitsandbytes/functional.py` (`create_dynamic_map`, `quantize_blockwise`,
//! `dequantize_blockwise`), `csrc/cpu_ops.cpp` (`quantize_cpu_impl`, `build_quantize_lut`,
//! `norm_to_lut_index`, `dequantizeBlockwise8bitCpu`) of bitsandbytes 0.50, and PyTorch's CPU
//! `linspace` (`aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp`) and `sum`
//! (`aten/src/ATen/native/cpu/SumKernel.cpp`, `cascade_sum`), whose f32 rounding the map and the
//! offset inherit.

use crate::{check_values, QuantError};

/// Number of entries of the 8-bit code.
pub const CODE8_LEN: usize = 256;

/// Entries of bitsandbytes' CPU lookup table over `[-1, 1]` (`kLUTSize` in `csrc/cpu_ops.cpp`).
const LUT_SIZE: usize = 65536;

/// `torch.linspace(start, end, steps, dtype=float32)` on the CPU: `start + step·i` for the first
/// half and `end − step·(steps−1−i)` for the rest, each a fused multiply-add (PyTorch builds its
/// AVX2/AVX512 CPU kernels with FMA contraction; checked against torch 2.15 for the sizes used).
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 sorted
/// f32 values in `[-0.99297, 1]` (Dettmers 2016, "8-Bit Approximations for Parallelism in Deep
/// Learning"): for exponent `i` in 0..7, the midpoints of `linspace(0.1, 1, 2^i + 1)` scaled by
/// `10^(i−6)`, both signs, plus 0 and 1.
///
/// Reproduces the f32 values exactly (torch's linspace with FMA, f32 midpoints `(a+b)/2`, the
/// scale rounded to f32 before the multiply); the test compares all 256 against bnb's
/// `state2.code`.
pub fn create_dynamic_map() -> [f32; CODE8_LEN] {
    // 10 ** (-(max_exponent_bits - 1) + i) as Python floats, then rounded to f32 by torch.
    const SCALES: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut data: Vec<f32> = Vec::with_capacity(CODE8_LEN);
    for (i, &scale) in SCALES.iter().enumerate() {
        let b = linspace_f32(0.1, 1.0, (1usize << i) + 1);
        let s = scale as f32;
        let means: Vec<f32> = b.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        data.extend(means.iter().map(|&m| s * m));
        data.extend(means.iter().map(|&m| -(s * m)));
    }
    data.push(0.0);
    data.push(1.0);
    debug_assert_eq!(data.len(), CODE8_LEN);
    data.sort_by(|a, b| a.total_cmp(b));
    let mut out = [0f32; CODE8_LEN];
    out.copy_from_slice(&data);
    out
}

/// `build_quantize_lut` of `csrc/cpu_ops.cpp`: entry `i` is the code index for the value
/// `−1 + 2i/65535`, i.e. the number of f32 midpoints `0.5·(c[j] + c[j+1])` strictly below it.
fn build_lut(code: &[f32; CODE8_LEN]) -> Vec<u8> {
    let mids: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let mut lut = vec![0u8; LUT_SIZE];
    let mut idx = 0usize;
    for (i, slot) in lut.iter_mut().enumerate() {
        let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_SIZE - 1) as f32;
        while idx < CODE8_LEN - 1 && mids[idx] < val {
            idx += 1;
        }
        *slot = idx as u8;
    }
    lut
}

/// `norm_to_lut_index` of `csrc/cpu_ops.cpp`: clamp to `[-1, 1]`, then
/// `(u16)((v + 1)·0.5·65535 + 0.5)` in f32 (truncation).
fn lut_index(v: f32) -> usize {
    let v = v.clamp(-1.0, 1.0);
    ((v + 1.0) * 0.5 * (LUT_SIZE - 1) as f32 + 0.5) as u16 as usize
}

/// bitsandbytes' CPU `quantize_blockwise` (`cquantize_blockwise_cpu_fp32`): for each block of
/// `blocksize` consecutive values (the last may be shorter) `absmax = max|x|` (f32), then each
/// value becomes `lut[index(x · (1/absmax))]` — a 65536-bin lookup table over `[-1, 1]`, **not**
/// an exact nearest-code search (the two differ for ~0.6% of uniform values, by one code). An
/// all-zero block gets absmax 0 and codes 0.
///
/// Returns `(codes u8 [n], absmax f32 [ceil(n / blocksize)])`.
///
/// # Errors
/// [`QuantError::Empty`], [`QuantError::NonFinite`], [`QuantError::Shape`] when `blocksize` is 0.
pub fn quantize_blockwise_8bit(
    values: &[f32],
    code: &[f32; CODE8_LEN],
    blocksize: usize,
) -> Result<(Vec<u8>, Vec<f32>), QuantError> {
    check_values(values, "quantize_blockwise_8bit input")?;
    if blocksize == 0 {
        return Err(QuantError::Shape {
            what: "quantize_blockwise_8bit blocksize".into(),
            expected: vec![1],
            got: vec![0],
        });
    }
    let lut = build_lut(code);
    let mut q = Vec::with_capacity(values.len());
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    for block in values.chunks(blocksize) {
        let am = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        absmax.push(am);
        if am == 0.0 {
            q.extend(std::iter::repeat_n(0u8, block.len()));
            continue;
        }
        let inv = 1.0f32 / am;
        q.extend(block.iter().map(|&v| lut[lut_index(v * inv)]));
    }
    Ok((q, absmax))
}

/// bitsandbytes' `dequantize_blockwise` on the CPU: `code[q] · absmax[block]` (one f32 multiply).
///
/// # Errors
/// [`QuantError::Shape`] when `absmax` does not hold `ceil(q.len() / blocksize)` values or
/// `blocksize` is 0.
pub fn dequantize_blockwise_8bit(
    q: &[u8],
    absmax: &[f32],
    code: &[f32; CODE8_LEN],
    blocksize: usize,
) -> Result<Vec<f32>, QuantError> {
    if blocksize == 0 || absmax.len() != q.len().div_ceil(blocksize) {
        return Err(QuantError::Shape {
            what: format!("dequantize_blockwise_8bit absmax (blocksize {blocksize})"),
            expected: vec![q.len().div_ceil(blocksize.max(1))],
            got: vec![absmax.len()],
        });
    }
    Ok(q.chunks(blocksize)
        .zip(absmax)
        .flat_map(|(b, &a)| b.iter().map(move |&c| code[c as usize] * a))
        .collect())
}

/// An accumulator of PyTorch's cascade sum: a scalar or an 8-lane vector (AVX2
/// `Vectorized<float>`; the width PyTorch 2.15's CPU sum kernel used on the machine that wrote
/// the fixtures — checked there against `torch.sum` for 1..80 and up to 20000 values).
trait Acc: Copy {
    fn zero() -> Self;
    fn add(self, other: Self) -> Self;
}

impl Acc for f32 {
    fn zero() -> Self {
        0.0
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

const LANES: usize = 8;

impl Acc for [f32; LANES] {
    fn zero() -> Self {
        [0.0; LANES]
    }
    fn add(mut self, other: Self) -> Self {
        for (a, b) in self.iter_mut().zip(other) {
            *a += b;
        }
        self
    }
}

/// `multi_row_sum` of SumKernel.cpp with 4 rows: row `k` sums `load(i, k)` over `i < size` in a
/// 4-level cascade of chunks of `2^max(4, ceil(log2 size)/4)`.
#[allow(clippy::needless_range_loop)] // mirrors the C++ loops index for index
fn multi_row_sum<T: Acc>(load: impl Fn(usize, usize) -> T, size: usize) -> [T; 4] {
    const LEVELS: usize = 4;
    let ceil_log2 = if size <= 2 {
        1
    } else {
        (usize::BITS - (size - 1).leading_zeros()) as usize
    };
    let power = 4usize.max(ceil_log2 / LEVELS);
    let step = 1usize << power;
    let mask = step - 1;
    let mut acc = [[T::zero(); 4]; LEVELS];
    let mut i = 0;
    while i + step <= size {
        for _ in 0..step {
            for (k, a) in acc[0].iter_mut().enumerate() {
                *a = a.add(load(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..4 {
                acc[j][k] = acc[j][k].add(acc[j - 1][k]);
                acc[j - 1][k] = T::zero();
            }
            if i & (mask << (j * power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for (k, a) in acc[0].iter_mut().enumerate() {
            *a = a.add(load(i, k));
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..4 {
            acc[0][k] = acc[0][k].add(acc[j][k]);
        }
    }
    acc[0]
}

/// `row_sum` of SumKernel.cpp: four interleaved partial sums, the leftovers into the first.
fn row_sum<T: Acc>(load: impl Fn(usize) -> T, size: usize) -> T {
    let ilp = size / 4;
    let mut ps = multi_row_sum(|i, k| load(4 * i + k), ilp);
    for i in ilp * 4..size {
        ps[0] = ps[0].add(load(i));
    }
    for k in 1..4 {
        ps[0] = ps[0].add(ps[k]);
    }
    ps[0]
}

/// PyTorch's single-threaded f32 CPU `sum` of a contiguous vector (`cascade_sum`,
/// `vectorized_inner_sum` for ≥ 8 values, `scalar_inner_sum` below).
fn torch_cpu_sum(x: &[f32]) -> f32 {
    let n = x.len();
    if n >= LANES {
        let nv = n / LANES;
        let v = row_sum(
            |i| {
                let mut a = [0f32; LANES];
                a.copy_from_slice(&x[i * LANES..(i + 1) * LANES]);
                a
            },
            nv,
        );
        let mut acc = 0f32;
        for &t in &x[nv * LANES..] {
            acc += t;
        }
        for lane in v {
            acc += lane;
        }
        acc
    } else {
        row_sum(|i| x[i], n)
    }
}

/// `torch.mean` of an f32 vector on the CPU, as bitsandbytes computes the double-quantization
/// offset (`_absmax.mean()`): PyTorch's cascade sum in f32, then `/ n` in f32.
///
/// Bit-exact with PyTorch 2.15 on x86 for up to 32768 values (beyond PyTorch's grain size the sum
/// may be split across threads, and the result can then differ in the last bits). Returns NaN for
/// an empty slice.
pub fn torch_cpu_mean(x: &[f32]) -> f32 {
    torch_cpu_sum(x) / x.len() as f32
}
