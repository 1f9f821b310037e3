//! lora-burn patch (vendor/PATCHES.md): dense products through cuBLASLt on the CUDA runtime.
//!
//! burn 0.21's CubeCL kernels emit `mma.sync` but no Hopper `wgmma`, and ran the products of a
//! GPT-2 LoRA step at 0.25–0.35× cuBLAS on an H200 (docs/gpu_notes.md). Every matmul of the
//! CUDA backend, forward and autodiff backward, and fusion's unfused fallback, arrives at
//! `launch_matmul_static`; this module takes those it can express and leaves the rest to CubeCL:
//!
//! - f32 × f32 → f32 as TF32 (`CUBLAS_COMPUTE_32F_FAST_TF32`, what CubeCL's tensor-core
//!   kernels also do with f32 inputs), bf16 and f16 with f32 accumulation;
//! - any rank with the same number of dims on both sides; batch dims broadcast (stride 0) or
//!   laid out at one stride per operand; each matrix row-major or column-major (transposed
//!   views) with any leading dimension; a weight broadcast over the batch is folded into one
//!   product of `batch · m` rows when the left side's rows are contiguous;
//! - the output contiguous and row-major (as `init_matmul_output` makes it).
//!
//! cuBLASLt is column-major: the row-major `out[m, n] = lhs[m, k] · rhs[k, n]` is computed as the
//! column-major `outᵀ[n, m] = rhsᵀ[n, k] · lhsᵀ[k, m]`. The heuristic's algorithm is cached per
//! geometry (shapes, strides, dtype, pointer alignment). The product is enqueued on the CubeCL
//! stream that resolved the output buffer (vendored cubecl-cuda exposes it), so it stays ordered
//! with CubeCL's kernels without a host synchronization.
//!
//! `LORA_BURN_CUBLASLT` (read once): `0` turns it off; `async` enqueues the later products of
//! a known geometry from CubeCL's server thread (not yet measured on a GPU); `verbose` prints each
//! distinct product left to CubeCL (shapes, strides, dtypes) once. Without the library
//! (`libcublasLt.so.<major>`, found on the loader's search path), every product stays on CubeCL,
//! with one line saying so.

use crate::{CubeRuntime, tensor::CubeTensor};
use burn_backend::DType;
use core::any::Any;
use core::ffi::c_void;
use cubecl_cuda::CudaRuntime;
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::sys as drv;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// cuBLASLt workspace per stream: what cuBLAS itself reserves on Hopper (32 MiB).
const WORKSPACE_BYTES: usize = 32 << 20;

/// The element type of all three matrices.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Elem {
    F32,
    Bf16,
    F16,
}

impl Elem {
    fn of(lhs: DType, rhs: DType, out: DType) -> Option<Self> {
        match (lhs, rhs, out) {
            (DType::F32, DType::F32, DType::F32) => Some(Self::F32),
            (DType::BF16, DType::BF16, DType::BF16) => Some(Self::Bf16),
            (DType::F16, DType::F16, DType::F16) => Some(Self::F16),
            _ => None,
        }
    }

    fn cuda(self) -> sys::cudaDataType {
        match self {
            Self::F32 => sys::cudaDataType::CUDA_R_32F,
            Self::Bf16 => sys::cudaDataType::CUDA_R_16BF,
            Self::F16 => sys::cudaDataType::CUDA_R_16F,
        }
    }

    fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }

    fn compute(self) -> sys::cublasComputeType_t {
        match self {
            Self::F32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            Self::Bf16 | Self::F16 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        }
    }
}

/// One column-major matrix operand: stored `rows × cols` with leading dimension `ld`,
/// transposed by the op when `trans`, `batch_stride` elements apart (0: broadcast).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Operand {
    rows: u64,
    cols: u64,
    ld: i64,
    trans: bool,
    batch_stride: i64,
}

