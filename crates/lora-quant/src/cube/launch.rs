//! Host-side launchers of the kernels on raw CubeCL tensors: every dtype, layout and length is
//! checked before a launch (a bad input is a [`QuantError`], never an out-of-bounds access).

use burn::tensor::{DType, Shape};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;
use cubecl::{calculate_cube_count_elemwise, CubeCount, CubeDim};

use super::kernels::{
    copy_kernel, nested_absmax_kernel, nf4_dequant_half_kernel, nf4_dequant_kernel, CUBE_THREADS,
};
use crate::linear::NIBBLES_PER_WORD;
use crate::nf4::check_blocksize;
use crate::QuantError;

pub(super) fn bad(what: &str, expected: Vec<usize>, got: Vec<usize>) -> QuantError {
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

pub(super) fn elemwise_launch<R: CubeRuntime>(
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
    /// [`fn@nf4_dequant_kernel`]: one thread per word, two 16-byte stores (a warp's stores are
    /// strided by 32 bytes, so slower than the half-word variant on large weights).
    WordPerThread,
    /// [`fn@nf4_dequant_half_kernel`]: one thread per half word, one 16-byte store, so a warp's
    /// stores are contiguous (the default; docs/benchmarks.md has the bandwidths). All variants
    /// are bit-exact.
    HalfWordPerThread,
    /// [`fn@nf4_dequant_half_kernel`] launched unchecked: no bounds check on each array access
    /// (the host has checked `out` = 8 per word, `absmax` ≥ one per block and `code` = 16, and
    /// the kernel keeps its `h < out.len()` guard, so every index is in range). Faster on large
    /// weights but slower than the checked launch on small, launch-bound ones, so not the
    /// default.
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
