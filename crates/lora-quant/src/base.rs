//! The quantized base of a LoRA layer: [`QuantBase`] (NF4 or int8) and the scheme [`QuantKind`].

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::int8::quantize_int8_vectorwise;
use crate::linear::{read_f32, Int8Linear, QuantLinear};
use crate::nf4::{check_blocksize, quantize_nf4_shaped};
use crate::stats::{error_stats, QuantStats};
use crate::QuantError;

/// A quantization scheme for a linear base weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantKind {
    /// NF4 (QLoRA §3; bitsandbytes `quantize_4bit(quant_type="nf4")`) with `blocksize` values per
    /// absmax (one of [`crate::BLOCKSIZES`]; QLoRA and PEFT use 64) and, when
    /// `compress_statistics`, double quantization of the absmax (bnb
    /// `bnb_4bit_use_double_quant=True`).
    Nf4 {
        /// Values per block.
        blocksize: usize,
        /// Double quantization of the block absmax.
        compress_statistics: bool,
    },
    /// LLM.int8 vector-wise (absmax per output row; bitsandbytes `int8_vectorwise_quant`).
    Int8,
}

impl QuantKind {
    /// NF4 at block size 64 without double quantization (`"nf4"`).
    pub const NF4: Self = Self::Nf4 {
        blocksize: 64,
        compress_statistics: false,
    };
    /// NF4 at block size 64 with double quantization (`"nf4-dq"`, QLoRA's setting).
    pub const NF4_DQ: Self = Self::Nf4 {
        blocksize: 64,
        compress_statistics: true,
    };

    /// The same scheme with another NF4 block size (int8 is unchanged).
    pub fn with_blocksize(self, blocksize: usize) -> Self {
        match self {
            Self::Nf4 {
                compress_statistics,
                ..
            } => Self::Nf4 {
                blocksize,
                compress_statistics,
            },
            Self::Int8 => Self::Int8,
        }
    }

    /// Checks the block size.
    ///
    /// # Errors
    /// [`QuantError::BadBlocksize`].
    pub fn validate(&self) -> Result<(), QuantError> {
        match self {
            Self::Nf4 { blocksize, .. } => check_blocksize(*blocksize),
            Self::Int8 => Ok(()),
        }
    }

    /// The short name: `"nf4"`, `"nf4-dq"` or `"int8"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Nf4 {
                compress_statistics: false,
                ..
            } => "nf4",
            Self::Nf4 {
                compress_statistics: true,
                ..
            } => "nf4-dq",
            Self::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for QuantKind {
    /// `nf4 (blocksize 64)`, `nf4-dq (blocksize 64)` or `int8`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nf4 { blocksize, .. } => write!(f, "{} (blocksize {blocksize})", self.name()),
            Self::Int8 => f.write_str("int8"),
        }
    }
}

impl std::str::FromStr for QuantKind {
    type Err = QuantError;

    /// `"nf4"` → [`QuantKind::NF4`], `"nf4-dq"` → [`QuantKind::NF4_DQ`] (block size 64; change it
    /// with [`QuantKind::with_blocksize`]), `"int8"` → [`QuantKind::Int8`]. Case-insensitive.
    ///
    /// # Errors
    /// [`QuantError::UnknownKind`] naming the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nf4" => Ok(Self::NF4),
            "nf4-dq" => Ok(Self::NF4_DQ),
            "int8" => Ok(Self::Int8),
            _ => Err(QuantError::UnknownKind(s.to_string())),
        }
    }
}

/// A frozen quantized linear base: NF4 ([`QuantLinear`]) or int8 ([`Int8Linear`]). Both hold the
/// PyTorch `[d_out, d_in]` weight's codes packed on the device and dequantize in `forward`.
#[derive(Module, Debug)]
pub enum QuantBase<B: Backend> {
    /// NF4 (optionally double-quantized statistics).
    Nf4(QuantLinear<B>),
    /// LLM.int8 vector-wise.
    Int8(Int8Linear<B>),
}

