//! NF4 (4-bit NormalFloat) blockwise quantization, bit-exact with bitsandbytes'
//! `quantize_4bit(A, blocksize, quant_type="nf4", compress_statistics)` / `dequantize_4bit` on f32
//! input (Dettmers et al. 2023, "QLoRA", §3).
//!
//! The algorithm, from `bitsandbytes/backends/default/ops.py` (`quantize_4bit`, which is what runs
//! on the CPU; bitsandbytes 0.50):
//!
//! 1. Flatten (row-major). Blocks of `blocksize` consecutive values; a short tail block has its own
//!    absmax.
//! 2. Full blocks: `absmax = max|x|`, `scaled = clamp(x · (1 / max(absmax, 1e-38)), −1, 1)`.
//!    Tail block: `absmax = max(max|x|, 1e-38)`, `scaled = clamp(x / absmax, −1, 1)` — a division,
//!    not a reciprocal multiply, and the stored tail absmax is the clamped one (`1e-38` for an
//!    all-zero tail, while an all-zero full block stores 0).
//! 3. Code = `torch.bucketize(scaled, midpoints)` with `right=False`: the number of f32 midpoints
//!    `(code[i] + code[i+1]) / 2` strictly below the value, so a value exactly on a midpoint takes the
//!    lower code. (The CUDA kernel's `dQuantizeNF4` decision tree uses the same 15 f32 thresholds
//!    with `x > t`, so it agrees, but it scales every block, the tail included, by `x · (1/absmax)`.)
//! 4. Pack two codes a byte, the first element in the high nibble. An odd count is padded with the
//!    scaled value 0.0, whose code is 7 (`0b0111`, the NF4 zero): the last byte's low nibble is 7.
//!
//! Dequantization: `code[q] · absmax[block]` (one f32 multiply).
//!
//! Double quantization (`compress_statistics=True`): `offset = mean(absmax)` (torch's f32 CPU mean,
//! [`torch_cpu_mean`]), then `absmax − offset` is quantized with the signed 8-bit dynamic map in
//! blocks of 256 ([`quantize_blockwise_8bit`]); reconstruction is `code2[q] · absmax2[block] +
//! offset` (two f32 roundings, as `dequantize_blockwise(...)` then `+= offset`).

use crate::blockwise8::{
    create_dynamic_map, dequantize_blockwise_8bit, quantize_blockwise_8bit, torch_cpu_mean,
    CODE8_LEN,
};
use crate::{check_shape, check_values, QuantError};

/// The 16 NF4 code values, index 0..15 (`get_4bit_type("nf4")` in `bitsandbytes/functional.py`;
/// quantiles of N(0, 1) normalised to [-1, 1], `create_normal_map(offset=0.9677083)`).
/// The digits are bitsandbytes' own (each is the exact f32 value printed as a double).
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// Block sizes `quantize_4bit` accepts (`bitsandbytes/functional.py`; 32 included since 0.45).
pub const BLOCKSIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Block size of the second-level (absmax) quantization in double quantization (fixed at 256 by
/// `quantize_4bit`).
pub const DOUBLE_QUANT_BLOCKSIZE: usize = 256;

/// The NF4 code of 0.0 (used for the padding nibble of an odd element count).
const NF4_ZERO_CODE: u8 = 7;

/// Checks a 4-bit block size against [`BLOCKSIZES`].
///
/// # Errors
/// [`QuantError::BadBlocksize`] naming the value.
pub fn check_blocksize(blocksize: usize) -> Result<(), QuantError> {
    if BLOCKSIZES.contains(&blocksize) {
        Ok(())
    } else {
        Err(QuantError::BadBlocksize {
            what: "nf4 quantize_4bit",
            blocksize,
            allowed: &BLOCKSIZES,
        })
    }
}

/// The 15 f32 midpoints `(code[i] + code[i+1]) / 2` that decide the nearest code.
fn nf4_midpoints() -> [f32; 15] {
    let mut m = [0f32; 15];
    for (i, v) in m.iter_mut().enumerate() {
        *v = (NF4_CODE[i] + NF4_CODE[i + 1]) / 2.0;
    }
    m
}

/// `torch.bucketize(v, mids, right=False)`: the number of midpoints strictly below `v`.
#[inline]
fn nf4_index(v: f32, mids: &[f32; 15]) -> u8 {
    mids.partition_point(|&m| m < v) as u8
}

/// Double-quantized block absmax (`QuantState.absmax` u8 codes + `state2` + `offset`).
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuant {
    /// 8-bit codes of `absmax − offset`, one per 4-bit block (`quant_state.absmax`, u8).
    pub codes: Vec<u8>,
    /// `mean(absmax)` (f32), added back after dequantization (`quant_state.offset`).
    pub offset: f32,
    /// Absmax of each block of 256 centred absmax values (`state2.absmax`, f32).
    pub absmax2: Vec<f32>,
    /// The 8-bit code table (`state2.code`; [`create_dynamic_map`] when made here).
    pub code2: [f32; CODE8_LEN],
    /// Second-level block size (`state2.blocksize`, 256).
    pub blocksize2: usize,
}

impl DoubleQuant {
    /// Quantizes f32 block absmax values as bitsandbytes' `compress_statistics=True` does.
    ///
    /// # Errors
    /// [`QuantError::Empty`], [`QuantError::NonFinite`].
    pub fn quantize(absmax: &[f32]) -> Result<Self, QuantError> {
        check_values(absmax, "nf4 absmax")?;
        let offset = torch_cpu_mean(absmax);
        let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let code2 = create_dynamic_map();
        let (codes, absmax2) = quantize_blockwise_8bit(&centred, &code2, DOUBLE_QUANT_BLOCKSIZE)?;
        Ok(Self {
            codes,
            offset,
            absmax2,
            code2,
            blocksize2: DOUBLE_QUANT_BLOCKSIZE,
        })
    }

    /// The reconstructed f32 absmax: `code2[q] · absmax2[block] + offset` (bitsandbytes'
    /// `dequantize_blockwise(absmax, state2) + offset`).
    ///
    /// # Errors
    /// [`QuantError::Shape`] when `absmax2` does not fit `codes` and `blocksize2`.
    pub fn dequantize(&self) -> Result<Vec<f32>, QuantError> {
        let a =
            dequantize_blockwise_8bit(&self.codes, &self.absmax2, &self.code2, self.blocksize2)?;
        Ok(a.into_iter().map(|v| v + self.offset).collect())
    }
}

/// The per-block scales of an [`Nf4Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    /// One f32 absmax per block (`compress_statistics=False`).
    F32(Vec<f32>),
    /// Double-quantized (`compress_statistics=True`), boxed (it carries the 1 KiB code table).
    Double(Box<DoubleQuant>),
}

