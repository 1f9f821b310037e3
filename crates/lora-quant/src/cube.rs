//! NF4 dequantization on the GPU as one CubeCL kernel (feature `cubecl`), for the CubeCL backends
//! of burn 0.21 (`CubeBackend<R, F, I, BT>`: CUDA, wgpu, ROCm).
//!
//! [`QuantLinear::dequantize_weight`] builds the dense weight with about ten burn tensor ops
//! (eight shifts and masks, a stack, a `select` into the code table, a broadcast multiply, and for
//! double quantization the same again for the absmax), each a pass over memory. Here one thread
//! reads one packed I32 word (eight 4-bit codes, the first code in the most significant nibble,
//! see [`crate::linear`]), looks the eight codes up in the 16-entry NF4 table, multiplies by its
//! block's absmax and writes the eight f32 values as two 16-byte vector stores: the minimum
//! traffic, `n/2` bytes read for the codes, `4·n/blocksize` for the absmax and `4·n` written.
//!
//! Double quantization (QLoRA §3) takes a second, tiny kernel ([`nested_absmax_cube`]) that
//! writes `code2[q] · absmax2[block]` (one f32 per 4-bit block, 1/blocksize of the output); the
//! main kernel adds the offset and multiplies: `code[q] · (p + offset)`, the same two f32
//! roundings as bitsandbytes' `dequantize_blockwise(...) + offset` followed by `dequantize_4bit`.
//! The split is deliberate: CUDA compiles with FMA contraction on, which would fuse
//! `code2[q]·absmax2 + offset` into one rounding and break bit equality with the CPU reference;
//! `(p + offset) · code` cannot be contracted. The result is equal bit for bit to
//! [`crate::dequantize_nf4`] (a table lookup times a scale is exact in f32 on any IEEE device).
//!
//! The output is written into a buffer of `8 · n_words` f32 (`n_words = ceil(n / 8)`), then
//! narrowed to `n = d_out · d_in` and reshaped to `[d_out, d_in]`, the layout of
//! [`QuantLinear::dequantize_weight`].

use burn::module::{Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Shape, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;
use cubecl::{calculate_cube_count_elemwise, CubeCount, CubeDim};

use crate::linear::{NestedAbsmax, Nf4Scales, QuantLinear, NIBBLES_PER_WORD};
use crate::nf4::check_blocksize;
use crate::QuantError;

/// Threads per cube (block) of the element-wise kernels.
const CUBE_THREADS: u32 = 256;

/// One thread per packed word: eight NF4 codes → eight f32 `code[q] · (absmax[block] + offset)`,
/// stored as two `Vector<f32, 4>` (16-byte stores). `words_per_block = blocksize / 8`
/// (comptime, so the block index is a shift).
#[cube(launch)]
pub fn nf4_dequant_kernel(
    words: &Array<u32>,
    absmax: &Array<f32>,
    code: &Array<f32>,
    offset: f32,
    out: &mut Array<Vector<f32, Const<4>>>,
    #[comptime] words_per_block: usize,
) {
    let w = ABSOLUTE_POS;
    if w >= words.len() {
        terminate!();
    }
    let word = words[w];
    let scale = absmax[w / words_per_block] + offset;
    let mut lo = Vector::<f32, Const<4>>::empty();
    let mut hi = Vector::<f32, Const<4>>::empty();
    lo[0] = code[(word >> 28u32) as usize] * scale;
    lo[1] = code[((word >> 24u32) & 15u32) as usize] * scale;
    lo[2] = code[((word >> 20u32) & 15u32) as usize] * scale;
    lo[3] = code[((word >> 16u32) & 15u32) as usize] * scale;
    hi[0] = code[((word >> 12u32) & 15u32) as usize] * scale;
    hi[1] = code[((word >> 8u32) & 15u32) as usize] * scale;
    hi[2] = code[((word >> 4u32) & 15u32) as usize] * scale;
    hi[3] = code[(word & 15u32) as usize] * scale;
    out[2 * w] = lo;
    out[2 * w + 1] = hi;
}

/// Variant of [`nf4_dequant_kernel`] with one thread per half word: four codes → one
/// `Vector<f32, 4>`, so a warp's stores are one contiguous 512-byte run (the word is read by two
/// neighbouring threads, from the same cache line). Also launched without CubeCL's per-access
/// bounds checks ([`Nf4Kernel::HalfWordUnchecked`]) after the host has checked every length.
#[cube(launch, launch_unchecked)]
pub fn nf4_dequant_half_kernel(
    words: &Array<u32>,
    absmax: &Array<f32>,
    code: &Array<f32>,
    offset: f32,
    out: &mut Array<Vector<f32, Const<4>>>,
    #[comptime] words_per_block: usize,
) {
    let h = ABSOLUTE_POS;
    if h >= out.len() {
        terminate!();
    }
    let w = h / 2;
    let odd = (h % 2) as u32;
    let half = (words[w] >> (16u32 - 16u32 * odd)) & 65535u32;
    let scale = absmax[w / words_per_block] + offset;
    let mut v = Vector::<f32, Const<4>>::empty();
    v[0] = code[(half >> 12u32) as usize] * scale;
    v[1] = code[((half >> 8u32) & 15u32) as usize] * scale;
    v[2] = code[((half >> 4u32) & 15u32) as usize] * scale;
    v[3] = code[(half & 15u32) as usize] * scale;
    out[h] = v;
}

/// One thread per first-level block: `out[i] = code2[q_i] · absmax2[i / blocksize2]`, `q_i` the
/// i-th byte of the big-endian words (four 8-bit codes a word).
#[cube(launch)]
pub fn nested_absmax_kernel(
    words: &Array<u32>,
    absmax2: &Array<f32>,
    code2: &Array<f32>,
    out: &mut Array<f32>,
    #[comptime] blocksize2: usize,
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let word = words[i / 4];
    let sub = (i % 4) as u32;
    let q = (word >> (24u32 - 8u32 * sub)) & 255u32;
    out[i] = code2[q as usize] * absmax2[i / blocksize2];
}

/// A plain 16-byte-vector copy (the memory-bandwidth baseline of the benchmark).
#[cube(launch)]
pub fn copy_kernel(input: &Array<Vector<f32, Const<4>>>, out: &mut Array<Vector<f32, Const<4>>>) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    out[i] = input[i];
}

