//! NF4 dequantization on the GPU as one CubeCL kernel (feature `cubecl`), for the CubeCL backends
//! of burn 0.21 (`CubeBackend<R, F, I, BT>`: CUDA, wgpu, ROCm).
//!
//! [`crate::QuantLinear::dequantize_weight`] builds the dense weight with about ten burn tensor ops
//! (eight shifts and masks, a stack, a `select` into the code table, a broadcast multiply, and for
//! double quantization the same again for the absmax), each a pass over memory. Here one thread
//! reads one packed I32 word (eight 4-bit codes, the first code in the most significant nibble,
//! see [`crate::QuantLinear`]), looks the eight codes up in the 16-entry NF4 table, multiplies by
//! its block's absmax and writes the eight f32 values as two 16-byte vector stores: the minimum
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
//! [`crate::QuantLinear::dequantize_weight`].
//!
//! Files: `kernels` (the `#[cube]` kernels), `launch` (checked launches on CubeCL tensors),
//! `weight` (a [`crate::QuantLinear`] weight on a `CubeBackend`), `backend` (the [`Nf4DequantBackend`]
//! extension trait that picks the kernel per backend), `cuda` (the fusion backend and the
//! dispatch of [`crate::QuantLinear::dequantize_weight`], feature `cuda-base`).

mod backend;
#[cfg(feature = "cuda-base")]
mod cuda;
mod kernels;
mod launch;
mod weight;

pub use backend::{try_dequantize_weight, Nf4DequantBackend};
pub use kernels::{
    copy_kernel, kernel_definitions, nested_absmax_kernel, nf4_dequant_half_kernel,
    nf4_dequant_kernel,
};
pub use launch::{
    copy_f32_cube, nested_absmax_cube, nf4_dequantize_into, nf4_dequantize_into_with, Nf4Kernel,
};
pub use weight::{
    dequantize_weight_cube, dequantize_weight_cube_into, dequantize_weight_cube_into_with,
    dequantize_weight_cube_with, Cube,
};