/// An NF4-quantized tensor in bitsandbytes' layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    /// Packed codes, `ceil(numel / 2)` bytes, the first element in the high nibble (bnb's packed
    /// tensor, stored by bnb as u8 `[ceil(numel/2), 1]`).
    pub packed: Vec<u8>,
    /// Block scales, `ceil(numel / blocksize)` of them.
    pub absmax: Absmax,
    /// Shape of the original tensor (row-major; a PyTorch `nn.Linear` weight is `[out, in]`).
    pub shape: Vec<usize>,
    /// Values per block (one of [`BLOCKSIZES`]).
    pub blocksize: usize,
}

/// `quantize_4bit(values, blocksize, quant_type="nf4", compress_statistics=False)` of a 1-D tensor.
///
/// # Errors
/// [`QuantError::BadBlocksize`], [`QuantError::Empty`], [`QuantError::NonFinite`].
pub fn quantize_nf4(values: &[f32], blocksize: usize) -> Result<Nf4Tensor, QuantError> {
    quantize_nf4_shaped(values, &[values.len()], blocksize, false)
}

/// `quantize_4bit(values.reshape(shape), blocksize, quant_type="nf4", compress_statistics)`.
/// `values` is row-major; quantization runs over the flattened values.
///
/// # Errors
/// [`QuantError::BadBlocksize`]; [`QuantError::Shape`] when `shape` does not multiply out to
/// `values.len()`; [`QuantError::Empty`], [`QuantError::NonFinite`].
pub fn quantize_nf4_shaped(
    values: &[f32],
    shape: &[usize],
    blocksize: usize,
    compress_statistics: bool,
) -> Result<Nf4Tensor, QuantError> {
    check_blocksize(blocksize)?;
    check_values(values, "nf4 input")?;
    check_shape(shape, values.len(), "nf4 input")?;
    let mids = nf4_midpoints();
    let n = values.len();
    let full = n - n % blocksize;
    let tiny = 1e-38f64 as f32; // torch clamp(min=1e-38) on f32
    let mut absmax = Vec::with_capacity(n.div_ceil(blocksize));
    let mut codes: Vec<u8> = Vec::with_capacity(n + 1);
    for block in values[..full].chunks(blocksize) {
        let am = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        absmax.push(am);
        let inv = 1.0f32 / am.max(tiny);
        codes.extend(
            block
                .iter()
                .map(|&v| nf4_index((v * inv).clamp(-1.0, 1.0), &mids)),
        );
    }
    if full < n {
        let tail = &values[full..];
        let am = tail.iter().fold(0f32, |m, v| m.max(v.abs())).max(tiny);
        absmax.push(am);
        codes.extend(
            tail.iter()
                .map(|&v| nf4_index((v / am).clamp(-1.0, 1.0), &mids)),
        );
    }
    if n % 2 == 1 {
        codes.push(NF4_ZERO_CODE);
    }
    let packed = codes.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    let absmax = if compress_statistics {
        Absmax::Double(Box::new(DoubleQuant::quantize(&absmax)?))
    } else {
        Absmax::F32(absmax)
    };
    Ok(Nf4Tensor {
        packed,
        absmax,
        shape: shape.to_vec(),
        blocksize,
    })
}

