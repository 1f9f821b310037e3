//! A small host SVD in f64 for [`super::weighted`]'s `svd` combination (PEFT calls
//! `torch.linalg.svd` on the weighted `ΔW`, `tuners/lora/model.py`
//! `_svd_generalized_task_arithmetic_weighted_adapter`).
//!
//! burn 0.21 has no SVD on its CPU backend, and the matrices are tiny next to a forward pass, so
//! this is done here rather than through a dependency: `ΔW = P·Q` arrives factored (`P` the
//! weighted `B`s side by side, `Q` the `A`s stacked, inner size `k = Σ rᵢ`), so a Householder QR
//! of `P` and of `Qᵀ` reduces it to the SVD of a `k×k` matrix (Golub & Van Loan, *Matrix
//! Computations*, 4th ed., §5.2 Householder QR, §8.6.3 one-sided Jacobi SVD), costing
//! `O((m + n)·k²)` instead of `O(m·n·min(m, n))`. The SVD itself is Hestenes' one-sided Jacobi
//! method, accurate to a few ulps of the largest singular value. Singular vectors are unique
//! only up to sign (and within repeated singular values), so callers compare `U·S·Vᵀ`, never the
//! factors.
//!
//! All matrices are row-major `Vec<f64>`.

/// The rank-`rank` truncated SVD of `P·Q`: returns `(U_r·diag(S_r), V_rᵀ)` with the `rank`
/// largest singular values, `U_r·S_r` `[m, rank]` and `V_rᵀ` `[rank, n]` (PEFT's new `lora_B`
/// and `lora_A`: `B' = U[:, :r]·diag(S[:r])`, `A' = Vh[:r, :]`).
///
/// # Shapes
/// - `p` `[m, k]`, `q` `[k, n]`, `rank ≤ min(m, n)`
pub fn truncated_svd_of_product(
    p: &[f64],
    q: &[f64],
    (m, k, n): (usize, usize, usize),
    rank: usize,
) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(p.len(), m * k);
    debug_assert_eq!(q.len(), k * n);
    let (u, s, v, cols) = if k < m.min(n) {
        // P = Q1·R1, Qᵀ = Q2·R2  ⇒  P·Q = Q1·(R1·R2ᵀ)·Q2ᵀ; SVD of the k×k middle.
        let (q1, r1) = thin_qr(p, m, k);
        let (q2, r2) = thin_qr(&transpose(q, k, n), n, k);
        let mid = matmul(&r1, &transpose(&r2, k, k), k, k, k);
        let (um, s, vm) = jacobi_svd(&mid, k, k);
        (matmul(&q1, &um, m, k, k), s, matmul(&q2, &vm, n, k, k), k)
    } else {
        let (u, s, v) = jacobi_svd(&matmul(p, q, m, k, n), m, n);
        (u, s, v, n)
    };
    let mut us = vec![0.0; m * rank];
    let mut vt = vec![0.0; rank * n];
    for j in 0..rank.min(cols) {
        for i in 0..m {
            us[i * rank + j] = u[i * cols + j] * s[j];
        }
        for i in 0..n {
            vt[j * n + i] = v[i * cols + j];
        }
    }
    (us, vt)
}

/// `a` `[m, k]` · `b` `[k, n]` → `[m, n]`.
pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for l in 0..k {
            let x = a[i * k + l];
            if x != 0.0 {
                for j in 0..n {
                    c[i * n + j] += x * b[l * n + j];
                }
            }
        }
    }
    c
}

/// `a` `[r, c]` → `[c, r]`.
pub fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut t = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = a[i * c + j];
        }
    }
    t
}

/// Thin Householder QR of `a` `[m, k]` (`m ≥ k`): `(Q [m, k] with orthonormal columns,
/// R [k, k] upper triangular)`, `a = Q·R`. Rank-deficient input is fine (zero columns of the
/// reduced matrix get no reflection and a zero diagonal in `R`).
pub fn thin_qr(a: &[f64], m: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut r = a.to_vec();
    let mut reflectors: Vec<Option<Vec<f64>>> = Vec::with_capacity(k);
    for j in 0..k.min(m) {
        let x: Vec<f64> = (j..m).map(|i| r[i * k + j]).collect();
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            reflectors.push(None);
            continue;
        }
        let alpha = if x[0] >= 0.0 { -norm } else { norm };
        let mut v = x;
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|t| t * t).sum();
        if vv == 0.0 {
            reflectors.push(None);
            continue;
        }
        apply_reflector(&mut r, &v, vv, j, m, k, j);
        reflectors.push(Some(v));
    }
    // Q = H_0·H_1·…·H_{k-1}·[I_k; 0]: apply the reflectors to the identity's first k columns.
    let mut q = vec![0.0; m * k];
    for i in 0..k.min(m) {
        q[i * k + i] = 1.0;
    }
    for (j, v) in reflectors.iter().enumerate().rev() {
        if let Some(v) = v {
            let vv: f64 = v.iter().map(|t| t * t).sum();
            apply_reflector(&mut q, v, vv, j, m, k, 0);
        }
    }
    let mut rr = vec![0.0; k * k];
    for i in 0..k.min(m) {
        for j in i..k {
            rr[i * k + j] = r[i * k + j];
        }
    }
    (q, rr)
}

/// `a[row0.., col0..] -= 2·v·(vᵀ·a[row0.., col0..]) / vv` for `a` `[m, k]`.
fn apply_reflector(
    a: &mut [f64],
    v: &[f64],
    vv: f64,
    row0: usize,
    m: usize,
    k: usize,
    col0: usize,
) {
    for c in col0..k {
        let dot: f64 = (row0..m).map(|i| v[i - row0] * a[i * k + c]).sum();
        let f = 2.0 * dot / vv;
        if f != 0.0 {
            for i in row0..m {
                a[i * k + c] -= f * v[i - row0];
            }
        }
    }
}

/// SVD of `a` `[m, n]` by one-sided Jacobi rotations of its columns: `(U [m, n], S [n],
/// V [n, n])` with `a = U·diag(S)·Vᵀ`, `S` sorted in decreasing order, `V` orthogonal and the
/// columns of `U` orthonormal where `S > 0` (zero where `S = 0`).
pub fn jacobi_svd(a: &[f64], m: usize, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut u = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let rotate = |x: &mut [f64], rows: usize, p: usize, q: usize, c: f64, s: f64| {
        for i in 0..rows {
            let (xp, xq) = (x[i * n + p], x[i * n + q]);
            x[i * n + p] = c * xp - s * xq;
            x[i * n + q] = s * xp + c * xq;
        }
    };
    for _sweep in 0..80 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
                for i in 0..m {
                    let (up, uq) = (u[i * n + p], u[i * n + q]);
                    alpha += up * up;
                    beta += uq * uq;
                    gamma += up * uq;
                }
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                rotate(&mut u, m, p, q, c, s);
                rotate(&mut v, n, p, q, c, s);
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..n)
        .map(|j| (0..m).map(|i| u[i * n + j].powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    let mut us = vec![0.0; m * n];
    let mut vs = vec![0.0; n * n];
    let mut s = vec![0.0; n];
    for (jn, &j) in order.iter().enumerate() {
        s[jn] = norms[j];
        for i in 0..m {
            us[i * n + jn] = if norms[j] > 0.0 {
                u[i * n + j] / norms[j]
            } else {
                0.0
            };
        }
        for i in 0..n {
            vs[i * n + jn] = v[i * n + j];
        }
    }
    (us, s, vs)
}
