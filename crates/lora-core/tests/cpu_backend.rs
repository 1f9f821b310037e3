//! The CPU backend's patched operations (vendor/PATCHES.md, "The CPU backend") against
//! references computed independently: products against an f64 triple loop for every layout the
//! patch routes differently, reshapes against the values they must keep, sigmoid against its
//! closed form, random tensors against burn's own per-element `TensorData::random`, and the
//! copies and reductions split over threads against host values and the one-thread path.
mod common;

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData};
use burn_std::rand::{SeedableRng, StdRng};
use common::{f64s, lcg, mm, vals, vals64};

type B = NdArray<f32>;

fn dev() -> burn::tensor::Device<B> {
    Default::default()
}

/// An f64 tensor on the f32 backend (burn-ndarray computes in each tensor's own dtype).
fn f64_tensor<const D: usize>(v: &[f64], shape: [usize; D]) -> Tensor<B, D> {
    let t = Tensor::<B, D>::from_data(TensorData::new(v.to_vec(), shape), &dev()).cast(DType::F64);
    assert_eq!(t.dtype(), DType::F64);
    t
}

fn t3(v: &[f32], d: [usize; 3]) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(v.to_vec(), d), &dev())
}

/// `[batch, n, k]·[batch, k, m]` in f64, batch by batch.
fn batched_mm(x: &[f64], w: &[f64], batch: usize, n: usize, k: usize, m: usize) -> Vec<f64> {
    (0..batch)
        .flat_map(|b| mm(&x[b * n * k..][..n * k], &w[b * k * m..][..k * m], n, k, m))
        .collect()
}

/// `[r, c]` row-major values transposed to `[c, r]`.
fn transposed(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    (0..c)
        .flat_map(|j| (0..r).map(move |i| v[i * c + j]))
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / (1.0 + w.abs()))
        .fold(0.0, f64::max);
    println!("{what}: max relative diff {worst:.2e}");
    assert!(worst < 1e-5, "{what}: max relative diff {worst:.2e}");
}

#[test]
fn broadcast_right_matrix_is_one_product_over_all_rows() {
    // A linear layer's `x·W`: [3, 5, 7]·[1, 7, 4], the right matrix broadcast over the batch.
    let (x, w) = (lcg(3 * 5 * 7, 1), lcg(7 * 4, 2));
    let got = t3(&x, [3, 5, 7]).matmul(t3(&w, [1, 7, 4]));
    assert_eq!(got.dims(), [3, 5, 4]);
    let want = mm(&f64s(&x), &f64s(&w), 15, 7, 4);
    assert_close(&vals(got), &want, "[3,5,7]·[1,7,4]");

    // The same with a transposed (strided) weight and a left side that is not contiguous: the
    // left's rows are gathered and the transposed right is copied into row-major layout.
    let wt = Tensor::<B, 2>::from_data(TensorData::new(transposed(&w, 7, 4), [4, 7]), &dev());
    let xt = t3(&transposed_batches(&x, 3, 5, 7), [3, 7, 5]).swap_dims(1, 2);
    let got = xt.matmul(wt.transpose().unsqueeze::<3>());
    assert_close(&vals(got.clone()), &want, "strided [3,5,7]·[7,4]ᵀᵀ");
    // Bit for bit the product of the same values stored row-major: a product does not depend on
    // its operands' layout (a reloaded or resumed model computes what the original did).
    let standard = t3(&x, [3, 5, 7]).matmul(t3(&w, [1, 7, 4]));
    assert_eq!(vals(got), vals(standard));
}

/// Each `[r, c]` matrix of `batch` transposed to `[c, r]`.
fn transposed_batches(v: &[f32], batch: usize, r: usize, c: usize) -> Vec<f32> {
    (0..batch)
        .flat_map(|b| transposed(&v[b * r * c..][..r * c], r, c))
        .collect()
}

