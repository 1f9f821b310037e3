//! [`QuantLinear`]: the frozen NF4 base, codes packed eight a word, block scales in f32 or
//! double-quantized ([`NestedAbsmax`]).

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use super::packing::{fit, frozen_f32, read_bytes, read_f32, unpack, words_param};
use crate::blockwise8::CODE8_LEN;
use crate::nf4::{quantize_nf4_shaped, Absmax, DoubleQuant, Nf4Tensor, NF4_CODE};
use crate::QuantError;

/// Double-quantized NF4 block statistics on the device (QLoRA §3 "Double Quantization";
/// bitsandbytes `compress_statistics=True`): 8-bit codes of `absmax − offset` in blocks of
/// `blocksize2` (256), their f32 second-level absmax and the f32 offset.
#[derive(Module, Debug)]
pub struct NestedAbsmax<B: Backend> {
    /// 8-bit codes `[ceil(n_blocks / 4)]`, `Int` of dtype I32, four codes a word.
    pub words: Param<Tensor<B, 1, Int>>,
    /// Second-level absmax `[ceil(n_blocks / blocksize2)]`, f32, frozen (`state2.absmax`).
    pub absmax2: Param<Tensor<B, 1>>,
    /// The signed 8-bit dynamic code table `[256]` (`state2.code`; a constant).
    pub code2: Tensor<B, 1>,
    /// `mean(absmax)` added back after dequantization (`quant_state.offset`).
    pub offset: f32,
    /// Number of first-level blocks (codes).
    pub n_blocks: usize,
    /// Second-level block size (256).
    pub blocksize2: usize,
}

impl<B: Backend> NestedAbsmax<B> {
    fn from_double(d: &DoubleQuant, device: &B::Device) -> Self {
        Self {
            words: words_param(&d.codes, device),
            absmax2: frozen_f32(d.absmax2.clone(), device),
            code2: Tensor::from_data(TensorData::new(d.code2.to_vec(), [CODE8_LEN]), device),
            offset: d.offset,
            n_blocks: d.codes.len(),
            blocksize2: d.blocksize2,
        }
    }

    /// The reconstructed f32 absmax `[n_blocks]`: `code2[q] · absmax2[block] + offset`, two f32
    /// roundings in bitsandbytes' order (equal bit for bit to [`DoubleQuant::dequantize`]).
    pub fn absmax(&self) -> Tensor<B, 1> {
        let q = unpack(self.words.val(), 8);
        let [n2] = self.absmax2.dims();
        let padded = n2 * self.blocksize2;
        let v = fit(self.code2.clone().select(0, q), padded);
        let a = v.reshape([n2, self.blocksize2]) * self.absmax2.val().reshape([n2, 1]);
        a.reshape([padded])
            .narrow(0, 0, self.n_blocks)
            .add_scalar(self.offset)
    }

    fn storage_bytes(&self) -> usize {
        let [w] = self.words.dims();
        let [n2] = self.absmax2.dims();
        w * self.words.val().dtype().size() + 4 * n2 + 4
    }

    fn to_double(&self) -> Result<DoubleQuant, QuantError> {
        let code2 = read_f32(self.code2.clone(), "nested code2")?;
        let mut c = [0f32; CODE8_LEN];
        if code2.len() != CODE8_LEN {
            return Err(QuantError::Shape {
                what: "nested code2".into(),
                expected: vec![CODE8_LEN],
                got: vec![code2.len()],
            });
        }
        c.copy_from_slice(&code2);
        Ok(DoubleQuant {
            codes: read_bytes(&self.words, self.n_blocks, "nested absmax codes")?,
            offset: self.offset,
            absmax2: read_f32(self.absmax2.val(), "nested absmax2")?,
            code2: c,
            blocksize2: self.blocksize2,
        })
    }
}

/// The block scales of a [`QuantLinear`] on the device.
#[derive(Module, Debug)]
pub enum Nf4Scales<B: Backend> {
    /// One f32 absmax per block `[n_blocks]`, frozen (`compress_statistics=False`).
    F32(Param<Tensor<B, 1>>),
    /// Double-quantized absmax (`compress_statistics=True`), reconstructed in `forward`.
    Double(NestedAbsmax<B>),
}