fn bad(what: &str, expected: Vec<usize>, got: Vec<usize>) -> QuantError {
    QuantError::Shape {
        what: what.to_string(),
        expected,
        got,
    }
}

fn check_dtype<R: CubeRuntime>(
    t: &CubeTensor<R>,
    ok: &[DType],
    what: &str,
) -> Result<(), QuantError> {
    if ok.contains(&t.dtype) {
        Ok(())
    } else {
        Err(QuantError::Format {
            key: what.to_string(),
            message: format!("dtype {:?}, expected one of {ok:?}", t.dtype),
        })
    }
}

/// Number of elements of a CubeCL tensor that must be 1-D and contiguous (stride 1).
fn len_1d<R: CubeRuntime>(t: &CubeTensor<R>, what: &str) -> Result<usize, QuantError> {
    let shape = t.meta.shape().clone();
    let dims: Vec<usize> = shape.iter().copied().collect();
    let strides: Vec<usize> = t.meta.strides().iter().copied().collect();
    if dims.len() != 1 || strides[0] != 1 {
        return Err(QuantError::Format {
            key: what.to_string(),
            message: format!(
                "expected a contiguous 1-D tensor, got shape {dims:?} strides {strides:?}"
            ),
        });
    }
    Ok(dims[0])
}

fn elemwise_launch<R: CubeRuntime>(
    client: &ComputeClient<R>,
    units: usize,
) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new_1d(CUBE_THREADS);
    (
        calculate_cube_count_elemwise(client, units, cube_dim),
        cube_dim,
    )
}

/// Which NF4 kernel to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nf4Kernel {
    /// [`nf4_dequant_kernel`]: one thread per word, two 16-byte stores. H200: 4096×4096
    /// 1,616 GB/s (0.40 of copy), 8192×8192 0.52.
    WordPerThread,
    /// [`nf4_dequant_half_kernel`]: one thread per half word, one 16-byte store, so a warp's
    /// stores are contiguous (the default). H200: 4096×4096 2,165 GB/s (0.54 of copy), 8192×8192
    /// 2,965 GB/s (0.74); all variants bit-exact (docs/benchmarks.md, 2026-11-29).
    HalfWordPerThread,
    /// [`nf4_dequant_half_kernel`] launched unchecked: no bounds check on each array access (the
    /// host has checked `out` = 8 per word, `absmax` ≥ one per block and `code` = 16, and the
    /// kernel keeps its `h < out.len()` guard, so every index is in range). H200: 4096×4096
    /// 2,344 GB/s (0.58), 8192×8192 3,373 GB/s (0.84); slower than the checked launch on GPT-2's
    /// small, launch-bound weights in the same run, so not the default.
    HalfWordUnchecked,
}

