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
//! `LORA_BURN_CUBLASLT` (read once; any other value than these panics): unset, `1` or `async`
//! is on, with the later products of a known geometry enqueued from CubeCL's server thread;
//! `blocking` resolves every product's pointers from the caller's thread (the first version);
//! `0` turns it off; `verbose` (blocking) prints each distinct product left to CubeCL (shapes,
//! strides, dtypes) once. Without the library
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

use super::cublaslt_geometry::{Geometry, Operand, plan};

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
            if setting() == "0" {
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

/// By default only the first product of a geometry resolves its pointers from the caller's
/// thread; later ones are enqueued from CubeCL's server thread (steps 0.5–45% shorter than
/// resolving every product, docs/gpu_notes.md). `blocking` and `verbose` resolve every product
/// from the caller's thread, the first version, kept for the A/B.
fn blocking() -> bool {
    static BLOCKING: OnceLock<bool> = OnceLock::new();
    *BLOCKING.get_or_init(|| matches!(setting(), "blocking" | "verbose"))
}

/// `LORA_BURN_CUBLASLT`, read once: unset, `1` or `async` (on, later products enqueued from
/// the server thread), `blocking`, `0` or `verbose`; any other value panics at the first product
/// with this list, as `LORA_BURN_MATMUL` does.
fn setting() -> &'static str {
    static SETTING: OnceLock<&'static str> = OnceLock::new();
    // The examples check the value first (crates/lora-recipes/src/switches.rs): keep both in step.
    SETTING.get_or_init(|| match std::env::var("LORA_BURN_CUBLASLT").as_deref() {
        Err(_) | Ok("1") | Ok("async") => "async",
        Ok("blocking") => "blocking",
        Ok("0") => "0",
        Ok("verbose") => "verbose",
        Ok(other) => {
            panic!(
                "LORA_BURN_CUBLASLT={other:?}: expected 1 (or unset), async, blocking, 0 or verbose"
            )
        }
    })
}

/// With `LORA_BURN_CUBLASLT=verbose`, prints a product left to CubeCL the first time it is seen.
fn report_fallback(what: impl FnOnce() -> String) {
    static VERBOSE: OnceLock<Option<Mutex<std::collections::HashSet<String>>>> = OnceLock::new();
    let verbose =
        VERBOSE.get_or_init(|| (setting() == "verbose").then(|| Mutex::new(Default::default())));
    // The description is built only when it will be printed: a product CubeCL runs is common.
    if let Some(seen) = verbose {
        let what = what();
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
        report_fallback(|| {
            format!(
                "{:?} {:?} x {:?} {:?} ({:?})",
                dims(lhs).0,
                dims(lhs).1,
                dims(rhs).0,
                dims(rhs).1,
                lhs.dtype
            )
        });
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
                    report_fallback(|| format!("no cuBLASLt algorithm: {any_align:?}"));
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
        let algo = match heuristic {
            Ok(h) => h.algo,
            Err(e) => {
                // A geometry without an algorithm is cached as such: free what it made.
                for l in [a, b, d] {
                    lt::destroy_matrix_layout(l)?;
                }
                lt::destroy_matmul_desc(desc)?;
                return Err(e.into());
            }
        };
        Ok(Prepared {
            desc,
            a,
            b,
            d,
            algo,
        })
    }
}