impl<B: Backend> QuantBase<B> {
    /// Quantizes a dense weight `[d_in, d_out]` (this workspace's layout; the PyTorch
    /// `[d_out, d_in]` weight is what gets quantized, as bitsandbytes does) and returns the
    /// layer with the reconstruction error of `weight` (computed on the host from the same codes
    /// the device holds) and the device storage in bytes against f32.
    ///
    /// # Errors
    /// [`QuantError::BadBlocksize`], [`QuantError::NonFinite`], [`QuantError::Empty`];
    /// [`QuantError::Format`] if the tensor data cannot be read.
    pub fn quantize(
        weight: Tensor<B, 2>,
        kind: &QuantKind,
    ) -> Result<(Self, QuantStats), QuantError> {
        kind.validate()?;
        let [d_in, d_out] = weight.dims();
        let device = weight.device();
        let values = read_f32(weight.transpose(), "weight")?;
        let (base, deq) = match *kind {
            QuantKind::Nf4 {
                blocksize,
                compress_statistics,
            } => {
                let t =
                    quantize_nf4_shaped(&values, &[d_out, d_in], blocksize, compress_statistics)?;
                let deq = t.dequantize()?;
                (Self::Nf4(QuantLinear::from_nf4(&t, &device)?), deq)
            }
            QuantKind::Int8 => {
                let t = quantize_int8_vectorwise(&values, d_out, d_in)?;
                let deq = t.dequantize();
                (Self::Int8(Int8Linear::from_int8(&t, &device)?), deq)
            }
        };
        let stats = error_stats(&values, &deq, base.storage_bytes());
        Ok((base, stats))
    }

    /// The scheme of this base (what [`QuantBase::quantize`] needs to requantize it alike).
    pub fn kind(&self) -> QuantKind {
        match self {
            Self::Nf4(q) => QuantKind::Nf4 {
                blocksize: q.blocksize,
                compress_statistics: q.compress_statistics(),
            },
            Self::Int8(_) => QuantKind::Int8,
        }
    }

    /// `(d_in, d_out)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::Nf4(q) => q.dims(),
            Self::Int8(q) => q.dims(),
        }
    }

    /// Bytes held on the device (codes and scales; see [`QuantLinear::storage_bytes`],
    /// [`Int8Linear::storage_bytes`]).
    pub fn storage_bytes(&self) -> usize {
        match self {
            Self::Nf4(q) => q.storage_bytes(),
            Self::Int8(q) => q.storage_bytes(),
        }
    }

    /// The number of weight values the packed codes hold, rounded up to whole storage words
    /// ([`crate::NIBBLES_PER_WORD`] NF4 or [`crate::BYTES_PER_WORD`] int8 codes a word): what
    /// PEFT's `print_trainable_parameters` counts for a 4-bit `Params4bit` (twice its bytes).
    pub fn num_values(&self) -> usize {
        match self {
            Self::Nf4(q) => q.words.shape().num_elements() * crate::NIBBLES_PER_WORD,
            Self::Int8(q) => q.words.shape().num_elements() * crate::BYTES_PER_WORD,
        }
    }

    /// The dequantized weight `[d_in, d_out]` (f32; bit-equal to bitsandbytes' dequantization).
    pub fn dequantize_weight_in_out(&self) -> Tensor<B, 2> {
        match self {
            Self::Nf4(q) => q.weight_in_out(),
            Self::Int8(q) => q.weight_in_out(),
        }
    }

    /// The dequantized weight `[d_in, d_out]` in `dtype` (mixed precision): dequantized in f32
    /// as [`QuantBase::dequantize_weight_in_out`], then cast (round to nearest even) when
    /// `dtype` differs — the values bitsandbytes' `dequantize_4bit(…, dtype=torch.bfloat16)`
    /// gives, since its kernel also forms `code[q]·absmax` in f32 and rounds once on the store.
    /// First version: the transient f32 copy is built, then cast.
    pub fn dequantize_weight_in_out_as(&self, dtype: FloatDType) -> Tensor<B, 2> {
        let w = self.dequantize_weight_in_out();
        if w.dtype() == DType::from(dtype) {
            w
        } else {
            w.cast(dtype)
        }
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x · dequant(W)` (no bias).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::module::linear(x, self.dequantize_weight_in_out(), None)
    }
}
