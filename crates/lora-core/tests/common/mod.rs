//! Helpers shared by the lora-core tests: deterministic inputs, tensor conversions and f64
//! reference arithmetic.
#![allow(dead_code)] // each test binary uses a different subset

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Deterministic pseudo-random numbers in [-1, 1) (LCG), so that expected values are computed
/// independently of burn's generator.
pub fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// [`lcg`] scaled to [-scale, scale) (each value multiplied in f32).
pub fn lcg_scaled(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    lcg(n, seed).into_iter().map(|v| v * scale).collect()
}

/// A `[r, c]` tensor from row-major values, on the default device.
pub fn t2<Bk: Backend>(v: &[f32], r: usize, c: usize) -> Tensor<Bk, 2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [r, c]), &Default::default())
}

/// A `[len]` tensor, on the default device.
pub fn t1<Bk: Backend>(v: &[f32]) -> Tensor<Bk, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
}

/// The values of a float tensor of any dtype, as f32.
pub fn vals<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// The values of a float tensor of any dtype, as f64.
pub fn vals64<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Widens to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `[n, k]·[k, m]` in f64, each output summed over `k` in increasing order.
pub fn mm(x: &[f64], w: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut y = vec![0f64; n * m];
    for i in 0..n {
        for j in 0..k {
            for o in 0..m {
                y[i * m + o] += x[i * k + j] * w[j * m + o];
            }
        }
    }
    y
}

/// `[rows, cols]` row-major → `[cols, rows]`.
pub fn transpose<T: Copy + Default>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// Relative L2 error `‖a − b‖ / ‖b‖`.
pub fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}