/// A frozen linear map `y = x·W` whose weight is NF4-quantized (bitsandbytes `Linear4bit`
/// semantics), dequantized on the fly in [`QuantLinear::forward`].
///
/// The quantized matrix is the PyTorch `nn.Linear` weight `[d_out, d_in]` (what bitsandbytes
/// quantizes, so blocks run along input features and the codes equal bnb's for the same layer);
/// the forward contract is this workspace's `[d_in, d_out]` one: `forward(x) = x · Wᵀ_torch`.
#[derive(Module, Debug)]
pub struct QuantLinear<B: Backend> {
    /// Packed codes, `[ceil(d_out·d_in / 8)]`, `Int` of dtype I32, eight codes a word.
    pub words: Param<Tensor<B, 1, Int>>,
    /// Block absmax: f32, or double-quantized (kept compressed on the device and reconstructed
    /// bit-equal to bitsandbytes in every dequantization).
    pub scales: Nf4Scales<B>,
    /// The NF4 code table `[16]` (a constant, not a parameter).
    pub code: Tensor<B, 1>,
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
    /// Values per block.
    pub blocksize: usize,
}

impl<B: Backend> QuantLinear<B> {
    /// Quantizes a dense weight `[d_in, d_out]` (this workspace's layout) as bitsandbytes quantizes
    /// the equivalent `nn.Linear` weight `[d_out, d_in]`
    /// (`quantize_4bit(W, blocksize, "nf4", compress_statistics)`).
    ///
    /// # Errors
    /// [`QuantError::BadBlocksize`], [`QuantError::NonFinite`], [`QuantError::Empty`];
    /// [`QuantError::Format`] if the tensor data cannot be read.
    pub fn from_weight(
        weight: Tensor<B, 2>,
        blocksize: usize,
        compress_statistics: bool,
    ) -> Result<Self, QuantError> {
        let [d_in, d_out] = weight.dims();
        let device = weight.device();
        let values = read_f32(weight.transpose(), "weight")?;
        let t = quantize_nf4_shaped(&values, &[d_out, d_in], blocksize, compress_statistics)?;
        Self::from_nf4(&t, &device)
    }

    /// Uploads an NF4 tensor of shape `[d_out, d_in]` (for example one read with
    /// [`crate::bnb::from_state_dict`]); a double-quantized absmax stays compressed.
    ///
    /// # Errors
    /// [`QuantError::Shape`] when the tensor is not 2-D; as [`Nf4Tensor::validate`].
    pub fn from_nf4(t: &Nf4Tensor, device: &B::Device) -> Result<Self, QuantError> {
        t.validate()?;
        let [d_out, d_in] = match t.shape.as_slice() {
            &[o, i] => [o, i],
            s => {
                return Err(QuantError::Shape {
                    what: "QuantLinear weight (expected a 2-D [d_out, d_in] tensor)".into(),
                    expected: vec![0, 0],
                    got: s.to_vec(),
                })
            }
        };
        let scales = match &t.absmax {
            Absmax::F32(a) => Nf4Scales::F32(frozen_f32(a.clone(), device)),
            Absmax::Double(d) => Nf4Scales::Double(NestedAbsmax::from_double(d, device)),
        };
        Ok(Self {
            words: words_param(&t.packed, device),
            scales,
            code: Tensor::from_data(TensorData::new(NF4_CODE.to_vec(), [16]), device),
            d_in,
            d_out,
            blocksize: t.blocksize,
        })
    }

