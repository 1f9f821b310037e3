//! lora-burn patch (vendor/PATCHES.md): the layout arithmetic of `cublaslt.rs`, with no
//! dependency, so that its tests run anywhere:
//! `rustc --edition 2024 --test cublaslt_geometry.rs -o /tmp/geometry && /tmp/geometry`.
//!
//! cuBLASLt is column-major: the row-major `out[m, n] = lhs[m, k] · rhs[k, n]` is computed as the
//! column-major `outᵀ[n, m] = rhsᵀ[n, k] · lhsᵀ[k, m]` (A holds `rhs`, B holds `lhs`).

/// One column-major matrix operand: stored `rows × cols` with leading dimension `ld`,
/// transposed by the op when `trans`, `batch_stride` elements apart (0: broadcast).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Operand {
    pub(crate) rows: u64,
    pub(crate) cols: u64,
    pub(crate) ld: i64,
    pub(crate) trans: bool,
    pub(crate) batch_stride: i64,
}

/// A product as cuBLASLt takes it: `D[n, m] = op(A)[n, k] · op(B)[k, m]`, `batch` times; A
/// holds `rhs`, B holds `lhs`, D (column-major `n × m`, leading dimension the output's row
/// pitch) is the row-major output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Geometry {
    pub(crate) a: Operand,
    pub(crate) b: Operand,
    pub(crate) d: Operand,
    pub(crate) batch: i32,
}

/// `lhs [.., m, k] · rhs [.., k, n] → out [.., m, n]` as a [`Geometry`], or `None` when a stride
/// pattern has no cuBLASLt form (the caller falls back to CubeCL).
fn geometry(
    lhs: (&[usize], &[usize]),
    rhs: (&[usize], &[usize]),
    out: (&[usize], &[usize]),
) -> Option<Geometry> {
    let r = out.0.len();
    if r < 2 || lhs.0.len() != r || rhs.0.len() != r {
        return None;
    }
    let (m, n, k) = (out.0[r - 2], out.0[r - 1], lhs.0[r - 1]);
    if lhs.0[r - 2] != m || rhs.0[r - 2] != k || rhs.0[r - 1] != n || m * n * k == 0 {
        return None;
    }
    let batch_dims = &out.0[..r - 2];
    let batch: usize = batch_dims.iter().product();
    // The output: row-major, rows `ldd ≥ n` apart (CubeCL pitches the rows of some
    // allocations), batches at one stride.
    let ldd = if m == 1 { n } else { out.1[r - 2] };
    if (n > 1 && out.1[r - 1] != 1) || ldd < n {
        return None;
    }
    let out_batch = batch_stride(batch_dims, out.0, out.1)?;
    let (sm, slk) = (lhs.1[r - 2], lhs.1[r - 1]);
    let (srk, sn) = (rhs.1[r - 2], rhs.1[r - 1]);
    let lhs_batch = batch_stride(batch_dims, lhs.0, lhs.1)?;
    let rhs_batch = batch_stride(batch_dims, rhs.0, rhs.1)?;

    // rhs [k, n] as op(A) = n × k.
    let a = if sn == 1 || n == 1 {
        (n as u64, k as u64, if k == 1 { n } else { srk }, false)
    } else if srk == 1 || k == 1 {
        (k as u64, n as u64, sn, true)
    } else {
        return None;
    };
    // lhs [m, k] as op(B) = k × m.
    let b = if slk == 1 || k == 1 {
        (k as u64, m as u64, if m == 1 { k } else { sm }, false)
    } else if sm == 1 || m == 1 {
        (m as u64, k as u64, slk, true)
    } else {
        return None;
    };
    // A weight broadcast over the batch, rows of lhs evenly spaced across batches: one product
    // of batch · m rows.
    let fold = batch > 1
        && rhs_batch == 0
        && !b.3
        && lhs_batch == (m * b.2) as i64
        && out_batch == (m * ldd) as i64;
    let (rows, batch, lhs_batch, out_batch) = if fold {
        (m * batch, 1, 0, 0)
    } else {
        (m, batch, lhs_batch, out_batch)
    };
    let b = if b.3 { b } else { (b.0, rows as u64, b.2, b.3) };
    let operand = |(rows, cols, ld, trans): (u64, u64, usize, bool), batch_stride: i64| {
        (ld as u64 >= rows.max(1)).then_some(Operand {
            rows,
            cols,
            ld: ld as i64,
            trans,
            batch_stride,
        })
    };
    Some(Geometry {
        a: operand(a, rhs_batch)?,
        b: operand(b, lhs_batch)?,
        d: operand((n as u64, rows as u64, ldd, false), out_batch)?,
        batch: i32::try_from(batch).ok()?,
    })
}

