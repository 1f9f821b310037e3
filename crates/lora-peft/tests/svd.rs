//! The host SVD behind `add_weighted_adapter`'s `svd` combination, against closed forms:
//! exact reconstruction at full rank, orthonormal factors, known singular values, the
//! Eckart–Young optimum when truncating, and rank-deficient input.
use lora_peft::tuners::lora::svd::{
    jacobi_svd, matmul, thin_qr, transpose, truncated_svd_of_product,
};

fn lcg(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn identity(n: usize) -> Vec<f64> {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    v
}

#[test]
fn known_singular_values_of_a_scaled_rotation() {
    // A = R·diag(5, 3, 0.5), R a rotation: singular values 5, 3, 0.5 (sorted), A = U·S·Vᵀ.
    let (c, s) = (0.6, 0.8);
    let r = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
    let d = [0.5, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 3.0];
    let a = matmul(&r, &d, 3, 3, 3);
    let (u, sv, v) = jacobi_svd(&a, 3, 3);
    assert!(max_diff(&sv, &[5.0, 3.0, 0.5]) < 1e-14, "{sv:?}");
    let us: Vec<f64> = (0..9).map(|k| u[k] * sv[k % 3]).collect();
    assert!(max_diff(&matmul(&us, &transpose(&v, 3, 3), 3, 3, 3), &a) < 1e-14);
}

#[test]
fn jacobi_factors_are_orthonormal_and_reconstruct() {
    let (m, n) = (9, 6);
    let a = lcg(m * n, 1);
    let (u, s, v) = jacobi_svd(&a, m, n);
    assert!(s.windows(2).all(|w| w[0] >= w[1]));
    assert!(max_diff(&matmul(&transpose(&u, m, n), &u, n, m, n), &identity(n)) < 1e-13);
    assert!(max_diff(&matmul(&transpose(&v, n, n), &v, n, n, n), &identity(n)) < 1e-13);
    let us: Vec<f64> = (0..m * n).map(|k| u[k] * s[k % n]).collect();
    assert!(max_diff(&matmul(&us, &transpose(&v, n, n), m, n, n), &a) < 1e-13);
}

#[test]
fn householder_qr_is_orthonormal_times_upper_triangular() {
    let (m, k) = (11, 4);
    let a = lcg(m * k, 2);
    let (q, r) = thin_qr(&a, m, k);
    assert!(max_diff(&matmul(&transpose(&q, m, k), &q, k, m, k), &identity(k)) < 1e-14);
    for i in 0..k {
        for j in 0..i {
            assert_eq!(r[i * k + j], 0.0);
        }
    }
    assert!(max_diff(&matmul(&q, &r, m, k, k), &a) < 1e-14);
}

#[test]
fn full_rank_product_is_reproduced_and_truncation_is_optimal() {
    let (m, k, n) = (13, 5, 8);
    let (p, q) = (lcg(m * k, 3), lcg(k * n, 4));
    let prod = matmul(&p, &q, m, k, n);
    // Rank k: B'·A' = P·Q.
    let (b, a) = truncated_svd_of_product(&p, &q, (m, k, n), k);
    assert!(max_diff(&matmul(&b, &a, m, k, n), &prod) < 1e-13);
    // A' has orthonormal rows.
    assert!(max_diff(&matmul(&a, &transpose(&a, k, n), k, n, k), &identity(k)) < 1e-13);
    // Rank 2: equals the truncation of the direct SVD of P·Q (Eckart–Young: unique when
    // σ₂ > σ₃), computed without the QR reduction.
    let (b2, a2) = truncated_svd_of_product(&p, &q, (m, k, n), 2);
    let (u, s, v) = jacobi_svd(&prod, m, n);
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..2).map(|t| u[i * n + t] * s[t] * v[j * n + t]).sum();
        }
    }
    assert!(s[1] - s[2] > 1e-3);
    assert!(max_diff(&matmul(&b2, &a2, m, 2, n), &want) < 1e-12);
}

#[test]
fn rank_deficient_factors() {
    // P has two equal columns and a zero one: P·Q has rank 2.
    let (m, k, n) = (7, 4, 6);
    let mut p = lcg(m * k, 5);
    for i in 0..m {
        p[i * k + 1] = p[i * k];
        p[i * k + 3] = 0.0;
    }
    let q = lcg(k * n, 6);
    let prod = matmul(&p, &q, m, k, n);
    let (b, a) = truncated_svd_of_product(&p, &q, (m, k, n), 3);
    assert!(b.iter().chain(&a).all(|x| x.is_finite()));
    assert!(max_diff(&matmul(&b, &a, m, 3, n), &prod) < 1e-13);
}