#[test]
fn batched_products_with_and_without_broadcast() {
    // Both sides batched (attention's scores): [6, 9, 5]·[6, 5, 9].
    let (q, k) = (lcg(6 * 9 * 5, 3), lcg(6 * 5 * 9, 4));
    let got = t3(&q, [6, 9, 5]).matmul(t3(&k, [6, 5, 9]));
    let want = batched_mm(&f64s(&q), &f64s(&k), 6, 9, 5, 9);
    assert_close(&vals(got), &want, "[6,9,5]·[6,5,9]");

    // The left broadcast over the right's batches: [1, 4, 6]·[3, 6, 2].
    let (a, b) = (lcg(4 * 6, 5), lcg(3 * 6 * 2, 6));
    let got = t3(&a, [1, 4, 6]).matmul(t3(&b, [3, 6, 2]));
    let a3: Vec<f32> = a.iter().cycle().take(3 * 4 * 6).copied().collect();
    let want = batched_mm(&f64s(&a3), &f64s(&b), 3, 4, 6, 2);
    assert_close(&vals(got), &want, "[1,4,6]·[3,6,2]");

    // One product large enough to be split over threads, with a transposed right side.
    let (x, w) = (lcg(130 * 70, 7), lcg(90 * 70, 8));
    let wt = Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [90, 70]), &dev()).transpose();
    let got = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [130, 70]), &dev()).matmul(wt);
    let want = mm(&f64s(&x), &f64s(&transposed(&w, 90, 70)), 130, 70, 90);
    assert_close(&vals(got.clone()), &want, "[130,70]·[90,70]ᵀ");
    let w_rows =
        Tensor::<B, 2>::from_data(TensorData::new(transposed(&w, 90, 70), [70, 90]), &dev());
    let x_rows = Tensor::<B, 2>::from_data(TensorData::new(x, [130, 70]), &dev());
    assert_eq!(vals(got), vals(x_rows.matmul(w_rows)));
}

#[test]
fn f64_and_integer_products() {
    let (x, w) = (lcg(4 * 3 * 5, 9), lcg(5 * 2, 10));
    let x64: Vec<f64> = f64s(&x);
    let w64: Vec<f64> = f64s(&w);
    let d = Default::default();
    let got = f64_tensor::<3>(&x64, [4, 3, 5]).matmul(f64_tensor::<3>(&w64, [1, 5, 2]));
    let want = mm(&x64, &w64, 12, 5, 2);
    let worst = vals64(got)
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-12, "f64 product: max diff {worst:.2e}");

    // Integers keep ndarray's own product.
    let a = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 6], [2, 3]), &d);
    let b =
        Tensor::<B, 2, Int>::from_data(TensorData::new(vec![7i64, 8, 9, 10, 11, 12], [3, 2]), &d);
    let got = a
        .matmul(b)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap();
    assert_eq!(got, vec![58, 64, 139, 154]);
}

#[test]
fn reshape_of_a_strided_array_keeps_its_values() {
    // [3, 4] transposed to [4, 3], then length-1 axes added and dropped: values in the
    // transposed order every time, and usable by the next operation.
    let v = lcg(12, 11);
    let t = Tensor::<B, 2>::from_data(TensorData::new(v.clone(), [3, 4]), &dev()).transpose();
    let want = transposed(&v, 3, 4);
    let four = t.clone().reshape([1, 4, 1, 3]);
    assert_eq!(four.dims(), [1, 4, 1, 3]);
    assert_eq!(vals(four.clone()), want);
    let back: Tensor<B, 2> = four.reshape([4, 3]);
    assert_eq!(
        vals(back.clone() + 1.0),
        want.iter().map(|x| x + 1.0).collect::<Vec<_>>()
    );
    // A reshape that regroups axes still copies into the standard order.
    assert_eq!(vals(t.reshape([2, 6])), want);
}