    /// `(d_in, d_out)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_in, self.d_out)
    }

    /// Whether the block absmax is double-quantized.
    pub fn compress_statistics(&self) -> bool {
        matches!(self.scales, Nf4Scales::Double(_))
    }

    /// Number of 4-bit blocks, `ceil(d_in·d_out / blocksize)`.
    pub fn num_blocks(&self) -> usize {
        (self.d_in * self.d_out).div_ceil(self.blocksize)
    }

    /// The dtype the backend holds the packed words in (I32 on NdArray and the CubeCL backends).
    pub fn storage_dtype(&self) -> DType {
        self.words.val().dtype()
    }

    /// Bytes held on the device: the code words (4 bytes per 8 codes, or the backend's element
    /// size), plus 4 per f32 absmax, or (double quantization) 1 per absmax code (in words of 4),
    /// plus 4 per second-level absmax, plus 4 for the offset. The code tables (64 B and 1 KiB
    /// constants) are not counted.
    pub fn storage_bytes(&self) -> usize {
        let [n_words] = self.words.dims();
        n_words * self.storage_dtype().size()
            + match &self.scales {
                Nf4Scales::F32(a) => 4 * a.dims()[0],
                Nf4Scales::Double(d) => d.storage_bytes(),
            }
    }

    /// The packed bytes read back from the device (bnb layout, `ceil(n/2)` bytes).
    ///
    /// # Errors
    /// [`QuantError::Format`] if the data cannot be read.
    pub fn packed_bytes(&self) -> Result<Vec<u8>, QuantError> {
        read_bytes(&self.words, (self.d_in * self.d_out).div_ceil(2), "words")
    }

    /// The whole quantized tensor read back from the device, `[d_out, d_in]`, bnb layout
    /// (double-quantized statistics stay compressed).
    ///
    /// # Errors
    /// [`QuantError::Format`] if the data cannot be read; [`QuantError::Shape`] for a corrupt
    /// code table.
    pub fn to_nf4(&self) -> Result<Nf4Tensor, QuantError> {
        let absmax = match &self.scales {
            Nf4Scales::F32(a) => Absmax::F32(read_f32(a.val(), "absmax")?),
            Nf4Scales::Double(d) => Absmax::Double(Box::new(d.to_double()?)),
        };
        Ok(Nf4Tensor {
            packed: self.packed_bytes()?,
            absmax,
            shape: vec![self.d_out, self.d_in],
            blocksize: self.blocksize,
        })
    }

    /// The f32 block absmax `[num_blocks]` (reconstructed from the double quantization when
    /// compressed, bit-equal to bitsandbytes).
    pub fn absmax(&self) -> Tensor<B, 1> {
        match &self.scales {
            Nf4Scales::F32(a) => a.val(),
            Nf4Scales::Double(d) => d.absmax(),
        }
    }

    /// The dequantized weight in PyTorch layout `[d_out, d_in]`: `code[q] · absmax[block]`, equal
    /// bit for bit to bitsandbytes' `dequantize_4bit`.
    ///
    /// With the `cuda` feature, on the CUDA CubeCL backends (`burn::backend::Cuda`, its
    /// non-fusion `CubeBackend`, and their `Autodiff` wrappers, f32/i32) this is one CubeCL kernel
    /// (their `cube::Nf4DequantBackend` implementation, reached through
    /// `cube::try_dequantize_weight`); everywhere else, and if that path rejects its inputs, the
    /// burn-ops path [`QuantLinear::dequantize_weight_ops`]. Both are bit-exact.
    pub fn dequantize_weight(&self) -> Tensor<B, 2> {
        #[cfg(feature = "cubecl")]
        if let Some(w) = crate::cube::try_dequantize_weight(self) {
            return w;
        }
        self.dequantize_weight_ops()
    }

    /// [`QuantLinear::dequantize_weight`] with burn tensor ops only (any backend): unpack the
    /// nibbles with shifts and masks, `select` into the code table, multiply by the block absmax.
    pub fn dequantize_weight_ops(&self) -> Tensor<B, 2> {
        let idx = unpack(self.words.val(), 4);
        let n = self.d_in * self.d_out;
        let n_blocks = self.num_blocks();
        let padded = n_blocks * self.blocksize;
        let values = fit(self.code.clone().select(0, idx), padded);
        let w = values.reshape([n_blocks, self.blocksize]) * self.absmax().reshape([n_blocks, 1]);
        w.reshape([padded])
            .narrow(0, 0, n)
            .reshape([self.d_out, self.d_in])
    }

    /// The dequantized weight in this workspace's layout `[d_in, d_out]`.
    pub fn weight_in_out(&self) -> Tensor<B, 2> {
        self.dequantize_weight().transpose()
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x · W` with the weight dequantized for this call
    /// (a transient f32 `[d_out, d_in]` copy, as bitsandbytes' non-fused path does).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::module::linear(x, self.weight_in_out(), None)
    }
}