/// Launches the NF4 kernel ([`Nf4Kernel::HalfWordPerThread`]): `out[e] = code[q_e] · (absmax[e / blocksize] + offset)` for every
/// element `e < 8 · n_words` (the codes past `numel` are padding and land in the padding of
/// `out`).
///
/// - `words`: `[n_words]` I32 or U32, contiguous, eight codes a word, first code in bits 28..31;
/// - `absmax`: `[ceil(8·n_words / blocksize)]` or more, F32 (or the products of
///   [`nested_absmax_cube`], with `offset` the double-quant offset; `0.0` for plain f32 absmax,
///   which adds exactly nothing to a non-negative absmax);
/// - `code`: `[16]` F32, the NF4 table ([`crate::NF4_CODE`]);
/// - `out`: `[8 · n_words]` F32, contiguous; every element is written.
///
/// # Errors
/// [`QuantError::BadBlocksize`]; [`QuantError::Format`] for a wrong dtype or a non-contiguous
/// tensor; [`QuantError::Shape`] when the lengths do not fit.
pub fn nf4_dequantize_into<R: CubeRuntime>(
    words: CubeTensor<R>,
    absmax: CubeTensor<R>,
    code: CubeTensor<R>,
    offset: f32,
    blocksize: usize,
    out: CubeTensor<R>,
) -> Result<(), QuantError> {
    nf4_dequantize_into_with(
        words,
        absmax,
        code,
        offset,
        blocksize,
        out,
        Nf4Kernel::HalfWordPerThread,
    )
}

/// [`nf4_dequantize_into`] with the kernel variant chosen.
///
/// # Errors
/// As [`nf4_dequantize_into`].
pub fn nf4_dequantize_into_with<R: CubeRuntime>(
    words: CubeTensor<R>,
    absmax: CubeTensor<R>,
    code: CubeTensor<R>,
    offset: f32,
    blocksize: usize,
    out: CubeTensor<R>,
    kernel: Nf4Kernel,
) -> Result<(), QuantError> {
    check_blocksize(blocksize)?;
    check_dtype(&words, &[DType::I32, DType::U32], "nf4 words")?;
    check_dtype(&absmax, &[DType::F32], "nf4 absmax")?;
    check_dtype(&code, &[DType::F32], "nf4 code table")?;
    check_dtype(&out, &[DType::F32], "nf4 output")?;
    let n_words = len_1d(&words, "nf4 words")?;
    let n_abs = len_1d(&absmax, "nf4 absmax")?;
    let n_code = len_1d(&code, "nf4 code table")?;
    let n_out = len_1d(&out, "nf4 output")?;
    let need_abs = (n_words * NIBBLES_PER_WORD).div_ceil(blocksize);
    if n_abs < need_abs {
        return Err(bad(
            "nf4 absmax (one per block)",
            vec![need_abs],
            vec![n_abs],
        ));
    }
    if n_code != 16 {
        return Err(bad("nf4 code table", vec![16], vec![n_code]));
    }
    if n_out != n_words * NIBBLES_PER_WORD {
        return Err(bad(
            "nf4 output (8 per word)",
            vec![n_words * NIBBLES_PER_WORD],
            vec![n_out],
        ));
    }
    if n_words == 0 {
        return Ok(());
    }
    let client = out.client.clone();
    // The three launches take the same arguments; only the kernel, its launch mode and the
    // number of threads differ.
    macro_rules! launch_nf4 {
        ($launch:expr, $threads:expr) => {{
            let (count, dim) = elemwise_launch(&client, $threads);
            $launch(
                &client,
                count,
                dim,
                words.into_array_arg(),
                absmax.into_array_arg(),
                code.into_array_arg(),
                offset,
                out.into_array_arg(),
                blocksize / NIBBLES_PER_WORD,
            )
        }};
    }
    match kernel {
        Nf4Kernel::WordPerThread => launch_nf4!(nf4_dequant_kernel::launch::<R>, n_words),
        Nf4Kernel::HalfWordPerThread => {
            launch_nf4!(nf4_dequant_half_kernel::launch::<R>, 2 * n_words)
        }
        // SAFETY: thread h < out.len() = 2·n_words (kernel guard) reads words[h / 2]
        // (< n_words), absmax[(h / 2) / (blocksize / 8)] (< need_abs ≤ n_abs, checked above)
        // and code[q] with q a 4-bit value (< 16 = n_code, checked above), and writes out[h].
        Nf4Kernel::HalfWordUnchecked => unsafe {
            launch_nf4!(nf4_dequant_half_kernel::launch_unchecked::<R>, 2 * n_words)
        },
    }
    Ok(())
}