#[test]
fn sigmoid_matches_its_closed_form() {
    let mut v = lcg(1000, 12)
        .into_iter()
        .map(|x| x * 12.0)
        .collect::<Vec<_>>();
    v.extend([-100.0, -30.0, 0.0, 30.0, 100.0]);
    let got = vals(burn::tensor::activation::sigmoid(
        Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &dev()),
    ));
    let want: Vec<f64> = v
        .iter()
        .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
        .collect();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&g, w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(worst < 2e-7, "sigmoid: max diff {worst:.2e}");
    let x64 = f64_tensor::<1>(&f64s(&v), [v.len()]);
    let worst64 = vals64(burn::tensor::activation::sigmoid(x64))
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(worst64 < 1e-15, "f64 sigmoid: max diff {worst64:.2e}");
}

#[test]
fn random_tensors_draw_what_burn_draws() {
    let d = dev();
    for dist in [
        Distribution::Bernoulli(0.95),
        Distribution::Uniform(-0.5, 2.0),
        Distribution::Normal(0.0, 0.02),
        Distribution::Default,
    ] {
        B::seed(&d, 42);
        let got = Tensor::<B, 2>::random([37, 101], dist, &d).into_data();
        let want = TensorData::random::<f32, _, _>([37, 101], dist, &mut StdRng::seed_from_u64(42));
        assert_eq!(got, want, "{dist:?}");
    }
    // Large Bernoulli masks (drawn in one fill, compared over threads), the certain ones (which
    // draw nothing), then a uniform draw: the same values, and the generator left in the same
    // place, as burn's per-element sampling.
    B::seed(&d, 7);
    let mut rng = StdRng::seed_from_u64(7);
    for (shape, dist) in [
        ([300, 257], Distribution::Bernoulli(0.95)),
        ([3, 5], Distribution::Bernoulli(1.0)),
        ([3, 5], Distribution::Bernoulli(0.0)),
        ([37, 101], Distribution::Uniform(-0.5, 2.0)),
    ] {
        let got = Tensor::<B, 2>::random(shape, dist, &d).into_data();
        let want = TensorData::random::<f32, _, _>(shape, dist, &mut rng);
        assert_eq!(got, want, "{dist:?} after the draws before it");
    }
}

#[test]
fn large_elementwise_ops_match_host_arithmetic() {
    // 2 × 300 × 128 = 76,800 elements: above the size where the patched ops split over threads.
    // The right side broadcasts over the first two axes, as a bias or a norm's weight does.
    let (a, b) = (lcg(2 * 300 * 128, 13), lcg(128, 14));
    let ta = Tensor::<B, 3>::from_data(TensorData::new(a.clone(), [2, 300, 128]), &dev());
    let tb = Tensor::<B, 3>::from_data(TensorData::new(b.clone(), [1, 1, 128]), &dev());
    let host = |f: fn(f32, f32) -> f32| -> Vec<f32> {
        a.iter()
            .enumerate()
            .map(|(i, &x)| f(x, b[i % 128]))
            .collect()
    };
    assert_eq!(vals(ta.clone() + tb.clone()), host(|x, y| x + y));
    assert_eq!(vals(ta.clone() - tb.clone()), host(|x, y| x - y));
    assert_eq!(vals(ta.clone() * tb.clone()), host(|x, y| x * y));
    assert_eq!(vals(ta.clone() / tb.clone()), host(|x, y| x / y));
    // Both sides full size, the left strided (a transposed view).
    let tt = ta.clone().swap_dims(1, 2);
    let tt2 = Tensor::<B, 3>::from_data(TensorData::new(a.clone(), [2, 300, 128]), &dev())
        .swap_dims(1, 2);
    let squares: Vec<f32> = a.iter().map(|x| x * x).collect();
    assert_eq!(vals(tt * tt2), transposed_batches(&squares, 2, 300, 128));
    // Scalars and unary maps.
    let each = |f: fn(f32) -> f32| -> Vec<f32> { a.iter().map(|&x| f(x)).collect() };
    assert_eq!(vals(ta.clone() + 0.5), each(|x| x + 0.5));
    assert_eq!(vals(ta.clone() - 0.5), each(|x| x - 0.5));
    assert_eq!(vals(ta.clone() * 0.5), each(|x| x * 0.5));
    assert_eq!(vals(ta.clone() / 0.5), each(|x| x / 0.5));
    assert_eq!(vals(ta.clone().exp()), each(f32::exp));
    assert_eq!(vals(ta.clone().abs().log()), each(|x| x.abs().ln()));
    // A shared buffer is not changed by a map of one of its handles.
    let kept = ta.clone();
    let _ = ta * 2.0;
    assert_eq!(vals(kept), a);
}

