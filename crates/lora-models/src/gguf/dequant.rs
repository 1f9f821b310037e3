//! Dequantization of ggml's Q4_0, Q4_1 and Q8_0 blocks to f32 (and the threaded block loop
//! the plain float types share).
use super::types::{Q4_0_BLOCK_BYTES, Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use half::f16;

/// Converts `n` values held in blocks of `in_block` bytes → `out_block` f32s each, splitting the
/// work over up to 8 threads when `n` is large. Panics if `bytes` is shorter than needed or
/// `n` is not a multiple of `out_block` (callers check).
pub(super) fn par_blocks<F>(
    bytes: &[u8],
    n: usize,
    in_block: usize,
    out_block: usize,
    f: F,
) -> Vec<f32>
where
    F: Fn(&[u8], &mut [f32]) + Sync,
{
    assert!(
        n % out_block == 0,
        "{n} values is not a whole number of {out_block}-value blocks"
    );
    let blocks = n / out_block;
    assert!(
        bytes.len() >= blocks * in_block,
        "{} bytes hold fewer than {blocks} blocks of {in_block} bytes",
        bytes.len()
    );
    let bytes = &bytes[..blocks * in_block];
    let mut out = vec![0f32; n];
    let run = |src: &[u8], dst: &mut [f32]| {
        for (b, o) in src
            .chunks_exact(in_block)
            .zip(dst.chunks_exact_mut(out_block))
        {
            f(b, o);
        }
    };
    let threads = if n >= 1 << 16 {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(8)
    } else {
        1
    };
    if threads <= 1 {
        run(bytes, &mut out);
    } else {
        let per = blocks.div_ceil(threads);
        std::thread::scope(|s| {
            for (src, dst) in bytes
                .chunks(per * in_block)
                .zip(out.chunks_mut(per * out_block))
            {
                s.spawn(move || run(src, dst));
            }
        });
    }
    out
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` values (a multiple of 32) of ggml Q4_0 to f32.
///
/// Block of 18 bytes per 32 values: f16 `d` (little-endian), then 16 bytes `qs`. Value `j`
/// (0..16) is `((qs[j] & 0xF) - 8) * d`, value `j + 16` is `((qs[j] >> 4) - 8) * d`, computed in
/// f32 as ggml's `dequantize_row_q4_0` and gguf-py's `Q4_0.dequantize_blocks`.
///
/// # Panics
/// If `n` is not a multiple of 32 or `bytes` is shorter than `n / 32 * 18` (a caller's bug;
/// [`GgufFile::tensor_f32`](super::GgufFile::tensor_f32) checks both first).
pub fn dequantize_q4_0(bytes: &[u8], n: usize) -> Vec<f32> {
    par_blocks(bytes, n, Q4_0_BLOCK_BYTES, QK, |b, o| {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            o[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
            o[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    })
}

/// Dequantizes `n` values (a multiple of 32) of ggml Q4_1 to f32.
///
/// Block of 20 bytes per 32 values: f16 scale `d`, f16 minimum `m` (little-endian), then 16
/// bytes `qs`. Value `j` (0..16) is `(qs[j] & 0xF) * d + m`, value `j + 16` is
/// `(qs[j] >> 4) * d + m`, in f32 with the product rounded before the sum, as gguf-py's
/// `Q4_1.dequantize_blocks` and ggml's `dequantize_row_q4_1`.
///
/// # Panics
/// If `n` is not a multiple of 32 or `bytes` is shorter than `n / 32 * 20` (a caller's bug;
/// [`GgufFile::tensor_f32`](super::GgufFile::tensor_f32) checks both first).
pub fn dequantize_q4_1(bytes: &[u8], n: usize) -> Vec<f32> {
    par_blocks(bytes, n, Q4_1_BLOCK_BYTES, QK, |b, o| {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            o[j] = (qs[j] & 0xF) as f32 * d + m;
            o[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    })
}

/// Dequantizes `n` values (a multiple of 32) of ggml Q8_0 to f32.
///
/// Block of 34 bytes per 32 values: f16 scale `d` (little-endian), then 32 signed bytes `q`.
/// Value `j` is `q[j] * d` in f32, as ggml's `dequantize_row_q8_0` and gguf-py's
/// `Q8_0.dequantize_blocks`.
///
/// # Panics
/// If `n` is not a multiple of 32 or `bytes` is shorter than `n / 32 * 34` (a caller's bug;
/// [`GgufFile::tensor_f32`](super::GgufFile::tensor_f32) checks both first).
pub fn dequantize_q8_0(bytes: &[u8], n: usize) -> Vec<f32> {
    par_blocks(bytes, n, Q8_0_BLOCK_BYTES, QK, |b, o| {
        let d = f16_at(b, 0);
        for (o, &q) in o.iter_mut().zip(&b[2..34]) {
            *o = (q as i8) as f32 * d;
        }
    })
}
