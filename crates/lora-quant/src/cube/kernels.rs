//! The CubeCL kernels (`#[cube]` functions) and their definitions expanded without a device
//! (for printing the compiled source).

use cubecl::prelude::*;
use cubecl::CubeDim;

use crate::linear::NIBBLES_PER_WORD;

/// Threads per cube (block) of the element-wise kernels.
pub(super) const CUBE_THREADS: u32 = 256;

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

/// Variant of [`fn@nf4_dequant_kernel`] with one thread per half word: four codes → one
/// `Vector<f32, 4>`, so a warp's stores are one contiguous 512-byte run (the word is read by two
/// neighbouring threads, from the same cache line). Also launched without CubeCL's per-access
/// bounds checks ([`super::Nf4Kernel::HalfWordUnchecked`]) after the host has checked every length.
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