#[test]
fn large_layout_copies_keep_their_values() {
    // 2 × 300 × 128 = 76,800 elements, above the split size. RoPE's halves (slices along the last
    // axis: strided), joined in swapped order (its rotate_half), and attention's heads merged
    // back (a reshape of a transposed array).
    let a = lcg(2 * 300 * 128, 15);
    let ta = Tensor::<B, 3>::from_data(TensorData::new(a.clone(), [2, 300, 128]), &dev());
    let half = |from: usize| -> Vec<f32> {
        a.chunks(128)
            .flat_map(|row| row[from..from + 64].to_vec())
            .collect()
    };
    let (lo, hi) = (
        ta.clone().slice([0..2, 0..300, 0..64]),
        ta.clone().slice([0..2, 0..300, 64..128]),
    );
    assert_eq!(vals(lo.clone()), half(0));
    assert_eq!(vals(hi.clone()), half(64));
    let swapped: Vec<f32> = a
        .chunks(128)
        .flat_map(|row| [&row[64..], &row[..64]].concat())
        .collect();
    assert_eq!(vals(Tensor::cat(vec![hi, lo], 2)), swapped);
    // Along the first axis: the second copy after the first.
    assert_eq!(
        vals(Tensor::cat(vec![ta.clone(), ta.clone() * 2.0], 0)),
        [a.clone(), a.iter().map(|x| x * 2.0).collect()].concat()
    );
    let merged: Tensor<B, 2> = ta.swap_dims(1, 2).reshape([2, 128 * 300]);
    assert_eq!(vals(merged), transposed_batches(&a, 2, 300, 128));
}

#[test]
fn large_reductions_match_the_one_thread_path() {
    // 600 lanes of 128 (76,800 elements), reduced along the last axis over threads; each lane
    // reduced alone as a [1, 128] tensor (below the split size: upstream's one-thread path) is
    // the reference for the sum and the mean, bit for bit, and the host's max for the max.
    let a = lcg(600 * 128, 16);
    let ta = Tensor::<B, 2>::from_data(TensorData::new(a.clone(), [600, 128]), &dev());
    let (sums, means, maxs) = (
        vals(ta.clone().sum_dim(1)),
        vals(ta.clone().mean_dim(1)),
        vals(ta.clone().max_dim(1)),
    );
    for (r, lane) in a.chunks(128).enumerate() {
        let one = Tensor::<B, 2>::from_data(TensorData::new(lane.to_vec(), [1, 128]), &dev());
        assert_eq!(sums[r], vals(one.clone().sum_dim(1))[0], "sum of lane {r}");
        assert_eq!(means[r], vals(one.mean_dim(1))[0], "mean of lane {r}");
        assert_eq!(
            maxs[r],
            lane.iter().copied().fold(f32::MIN, f32::max),
            "max of lane {r}"
        );
    }
    // The max along a strided axis (columns of the same values).
    let col_max: Vec<f32> = (0..128)
        .map(|c| (0..600).map(|r| a[r * 128 + c]).fold(f32::MIN, f32::max))
        .collect();
    assert_eq!(vals(ta.max_dim(0)), col_max);
    // NaN as burn's argmax-and-gather treats it: a first NaN is kept, a later one skipped.
    let nan = Tensor::<B, 2>::from_data(
        TensorData::new(vec![f32::NAN, 1.0, 2.0, 1.0, f32::NAN, 2.0], [2, 3]),
        &dev(),
    );
    let m = vals(nan.max_dim(1));
    assert!(m[0].is_nan() && m[1] == 2.0, "{m:?}");
}