/// A product as cuBLASLt takes it: `D[n, m] = op(A)[n, k] · op(B)[k, m]`, `batch` times; A
/// holds `rhs`, B holds `lhs`, D (column-major `n × m`, leading dimension the output's row
/// pitch) is the row-major output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Geometry {
    a: Operand,
    b: Operand,
    d: Operand,
    batch: i32,
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
fn plan(
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

/// What a cached geometry needs at each launch.
struct Prepared {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    geometry: Geometry,
    elem: Elem,
    align: [u32; 3],
}

struct State {
    handle: sys::cublasLtHandle_t,
    plans: HashMap<Key, Option<Prepared>>,
    workspaces: HashMap<usize, drv::CUdeviceptr>,
}

// SAFETY: the raw cuBLASLt handles and device pointers are used only under the mutex.
unsafe impl Send for State {}

fn state() -> Option<&'static Mutex<State>> {
    static STATE: OnceLock<Option<Mutex<State>>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            if std::env::var("LORA_BURN_CUBLASLT").as_deref() == Ok("0") {
                return None;
            }
            // SAFETY: only probes whether the shared library can be opened.
            if !unsafe { sys::is_culib_present() } {
                eprintln!(
                    "cuBLASLt: libcublasLt not found on the library path; dense products run on \
                     CubeCL's kernels (LD_LIBRARY_PATH: a CUDA toolkit's lib64, or the \
                     nvidia-cublas wheel's lib folder)"
                );
                return None;
            }
            let handle = lt::create_handle().ok()?;
            Some(Mutex::new(State {
                handle,
                plans: HashMap::new(),
                workspaces: HashMap::new(),
            }))
        })
        .as_ref()
}

/// Every product resolves its pointers from the caller's thread (the version measured on a
/// GPU) unless `LORA_BURN_CUBLASLT=async`: later products of a known geometry are then enqueued
/// from CubeCL's server thread (not yet measured on a GPU, so not the default).
fn blocking() -> bool {
    static BLOCKING: OnceLock<bool> = OnceLock::new();
    *BLOCKING.get_or_init(|| std::env::var("LORA_BURN_CUBLASLT").as_deref() != Ok("async"))
}

/// With `LORA_BURN_CUBLASLT=verbose`, prints a product left to CubeCL the first time it is seen.
fn report_fallback(what: String) {
    static VERBOSE: OnceLock<Option<Mutex<std::collections::HashSet<String>>>> = OnceLock::new();
    let verbose = VERBOSE.get_or_init(|| {
        (std::env::var("LORA_BURN_CUBLASLT").as_deref() == Ok("verbose"))
            .then(|| Mutex::new(Default::default()))
    });
    if let Some(seen) = verbose {
        if seen
            .lock()
            .map(|mut s| s.insert(what.clone()))
            .unwrap_or(false)
        {
            eprintln!("cuBLASLt: left to CubeCL: {what}");
        }
    }
}

/// Largest power of two (≤ 256) dividing the address: what cuBLASLt's heuristic may assume.
fn alignment(ptr: u64) -> u32 {
    (1u64 << ptr.trailing_zeros().min(8)) as u32
}