/// The double-quantization products `code2[q_i] · absmax2[i / blocksize2]`, `[n_blocks]` F32
/// (one f32 rounding; the offset is added by [`nf4_dequantize_into`]).
///
/// - `words`: `[ceil(n_blocks / 4)]` I32/U32, four 8-bit codes a word, big-endian;
/// - `absmax2`: `[ceil(n_blocks / blocksize2)]` F32; `code2`: `[256]` F32.
///
/// # Errors
/// [`QuantError::Format`] for a wrong dtype or layout; [`QuantError::Shape`] for lengths that
/// do not fit; [`QuantError::BadBlocksize`] for `blocksize2 == 0`.
pub fn nested_absmax_cube<R: CubeRuntime>(
    words: CubeTensor<R>,
    absmax2: CubeTensor<R>,
    code2: CubeTensor<R>,
    n_blocks: usize,
    blocksize2: usize,
) -> Result<CubeTensor<R>, QuantError> {
    if blocksize2 == 0 {
        return Err(QuantError::BadBlocksize {
            what: "nf4 double quantization (blocksize2)",
            blocksize: 0,
            allowed: &[crate::nf4::DOUBLE_QUANT_BLOCKSIZE],
        });
    }
    check_dtype(&words, &[DType::I32, DType::U32], "nested absmax words")?;
    check_dtype(&absmax2, &[DType::F32], "nested absmax2")?;
    check_dtype(&code2, &[DType::F32], "nested code2")?;
    let n_words = len_1d(&words, "nested absmax words")?;
    let n2 = len_1d(&absmax2, "nested absmax2")?;
    let n_code = len_1d(&code2, "nested code2")?;
    if n_words < n_blocks.div_ceil(4) {
        return Err(bad(
            "nested absmax words",
            vec![n_blocks.div_ceil(4)],
            vec![n_words],
        ));
    }
    if n2 < n_blocks.div_ceil(blocksize2) {
        return Err(bad(
            "nested absmax2",
            vec![n_blocks.div_ceil(blocksize2)],
            vec![n2],
        ));
    }
    if n_code != 256 {
        return Err(bad("nested code2", vec![256], vec![n_code]));
    }
    let client = words.client.clone();
    let device = words.device.clone();
    let handle = client.empty(n_blocks.max(1) * 4);
    let out = CubeTensor::new_contiguous(
        client.clone(),
        device,
        Shape::new([n_blocks]),
        handle,
        DType::F32,
    );
    if n_blocks > 0 {
        let (count, dim) = elemwise_launch(&client, n_blocks);
        nested_absmax_kernel::launch::<R>(
            &client,
            count,
            dim,
            words.into_array_arg(),
            absmax2.into_array_arg(),
            code2.into_array_arg(),
            out.clone().into_array_arg(),
            blocksize2,
        );
    }
    Ok(out)
}

/// Copies `input` into `out` (both `[n]` F32 contiguous, `n` a multiple of 4) with 16-byte
/// vector loads and stores: the device-to-device copy bandwidth baseline (bytes read + written
/// = `8·n`).
///
/// # Errors
/// [`QuantError::Shape`] for lengths that differ or are not a multiple of 4;
/// [`QuantError::Format`] for a wrong dtype or layout.
pub fn copy_f32_cube<R: CubeRuntime>(
    input: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), QuantError> {
    check_dtype(&input, &[DType::F32], "copy input")?;
    check_dtype(&out, &[DType::F32], "copy output")?;
    let n = len_1d(&input, "copy input")?;
    let m = len_1d(&out, "copy output")?;
    if n != m || n % 4 != 0 {
        return Err(bad("copy (equal lengths, multiple of 4)", vec![n], vec![m]));
    }
    let client = out.client.clone();
    let (count, dim) = elemwise_launch(&client, n / 4);
    copy_kernel::launch::<R>(
        &client,
        count,
        dim,
        input.into_array_arg(),
        out.into_array_arg(),
    );
    Ok(())
}