/// [`geometry`], or, when the batch dims have no single stride per operand (attention's
/// `[batch, heads, ..]` views of a `[batch, seq, heads, head_dim]` tensor), the geometry of the
/// last batch dim alone and one launch per index of the outer ones: the element offsets
/// `[lhs, rhs, out]` of each.
pub(crate) fn plan(
    lhs: (&[usize], &[usize]),
    rhs: (&[usize], &[usize]),
    out: (&[usize], &[usize]),
) -> Option<(Geometry, Vec<[usize; 3]>)> {
    if let Some(g) = geometry(lhs, rhs, out) {
        return Some((g, vec![[0; 3]]));
    }
    let r = out.0.len();
    if r < 4 || lhs.0.len() != r || rhs.0.len() != r {
        return None;
    }
    let outer = r - 3;
    fn inner<'t>(
        (shape, strides): (&'t [usize], &'t [usize]),
        outer: usize,
    ) -> (&'t [usize], &'t [usize]) {
        (&shape[outer..], &strides[outer..])
    }
    let g = geometry(inner(lhs, outer), inner(rhs, outer), inner(out, outer))?;
    let count: usize = out.0[..outer].iter().product();
    let offset = |(shape, strides): (&[usize], &[usize]), mut index: usize| {
        let mut off = 0;
        for i in (0..outer).rev() {
            let at = index % out.0[i];
            index /= out.0[i];
            if shape[i] != 1 {
                off += at * strides[i];
            }
        }
        off
    };
    let offsets = (0..count)
        .map(|i| [offset(lhs, i), offset(rhs, i), offset(out, i)])
        .collect();
    Some((g, offsets))
}