/// Runs `lhs · rhs` into `out` through cuBLASLt when the runtime is CUDA and the product has a
/// cuBLASLt form; `false` (nothing enqueued) otherwise, for the caller's CubeCL path.
pub(crate) fn try_matmul<R: CubeRuntime>(
    lhs: &CubeTensor<R>,
    rhs: &CubeTensor<R>,
    out: &CubeTensor<R>,
) -> bool {
    fn cuda<R: CubeRuntime>(t: &CubeTensor<R>) -> Option<&CubeTensor<CudaRuntime>> {
        (t as &dyn Any).downcast_ref()
    }
    let (Some(lhs), Some(rhs), Some(out)) = (cuda(lhs), cuda(rhs), cuda(out)) else {
        return false;
    };
    if lhs.qparams.is_some() || rhs.qparams.is_some() {
        return false;
    }
    let Some(elem) = Elem::of(lhs.dtype, rhs.dtype, out.dtype) else {
        return false;
    };
    fn dims(t: &CubeTensor<CudaRuntime>) -> (&[usize], &[usize]) {
        (&t.meta.shape()[..], &t.meta.strides()[..])
    }
    let Some((geometry, offsets)) = plan(dims(lhs), dims(rhs), dims(out)) else {
        report_fallback(format!(
            "{:?} {:?} x {:?} {:?} ({:?})",
            dims(lhs).0,
            dims(lhs).1,
            dims(rhs).0,
            dims(rhs).1,
            lhs.dtype
        ));
        return false;
    };
    let Some(state) = state() else {
        return false;
    };
    // The plan for the smallest alignment cuBLASLt accepts exists for any pointers of this
    // geometry: once it is known, later products of the geometry are enqueued from CubeCL's
    // server thread without waiting for it; the first one is resolved here, and decides.
    let any_align = Key {
        geometry,
        elem,
        align: [elem.bytes() as u32; 3],
    };
    let known = state
        .lock()
        .ok()
        .and_then(|s| s.plans.get(&any_align).map(Option::is_some))
        .filter(|usable| !usable || !blocking());
    match known {
        Some(false) => false,
        Some(true) => {
            let handles = vec![rhs.handle.clone(), lhs.handle.clone(), out.handle.clone()];
            out.client.submit_with_resources(handles, move |resources| {
                let launched = resources.map_err(|e| format!("{e:?}")).and_then(|r| {
                    let [a, b, d] = [0, 1, 2].map(|i| r[i].resource());
                    let ptrs = pointers(&offsets, [a.ptr, b.ptr, d.ptr], elem);
                    let mut st = state.lock().map_err(|e| e.to_string())?;
                    let key = key_for(&mut st, any_align, &ptrs);
                    // SAFETY: as in the first launch below; on the server thread, in order.
                    unsafe { launch(&mut st, key, &ptrs, d.stream) }.map_err(|e| e.to_string())
                });
                if let Err(e) = launched {
                    // Not expected once the geometry's plan exists; the product is missing.
                    panic!("cuBLASLt product failed on the server thread: {e}");
                }
            });
            true
        }
        None => {
            let resource =
                |t: &CubeTensor<CudaRuntime>| t.client.get_resource(t.handle.clone()).ok();
            let (Some(a), Some(b), Some(d)) = (resource(rhs), resource(lhs), resource(out)) else {
                return false;
            };
            let (a, b, d) = (a.resource(), b.resource(), d.resource());
            if d.stream.is_null() {
                return false;
            }
            let Ok(mut st) = state.lock() else {
                return false;
            };
            let ptrs = pointers(&offsets, [a.ptr, b.ptr, d.ptr], elem);
            // SAFETY: the pointers are live buffers of the shapes checked above (held by the
            // managed resources until after the enqueue), on the stream that orders them.
            unsafe {
                if set_context(d.stream).is_err() {
                    return false;
                }
                if !st.plans.contains_key(&any_align) {
                    let plan = prepare(st.handle, any_align).ok();
                    st.plans.insert(any_align, plan);
                }
                if st.plans[&any_align].is_none() {
                    report_fallback(format!("no cuBLASLt algorithm: {any_align:?}"));
                    return false;
                }
                let key = key_for(&mut st, any_align, &ptrs);
                launch(&mut st, key, &ptrs, d.stream).is_ok()
            }
        }
    }
}

/// The pointers `[a, b, d]` of each launch: the buffers' base addresses `[rhs, lhs, out]`
/// plus each launch's element offsets `[lhs, rhs, out]`.
fn pointers(offsets: &[[usize; 3]], [a, b, d]: [u64; 3], elem: Elem) -> Vec<[u64; 3]> {
    let bytes = elem.bytes() as u64;
    offsets
        .iter()
        .map(|[l, r, o]| {
            [
                a + *r as u64 * bytes,
                b + *l as u64 * bytes,
                d + *o as u64 * bytes,
            ]
        })
        .collect()
}

/// The cached key of these pointers' actual alignment when its plan exists (prepared on first
/// use), else `any_align`'s.
fn key_for(state: &mut State, any_align: Key, ptrs: &[[u64; 3]]) -> Key {
    let align = |i: usize| ptrs.iter().map(|p| alignment(p[i])).min().unwrap_or(1);
    let key = Key {
        align: [align(0), align(1), align(2)],
        ..any_align
    };
    if !state.plans.contains_key(&key) {
        // SAFETY: descriptors only; the context is current on this thread (set by the caller).
        let plan = unsafe { prepare(state.handle, key) }.ok();
        state.plans.insert(key, plan);
    }
    if state.plans[&key].is_some() {
        key
    } else {
        any_align
    }
}