/// The CubeCL backend without fusion (`burn::backend::Cuda` with the `fusion` feature off is
/// `CubeBackend<CudaRuntime, f32, i32, u8>`).
pub type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

fn float_prim<R, F, I, BT, const D: usize>(t: Tensor<Cube<R, F, I, BT>, D>) -> CubeTensor<R>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    t.into_primitive().tensor()
}

/// [`QuantLinear::dequantize_weight`] as one kernel launch (two with double quantization),
/// writing into `out`: `[8 · ceil(d_out·d_in / 8)]` F32 (for example a poisoned buffer in a
/// test). Returns the weight `[d_out, d_in]` F32, equal bit for bit to the burn-ops path and to
/// [`crate::dequantize_nf4`].
///
/// # Errors
/// As [`nf4_dequantize_into`] and [`nested_absmax_cube`].
pub fn dequantize_weight_cube_into<R, F, I, BT>(
    q: &QuantLinear<Cube<R, F, I, BT>>,
    out: Tensor<Cube<R, F, I, BT>, 1>,
) -> Result<Tensor<Cube<R, F, I, BT>, 2>, QuantError>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    dequantize_weight_cube_into_with(q, out, Nf4Kernel::HalfWordPerThread)
}

/// [`dequantize_weight_cube_into`] with the kernel variant chosen.
///
/// # Errors
/// As [`dequantize_weight_cube_into`].
pub fn dequantize_weight_cube_into_with<R, F, I, BT>(
    q: &QuantLinear<Cube<R, F, I, BT>>,
    out: Tensor<Cube<R, F, I, BT>, 1>,
    kernel: Nf4Kernel,
) -> Result<Tensor<Cube<R, F, I, BT>, 2>, QuantError>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let n = q.d_in * q.d_out;
    let padded = n.div_ceil(NIBBLES_PER_WORD) * NIBBLES_PER_WORD;
    let [n_out] = out.dims();
    if n_out != padded {
        return Err(bad("nf4 output buffer", vec![padded], vec![n_out]));
    }
    let (absmax, offset) = match &q.scales {
        Nf4Scales::F32(a) => (float_prim(a.val()), 0.0f32),
        Nf4Scales::Double(d) => (
            nested_absmax_cube(
                d.words.val().into_primitive(),
                float_prim(d.absmax2.val()),
                float_prim(d.code2.clone()),
                d.n_blocks,
                d.blocksize2,
            )?,
            d.offset,
        ),
    };
    nf4_dequantize_into_with(
        q.words.val().into_primitive(),
        absmax,
        float_prim(q.code.clone()),
        offset,
        q.blocksize,
        float_prim(out.clone()),
        kernel,
    )?;
    let w = if padded == n {
        out
    } else {
        out.narrow(0, 0, n)
    };
    Ok(w.reshape([q.d_out, q.d_in]))
}

/// [`QuantLinear::dequantize_weight`] as one kernel launch (two with double quantization) into
/// a fresh buffer: the weight `[d_out, d_in]` F32.
///
/// # Errors
/// As [`dequantize_weight_cube_into`].
pub fn dequantize_weight_cube<R, F, I, BT>(
    q: &QuantLinear<Cube<R, F, I, BT>>,
) -> Result<Tensor<Cube<R, F, I, BT>, 2>, QuantError>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    dequantize_weight_cube_with(q, Nf4Kernel::HalfWordPerThread)
}

/// [`dequantize_weight_cube`] with the kernel variant chosen.
///
/// # Errors
/// As [`dequantize_weight_cube_into`].
pub fn dequantize_weight_cube_with<R, F, I, BT>(
    q: &QuantLinear<Cube<R, F, I, BT>>,
    kernel: Nf4Kernel,
) -> Result<Tensor<Cube<R, F, I, BT>, 2>, QuantError>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let padded = (q.d_in * q.d_out).div_ceil(NIBBLES_PER_WORD) * NIBBLES_PER_WORD;
    let words: CubeTensor<R> = q.words.val().into_primitive();
    let client = words.client.clone();
    let handle = client.empty(padded * 4);
    let out = CubeTensor::new_contiguous(
        client,
        words.device.clone(),
        Shape::new([padded]),
        handle,
        DType::F32,
    );
    dequantize_weight_cube_into_with(
        q,
        Tensor::from_primitive(TensorPrimitive::Float(out)),
        kernel,
    )
}