/// The one element stride between consecutive flattened batches of a tensor broadcast to
/// `batch_dims` (0 when broadcast across all of them), or `None` when no single stride
/// describes it.
fn batch_stride(batch_dims: &[usize], shape: &[usize], strides: &[usize]) -> Option<i64> {
    let mut stride: Option<i64> = None;
    let mut span = 1i64;
    for i in (0..batch_dims.len()).rev() {
        if batch_dims[i] == 1 {
            continue;
        }
        let s = match shape[i] {
            1 => 0,
            d if d == batch_dims[i] => strides[i] as i64,
            _ => return None,
        };
        match stride {
            None => stride = Some(s),
            Some(first) if s == first * span => {}
            Some(_) => return None,
        }
        span *= batch_dims[i] as i64;
    }
    Some(stride.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_layer_folds_the_batch_into_rows() {
        // x [4, 16, 32] · W [1, 32, 8] (row-major): one product of 64 rows.
        let g = geometry(
            (&[4, 16, 32], &[512, 32, 1]),
            (&[1, 32, 8], &[256, 8, 1]),
            (&[4, 16, 8], &[128, 8, 1]),
        )
        .unwrap();
        assert_eq!((g.d.rows, g.d.cols, g.d.ld, g.batch), (8, 64, 8, 1));
        assert_eq!((g.a.rows, g.a.cols, g.a.ld, g.a.trans), (8, 32, 8, false));
        assert_eq!((g.b.rows, g.b.cols, g.b.ld, g.b.trans), (32, 64, 32, false));
    }

    #[test]
    fn transposed_views_become_ops_and_batches_keep_their_strides() {
        // xᵀ · dy per batch: lhs [2, 32, 16] a swapped view of [2, 16, 32]; rhs [2, 16, 8].
        let g = geometry(
            (&[2, 32, 16], &[512, 1, 32]),
            (&[2, 16, 8], &[128, 8, 1]),
            (&[2, 32, 8], &[256, 8, 1]),
        )
        .unwrap();
        assert_eq!(
            (g.d.rows, g.d.cols, g.d.batch_stride, g.batch),
            (8, 32, 256, 2)
        );
        assert_eq!(
            (g.a.rows, g.a.cols, g.a.ld, g.a.trans, g.a.batch_stride),
            (8, 16, 8, false, 128)
        );
        assert_eq!(
            (g.b.rows, g.b.cols, g.b.ld, g.b.trans, g.b.batch_stride),
            (32, 16, 32, true, 512)
        );
        // Attention's scores: q [b, h, s, d] and kᵀ as views of [b, s, h, d] tensors: the heads
        // are one strided batch, the b outer indices one launch each.
        let (b, h, s, d) = (2, 3, 5, 4);
        let q = (&[b, h, s, d][..], &[s * h * d, d, h * d, 1][..]);
        let kt = (&[b, h, d, s][..], &[s * h * d, d, 1, h * d][..]);
        let scores = (&[b, h, s, s][..], &[h * s * s, s * s, s, 1][..]);
        let (g, offsets) = plan(q, kt, scores).unwrap();
        assert_eq!((g.d.rows, g.d.cols, g.batch), (5, 5, 3));
        assert_eq!((g.a.ld, g.a.trans, g.a.batch_stride), (12, true, 4));
        assert_eq!(offsets, [[0, 0, 0], [s * h * d, s * h * d, h * s * s]]);
        // GPT-2's head: x [8, 1024, 768] · wteᵀ (a view of [50257, 768]) into rows pitched to
        // 50260: one product of 8192 rows with leading dimension 50260.
        let (v, p) = (50257, 50260);
        let g = geometry(
            (&[8, 1024, 768], &[786432, 768, 1]),
            (&[1, 768, v], &[v * 768, 1, 768]),
            (&[8, 1024, v], &[1024 * p, p, 1]),
        )
        .unwrap();
        assert_eq!(
            (g.d.rows, g.d.cols, g.d.ld, g.batch),
            (v as u64, 8192, p as i64, 1)
        );
        assert_eq!(
            (g.a.rows, g.a.cols, g.a.ld, g.a.trans),
            (768, v as u64, 768, true)
        );
        // Neither dim of a matrix unit-strided: no cuBLASLt form.
        assert!(geometry((&[4, 4], &[8, 2]), (&[4, 4], &[4, 1]), (&[4, 4], &[4, 1])).is_none());
    }
}

#[cfg(test)]
mod emulate {
    use super::*;

    /// cuBLASLt's column-major D = op(A)·op(B), per launch, on flat buffers.
    fn run(g: &Geometry, offs: &[[usize; 3]], l: &[f64], r: &[f64], out: &mut [f64]) {
        let k = if g.a.trans { g.a.rows } else { g.a.cols } as usize;
        for &[lo, ro, oo] in offs {
            for bt in 0..g.batch as usize {
                for i in 0..g.d.rows as usize {
                    for j in 0..g.d.cols as usize {
                        let mut acc = 0.0;
                        for p in 0..k {
                            let a = if g.a.trans {
                                p + i * g.a.ld as usize
                            } else {
                                i + p * g.a.ld as usize
                            };
                            let b = if g.b.trans {
                                j + p * g.b.ld as usize
                            } else {
                                p + j * g.b.ld as usize
                            };
                            acc += r[ro + bt * g.a.batch_stride as usize + a]
                                * l[lo + bt * g.b.batch_stride as usize + b];
                        }
                        out[oo + bt * g.d.batch_stride as usize + i + j * g.d.ld as usize] = acc;
                    }
                }
            }
        }
    }

    fn idx(ix: &[usize], strides: &[usize], shape: &[usize]) -> usize {
        ix.iter()
            .zip(strides)
            .zip(shape)
            .map(|((i, s), d)| if *d == 1 { 0 } else { i * s })
            .sum()
    }

    /// A [dims] tensor as a (possibly transposed, possibly pitched) view: shape, strides, buffer len.
    fn view(
        dims: &[usize],
        transpose_last: bool,
        pitch: usize,
        batch_perm: bool,
    ) -> (Vec<usize>, Vec<usize>, usize) {
        let r = dims.len();
        // storage order: last two swapped when transposed; rows padded by `pitch`.
        let (rows, cols) = if transpose_last {
            (dims[r - 1], dims[r - 2])
        } else {
            (dims[r - 2], dims[r - 1])
        };
        let ld = cols + pitch;
        let mat = rows * ld;
        let mut strides = vec![0; r];
        let (sr, sc) = if transpose_last { (1, ld) } else { (ld, 1) };
        strides[r - 2] = sr;
        strides[r - 1] = sc;
        // batch dims: contiguous, or the two outer ones swapped in storage
        let mut acc = mat;
        let order: Vec<usize> = if batch_perm && r >= 4 {
            vec![0, 1].into_iter().rev().chain(2..r - 2).collect()
        } else {
            (0..r - 2).collect()
        };
        for &d in order.iter().rev() {
            strides[d] = acc;
            acc *= dims[d];
        }
        (dims.to_vec(), strides, acc)
    }

    #[test]
    fn every_plan_computes_the_product() {
        let mut seed = 12345u64;
        let mut rnd = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        let mut checked = 0;
        for case in 0..400 {
            let rank = 2 + rnd(3);
            let batch: Vec<usize> = (0..rank - 2).map(|_| 1 + rnd(3)).collect();
            let (m, k, n) = (1 + rnd(5), 1 + rnd(5), 1 + rnd(5));
            let lb: Vec<usize> = batch
                .iter()
                .map(|&d| if rnd(3) == 0 { 1 } else { d })
                .collect();
            let rb: Vec<usize> = batch
                .iter()
                .map(|&d| if rnd(3) == 0 { 1 } else { d })
                .collect();
            let ld: Vec<usize> = lb.iter().copied().chain([m, k]).collect();
            let rd: Vec<usize> = rb.iter().copied().chain([k, n]).collect();
            let od: Vec<usize> = batch.iter().copied().chain([m, n]).collect();
            let (ls, lstr, llen) = view(&ld, rnd(2) == 0, rnd(2) * rnd(3), rnd(2) == 0);
            let (rs, rstr, rlen) = view(&rd, rnd(2) == 0, rnd(2) * rnd(3), rnd(2) == 0);
            let (os, ostr, olen) = view(&od, false, rnd(2) * rnd(3), false);
            let l: Vec<f64> = (0..llen)
                .map(|i| ((i * 7 + case) % 13) as f64 - 6.0)
                .collect();
            let r: Vec<f64> = (0..rlen)
                .map(|i| ((i * 5 + case) % 11) as f64 - 5.0)
                .collect();
            let Some((g, offs)) = plan((&ls, &lstr), (&rs, &rstr), (&os, &ostr)) else {
                continue;
            };
            let mut got = vec![f64::NAN; olen];
            run(&g, &offs, &l, &r, &mut got);
            // reference
            let total: usize = od.iter().product();
            for flat in 0..total {
                let mut ix = vec![0; rank];
                let mut f = flat;
                for d in (0..rank).rev() {
                    ix[d] = f % od[d];
                    f /= od[d];
                }
                let mut acc = 0.0;
                for p in 0..k {
                    let mut li = ix.clone();
                    li[rank - 1] = p;
                    let mut ri = ix.clone();
                    ri[rank - 2] = p;
                    acc += l[idx(&li, &lstr, &ls)] * r[idx(&ri, &rstr, &rs)];
                }
                let o = idx(&ix, &ostr, &os);
                assert_eq!(
                    got[o], acc,
                    "case {case}: {ls:?} {lstr:?} x {rs:?} {rstr:?} -> {os:?} {ostr:?}: {g:?} {offs:?}"
                );
            }
            checked += 1;
        }
        assert!(checked > 200, "only {checked} cases had a plan");
        eprintln!("{checked} of 400 random products had a plan and matched");
    }
}