/// `dequantize_4bit(packed, quant_state)`: `code[q] · absmax[block]`, row-major values of
/// `t.shape`.
///
/// # Errors
/// As [`Nf4Tensor::validate`].
pub fn dequantize_nf4(t: &Nf4Tensor) -> Result<Vec<f32>, QuantError> {
    t.validate()?;
    let absmax = t.absmax_f32()?;
    let n = t.numel();
    Ok(t.codes()
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, &q)| NF4_CODE[q as usize] * absmax[i / t.blocksize])
        .collect())
}

impl Nf4Tensor {
    /// Number of quantized values (product of `shape`).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of 4-bit blocks, `ceil(numel / blocksize)`.
    pub fn num_blocks(&self) -> usize {
        self.numel().div_ceil(self.blocksize)
    }

    /// Checks the parts against each other: block size, `packed.len() == ceil(numel/2)`, one
    /// absmax per block, and for double quantization `absmax2.len() == ceil(blocks/blocksize2)`.
    ///
    /// # Errors
    /// [`QuantError::BadBlocksize`], [`QuantError::Shape`] naming the part that does not fit.
    pub fn validate(&self) -> Result<(), QuantError> {
        check_blocksize(self.blocksize)?;
        let n = self.numel();
        if self.shape.is_empty() || n == 0 {
            return Err(QuantError::Empty(format!(
                "nf4 tensor of shape {:?}",
                self.shape
            )));
        }
        let blocks = self.num_blocks();
        let bad = |what: &str, expected: usize, got: usize| QuantError::Shape {
            what: what.to_string(),
            expected: vec![expected],
            got: vec![got],
        };
        if self.packed.len() != n.div_ceil(2) {
            return Err(bad("nf4 packed bytes", n.div_ceil(2), self.packed.len()));
        }
        match &self.absmax {
            Absmax::F32(a) if a.len() != blocks => return Err(bad("nf4 absmax", blocks, a.len())),
            Absmax::Double(d) => {
                if d.codes.len() != blocks {
                    return Err(bad(
                        "nf4 absmax codes (double quant)",
                        blocks,
                        d.codes.len(),
                    ));
                }
                if d.blocksize2 == 0 || d.absmax2.len() != blocks.div_ceil(d.blocksize2) {
                    return Err(bad(
                        "nf4 nested absmax (double quant)",
                        blocks.div_ceil(d.blocksize2.max(1)),
                        d.absmax2.len(),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The unpacked 4-bit codes, `2·packed.len()` of them (the last is the padding code 7 when
    /// `numel` is odd).
    pub fn codes(&self) -> Vec<u8> {
        self.packed
            .iter()
            .flat_map(|&b| [b >> 4, b & 0x0F])
            .collect()
    }

    /// The f32 absmax per block (reconstructed from the double quantization when compressed).
    ///
    /// # Errors
    /// [`QuantError::Shape`] for inconsistent double-quant parts.
    pub fn absmax_f32(&self) -> Result<Vec<f32>, QuantError> {
        match &self.absmax {
            Absmax::F32(a) => Ok(a.clone()),
            Absmax::Double(d) => d.dequantize(),
        }
    }

    /// Dequantizes (see [`dequantize_nf4`]).
    ///
    /// # Errors
    /// As [`Nf4Tensor::validate`].
    pub fn dequantize(&self) -> Result<Vec<f32>, QuantError> {
        dequantize_nf4(self)
    }

    /// Bytes of the quantized storage: packed codes, plus 4 bytes per f32 absmax, or 1 byte per
    /// block + 4 per second-level block + 4 for the offset when double-quantized. The 256-entry
    /// 8-bit code table (1 KiB, one shared constant; bitsandbytes serializes a copy per tensor as
    /// `nested_quant_map`) is not counted.
    pub fn storage_bytes(&self) -> usize {
        self.packed.len()
            + match &self.absmax {
                Absmax::F32(a) => 4 * a.len(),
                Absmax::Double(d) => d.codes.len() + 4 * d.absmax2.len() + 4,
            }
    }

    /// Bits per quantized value, `8 · storage_bytes() / numel`. For large tensors this tends to
    /// QLoRA's numbers: `4 + 32/blocksize` (4.5 at 64) without double quantization and
    /// `4 + 8/blocksize + 32/(256·blocksize)` (4.127 at 64) with it (QLoRA §3).
    pub fn bits_per_parameter(&self) -> f64 {
        8.0 * self.storage_bytes() as f64 / self.numel() as f64
    }

    /// Double-quantizes the absmax of a tensor quantized without it (`compress_statistics=True`
    /// after the fact: the same result as quantizing with it). A no-op when already compressed.
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] for non-finite absmax.
    pub fn compress_statistics(self) -> Result<Self, QuantError> {
        match self.absmax {
            Absmax::F32(a) => Ok(Self {
                absmax: Absmax::Double(Box::new(DoubleQuant::quantize(&a)?)),
                ..self
            }),
            Absmax::Double(_) => Ok(self),
        }
    }
}