/// The kernel definitions (CubeCL IR) of the three kernels, expanded without a device, for
/// compiling to source and inspecting it (`nf4_kernel_bench --source`): `nf4_dequant_kernel`
/// for `blocksize`, `nested_absmax_kernel` for `blocksize2`, `copy_kernel`. Panics inside the
/// expansion are CubeCL type errors in the kernels.
pub fn kernel_definitions<R: Runtime>(
    blocksize: usize,
    blocksize2: usize,
) -> Vec<(&'static str, KernelDefinition)> {
    let arr = ArrayCompilationArg { inplace: None };
    let settings = |name: &str| {
        KernelSettings::default()
            .kernel_name(name)
            .cube_dim(CubeDim::new_1d(CUBE_THREADS))
            .address_type(AddressType::U32)
    };
    let builder = || {
        let mut b = KernelBuilder::default();
        b.runtime_properties(R::target_properties());
        AddressType::U32.register(&mut b.scope);
        b
    };

    // The two NF4 variants take the same arguments.
    macro_rules! nf4_definition {
        ($kernel:ident) => {{
            let mut b = builder();
            let words = <Array<u32> as LaunchArg>::expand(&arr, &mut b);
            let absmax = <Array<f32> as LaunchArg>::expand(&arr, &mut b);
            let code = <Array<f32> as LaunchArg>::expand(&arr, &mut b);
            let offset = <f32 as LaunchArg>::expand(&(), &mut b);
            let out = <Array<Vector<f32, Const<4>>> as LaunchArg>::expand_output(&arr, &mut b);
            $kernel::expand(
                &mut b.scope,
                words,
                absmax,
                code,
                offset,
                out,
                blocksize / NIBBLES_PER_WORD,
            );
            b.build(settings(stringify!($kernel)))
        }};
    }
    let nf4 = nf4_definition!(nf4_dequant_kernel);
    let half = nf4_definition!(nf4_dequant_half_kernel);

    let mut b = builder();
    let words = <Array<u32> as LaunchArg>::expand(&arr, &mut b);
    let absmax2 = <Array<f32> as LaunchArg>::expand(&arr, &mut b);
    let code2 = <Array<f32> as LaunchArg>::expand(&arr, &mut b);
    let out = <Array<f32> as LaunchArg>::expand_output(&arr, &mut b);
    nested_absmax_kernel::expand(&mut b.scope, words, absmax2, code2, out, blocksize2);
    let nested = b.build(settings("nested_absmax_kernel"));

    let mut b = builder();
    let input = <Array<Vector<f32, Const<4>>> as LaunchArg>::expand(&arr, &mut b);
    let out = <Array<Vector<f32, Const<4>>> as LaunchArg>::expand_output(&arr, &mut b);
    copy_kernel::expand(&mut b.scope, input, out);
    let copy = b.build(settings("copy_kernel"));

    vec![
        ("nf4_dequant_kernel", nf4),
        ("nf4_dequant_half_kernel", half),
        ("nested_absmax_kernel", nested),
        ("copy_kernel", copy),
    ]
}

/// The same layer with every tensor mapped to another backend (`int` for the code words, `float`
/// for the f32 tensors); the parameters are transient (fresh ids).
#[cfg_attr(not(feature = "cuda-base"), allow(dead_code))]
fn map_backend<B1: Backend, B2: Backend>(
    q: &QuantLinear<B1>,
    int: impl Fn(Tensor<B1, 1, Int>) -> Tensor<B2, 1, Int>,
    float: impl Fn(Tensor<B1, 1>) -> Tensor<B2, 1>,
) -> QuantLinear<B2> {
    let scales = match &q.scales {
        Nf4Scales::F32(a) => Nf4Scales::F32(Param::initialized(ParamId::new(), float(a.val()))),
        Nf4Scales::Double(d) => Nf4Scales::Double(NestedAbsmax {
            words: Param::initialized(ParamId::new(), int(d.words.val())),
            absmax2: Param::initialized(ParamId::new(), float(d.absmax2.val())),
            code2: float(d.code2.clone()),
            offset: d.offset,
            n_blocks: d.n_blocks,
            blocksize2: d.blocksize2,
        }),
    };
    QuantLinear {
        words: Param::initialized(ParamId::new(), int(q.words.val())),
        scales,
        code: float(q.code.clone()),
        d_in: q.d_in,
        d_out: q.d_out,
        blocksize: q.blocksize,
    }
}

