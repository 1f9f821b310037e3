//! [`QuantLinear::dequantize_weight`] as kernel launches on a `CubeBackend` (no fusion): the
//! layer's tensors are handed to the launchers in [`super::launch`].

use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::launch::{bad, nested_absmax_cube, nf4_dequantize_into_with, Nf4Kernel};
use crate::linear::{Nf4Scales, QuantLinear, NIBBLES_PER_WORD};
use crate::QuantError;

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
/// As [`super::nf4_dequantize_into`] and [`nested_absmax_cube`].
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
