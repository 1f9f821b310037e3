//! [`Int8Linear`]: the frozen LLM.int8 base, codes packed four a word, one absmax per row.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::packing::{fit, frozen_f32, read_bytes, read_f32, unpack, words_param};
use crate::int8::{quantize_int8_vectorwise, Int8Tensor, INV_127};
use crate::QuantError;

/// `byte as i8 as f32` for every byte value: the int8 code table used to decode packed codes.
fn int8_table() -> Vec<f32> {
    (0..=255u8).map(|b| b as i8 as f32).collect()
}

/// A frozen linear map `y = x·W` whose weight is LLM.int8 vector-wise quantized (Dettmers et al.
/// 2022, "LLM.int8()", §3.2; bitsandbytes `int8_vectorwise_quant` with threshold 0, i.e. no
/// outlier decomposition): one f32 absmax (`SCB`) per **output** row of the PyTorch weight
/// `[d_out, d_in]`, codes `q = round_half_even(w · 127/absmax)` in `[-127, 127]`
/// ([`quantize_int8_vectorwise`]). Dequantized on the fly in `forward` as
/// `q · absmax · (1/127)` (bitsandbytes `int8_vectorwise_dequant`, bit for bit) and multiplied in
/// f32 (bitsandbytes' CPU/fallback path; the CUDA int8 matmul kernel is not reproduced).
#[derive(Module, Debug)]
pub struct Int8Linear<B: Backend> {
    /// Codes `[ceil(d_out·d_in / 4)]`, `Int` of dtype I32, four two's-complement bytes a word
    /// (row-major over `[d_out, d_in]`, first code in the top byte).
    pub words: Param<Tensor<B, 1, Int>>,
    /// Row absmax `[d_out]`, f32, frozen (bitsandbytes `SCB`).
    pub absmax: Param<Tensor<B, 1>>,
    /// Decoding table `[256]`: `byte as i8 as f32` (a constant).
    pub table: Tensor<B, 1>,
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
}

impl<B: Backend> Int8Linear<B> {
    /// Quantizes a dense weight `[d_in, d_out]` (this workspace's layout) as bitsandbytes
    /// quantizes the equivalent `nn.Linear` weight `[d_out, d_in]` (absmax per output row).
    ///
    /// # Errors
    /// [`QuantError::NonFinite`], [`QuantError::Empty`], [`QuantError::Shape`];
    /// [`QuantError::Format`] if the tensor data cannot be read.
    pub fn from_weight(weight: Tensor<B, 2>) -> Result<Self, QuantError> {
        let [d_in, d_out] = weight.dims();
        let device = weight.device();
        let values = read_f32(weight.transpose(), "weight")?;
        let t = quantize_int8_vectorwise(&values, d_out, d_in)?;
        Self::from_int8(&t, &device)
    }

    /// Uploads an int8 tensor `[d_out, d_in]` with one scale per row (vector-wise) or one for the
    /// whole tensor (per-tensor; repeated per row, which dequantizes identically).
    ///
    /// # Errors
    /// [`QuantError::Shape`] when the codes or scales do not fit the shape.
    pub fn from_int8(t: &Int8Tensor, device: &B::Device) -> Result<Self, QuantError> {
        let [d_out, d_in] = t.shape;
        if d_out == 0 || d_in == 0 || t.q.len() != d_out * d_in {
            return Err(QuantError::Shape {
                what: "Int8Linear codes (shape [d_out, d_in] vs number of codes)".into(),
                expected: vec![t.q.len()],
                got: vec![d_out, d_in],
            });
        }
        let absmax = match t.scale.len() {
            n if n == d_out => t.scale.clone(),
            1 => vec![t.scale[0]; d_out],
            n => {
                return Err(QuantError::Shape {
                    what: "Int8Linear scales (one per row or one per tensor)".into(),
                    expected: vec![d_out],
                    got: vec![n],
                })
            }
        };
        let bytes: Vec<u8> = t.q.iter().map(|&q| q as u8).collect();
        Ok(Self {
            words: words_param(&bytes, device),
            absmax: frozen_f32(absmax, device),
            table: Tensor::from_data(TensorData::new(int8_table(), [256]), device),
            d_in,
            d_out,
        })
    }

    /// `(d_in, d_out)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_in, self.d_out)
    }

    /// Bytes held on the device: the code words (4 bytes per 4 codes) + 4 per row absmax (the
    /// 1 KiB decoding table not counted).
    pub fn storage_bytes(&self) -> usize {
        let [n_words] = self.words.dims();
        n_words * self.words.val().dtype().size() + 4 * self.d_out
    }

    /// Codes and row absmax read back from the device, `[d_out, d_in]`.
    ///
    /// # Errors
    /// [`QuantError::Format`] if the data cannot be read.
    pub fn to_int8(&self) -> Result<Int8Tensor, QuantError> {
        let n = self.d_in * self.d_out;
        Ok(Int8Tensor {
            q: read_bytes(&self.words, n, "int8 words")?
                .into_iter()
                .map(|b| b as i8)
                .collect(),
            scale: read_f32(self.absmax.val(), "int8 absmax")?,
            shape: [self.d_out, self.d_in],
        })
    }

    /// The dequantized weight in PyTorch layout `[d_out, d_in]`: `q · absmax[row] · (1/127)`
    /// (f32, in that order), equal bit for bit to [`Int8Tensor::dequantize`].
    pub fn dequantize_weight(&self) -> Tensor<B, 2> {
        let idx = unpack(self.words.val(), 8);
        let q = fit(self.table.clone().select(0, idx), self.d_in * self.d_out)
            .reshape([self.d_out, self.d_in]);
        (q * self.absmax.val().reshape([self.d_out, 1])).mul_scalar(INV_127)
    }

    /// The dequantized weight in this workspace's layout `[d_in, d_out]`.
    pub fn weight_in_out(&self) -> Tensor<B, 2> {
        self.dequantize_weight().transpose()
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x · W` with the weight dequantized for this call.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::module::linear(x, self.weight_in_out(), None)
    }
}