#[cfg(feature = "cuda-base")]
mod dispatch {
    use std::any::Any;

    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    use burn::tensor::{DType, Tensor, TensorMetadata, TensorPrimitive};
    use burn_fusion::stream::OperationStreams;
    use burn_fusion::{Fusion, NoOp};
    use burn_ir::{BackendIr, InitOperationIr, OperationIr, OperationOutput};
    use cubecl::cuda::CudaRuntime;

    use super::{dequantize_weight_cube, map_backend};
    use crate::linear::QuantLinear;
    use crate::QuantError;

    /// `burn::backend::Cuda` without fusion.
    pub(super) type CudaCube = burn_cubecl::CubeBackend<CudaRuntime, f32, i32, u8>;
    /// `burn::backend::Cuda` (fusion on).
    pub(super) type CudaFusion = Fusion<CudaCube>;

    /// The kernel under fusion: the layer's tensors are resolved to CubeCL tensors (this drains
    /// their fusion stream), the kernel runs eagerly, and its output is registered back as a new
    /// fusion tensor (an `Init` operation, as `Fusion::float_from_data` does).
    pub(super) fn fusion(q: &QuantLinear<CudaFusion>) -> Result<Tensor<CudaFusion, 2>, QuantError> {
        let client = q.words.val().into_primitive().client.clone();
        let qc: QuantLinear<CudaCube> = map_backend(
            q,
            |t| Tensor::from_primitive(client.resolve_tensor_int::<CudaCube>(t.into_primitive())),
            |t| {
                Tensor::from_primitive(TensorPrimitive::Float(
                    client.resolve_tensor_float::<CudaCube>(t.into_primitive().tensor()),
                ))
            },
        );
        let w = dequantize_weight_cube(&qc)?;
        let prim = w.into_primitive().tensor();
        let shape = prim.shape();
        let handle = <CudaCube as BackendIr>::float_tensor_handle(prim);
        let desc =
            InitOperationIr::create(shape, DType::F32, || client.register_tensor_handle(handle));
        let out = client
            .register(
                OperationStreams::default(),
                OperationIr::Init(desc),
                NoOp::<CudaCube>::new(),
            )
            .output();
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }

    fn boxed<T: Any>(r: Result<T, QuantError>) -> Option<Box<dyn Any>> {
        r.ok().map(|t| Box::new(t) as Box<dyn Any>)
    }

    /// The kernel for the four CUDA backend types, `None` for any other backend.
    pub(super) fn any(q: &dyn Any) -> Option<Box<dyn Any>> {
        if let Some(q) = q.downcast_ref::<QuantLinear<CudaCube>>() {
            boxed(dequantize_weight_cube(q))
        } else if let Some(q) = q.downcast_ref::<QuantLinear<CudaFusion>>() {
            boxed(fusion(q))
        } else if let Some(q) = q.downcast_ref::<QuantLinear<Autodiff<CudaFusion>>>() {
            boxed(fusion(&q.valid()).map(Tensor::<Autodiff<CudaFusion>, 2>::from_inner))
        } else if let Some(q) = q.downcast_ref::<QuantLinear<Autodiff<CudaCube>>>() {
            boxed(
                dequantize_weight_cube(&q.valid()).map(Tensor::<Autodiff<CudaCube>, 2>::from_inner),
            )
        } else {
            None
        }
    }
}

/// [`QuantLinear::dequantize_weight`] as the CubeCL kernel when `B` is one of the CUDA backends
/// of this build (feature `cuda`: `burn::backend::Cuda` with fusion, `CubeBackend<CudaRuntime,
/// f32, i32, u8>`, and `Autodiff` of either; the weight is frozen, so under autodiff the result is
/// a constant); `None` for any other backend, or when the kernel path rejects the layer's tensors
/// (a dtype other than I32/F32), so that the caller falls back to the burn-ops path.
pub fn try_dequantize_weight<B: Backend>(q: &QuantLinear<B>) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "cuda-base")]
    {
        dispatch::any(q)
            .and_then(|b| b.downcast::<Tensor<B, 2>>().ok())
            .map(|b| *b)
    }
    #[cfg(not(feature = "cuda-base"))]
    {
        let _ = q;
        None
    }
}