/// Makes `stream`'s context current on this thread (CubeCL's server thread has it; the
/// caller's thread may not).
unsafe fn set_context(stream: drv::CUstream) -> LtResult<()> {
    unsafe {
        let mut ctx = core::ptr::null_mut();
        drv::cuStreamGetCtx(stream, &mut ctx).result()?;
        if cudarc::driver::result::ctx::get_current()? != Some(ctx) {
            cudarc::driver::result::ctx::set_current(ctx)?;
        }
        Ok(())
    }
}

type LtResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Enqueues the product of `key` (its plan already cached) for each pointer triple on `stream`.
unsafe fn launch(
    state: &mut State,
    key: Key,
    ptrs: &[[u64; 3]],
    stream: drv::CUstream,
) -> LtResult<()> {
    unsafe {
        set_context(stream)?;
        let workspace = match state.workspaces.get(&(stream as usize)) {
            Some(ws) => *ws,
            None => {
                let ws = cudarc::driver::result::malloc_sync(WORKSPACE_BYTES)?;
                state.workspaces.insert(stream as usize, ws);
                ws
            }
        };
        let handle = state.handle;
        let Some(Some(p)) = state.plans.get(&key) else {
            return Err("no cuBLASLt plan for this geometry".into());
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        for &[a, b, d] in ptrs {
            lt::matmul(
                handle,
                p.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                a as *const c_void,
                p.a,
                b as *const c_void,
                p.b,
                d as *const c_void,
                p.d,
                d as *mut c_void,
                p.d,
                &p.algo,
                workspace as *mut c_void,
                WORKSPACE_BYTES,
                stream as sys::cudaStream_t,
            )?;
        }
        Ok(())
    }
}

/// The descriptors of `key` and the heuristic's first algorithm for them.
unsafe fn prepare(handle: sys::cublasLtHandle_t, key: Key) -> LtResult<Prepared> {
    use sys::cublasLtMatmulDescAttributes_t as D;
    use sys::cublasLtMatmulPreferenceAttributes_t as P;
    use sys::cublasLtMatrixLayoutAttribute_t as L;
    unsafe {
        let g = key.geometry;
        let dtype = key.elem.cuda();
        let desc = lt::create_matmul_desc(key.elem.compute(), sys::cudaDataType::CUDA_R_32F)?;
        for (attr, trans) in [
            (D::CUBLASLT_MATMUL_DESC_TRANSA, g.a.trans),
            (D::CUBLASLT_MATMUL_DESC_TRANSB, g.b.trans),
        ] {
            // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1.
            let op: i32 = trans as i32;
            lt::set_matmul_desc_attribute(desc, attr, &op as *const i32 as *const c_void, 4)?;
        }
        let layout = |o: Operand| -> LtResult<sys::cublasLtMatrixLayout_t> {
            let l = lt::create_matrix_layout(dtype, o.rows, o.cols, o.ld)?;
            if g.batch > 1 {
                let count = g.batch;
                lt::set_matrix_layout_attribute(
                    l,
                    L::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    &count as *const i32 as *const c_void,
                    4,
                )?;
                lt::set_matrix_layout_attribute(
                    l,
                    L::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    &o.batch_stride as *const i64 as *const c_void,
                    8,
                )?;
            }
            Ok(l)
        };
        let a = layout(g.a)?;
        let b = layout(g.b)?;
        let d = layout(g.d)?;
        let pref = lt::create_matmul_pref()?;
        let ws = WORKSPACE_BYTES as u64;
        lt::set_matmul_pref_attribute(
            pref,
            P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws as *const u64 as *const c_void,
            8,
        )?;
        let aligns = [
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align[0]),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align[1]),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align[2]),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align[2]),
        ];
        for (attr, align) in aligns {
            lt::set_matmul_pref_attribute(pref, attr, &align as *const u32 as *const c_void, 4)?;
        }
        let heuristic = lt::get_matmul_algo_heuristic(handle, desc, a, b, d, d, pref);
        lt::destroy_matmul_pref(pref)?;
        Ok(Prepared {
            desc,
            a,
            b,
            d,
            algo: heuristic?.algo,
        })
    }
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
