//! A frozen NF4 linear base for QLoRA, with the codes kept packed on the device.
//!
//! Storage choice (burn 0.21): the codes are held as an `Int` tensor of dtype **I32**, eight 4-bit
//! codes per word, the first code in the top nibble (word `j` = bytes `4j..4j+4` of bitsandbytes'
//! packed tensor, big-endian). I32 is an integer dtype every burn backend stores natively
//! (NdArray keeps `NdArrayTensor::I32` although its default `IntElem` is i64; the CubeCL
//! backends, CUDA and wgpu, hold i32 in 4 bytes), so the device holds exactly half a byte per code.
//! U8 int tensors exist in burn 0.21 (NdArray `U8`, CubeCL `int_from_data` accepts `DType::U8`)
//! but the unpacking ops (shifts, masks, `select`) are not exercised on u8 across backends (WGSL
//! has no 8-bit integers), so I32 words are used everywhere. The unpacking uses
//! `bitwise_right_shift_scalar` + `bitwise_and_scalar(15)`, which is correct for the arithmetic
//! shift of a negative word because of the mask.

use burn::module::{Module, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData};
use lora_core::{LoraAdapter, LoraLayerConfig, LoraLinear};

use crate::nf4::{quantize_nf4_shaped, Nf4Tensor, NF4_CODE};
use crate::QuantError;

/// 4-bit codes per I32 storage word.
pub const NIBBLES_PER_WORD: usize = 8;

/// Packs bnb-layout bytes (two codes a byte, high nibble first) into big-endian i32 words, eight
/// codes a word; missing trailing bytes are 0 (their codes are never read).
fn pack_words(packed: &[u8]) -> Vec<i32> {
    packed
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_be_bytes(b) as i32
        })
        .collect()
}

fn read_f32<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    what: &str,
) -> Result<Vec<f32>, QuantError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| QuantError::Format {
            key: what.to_string(),
            message: format!("cannot read tensor data: {e:?}"),
        })
}

/// A frozen linear map `y = x·W` whose weight is NF4-quantized (bitsandbytes `Linear4bit`
/// semantics), dequantized on the fly in [`QuantLinear::forward`].
///
/// The quantized matrix is the PyTorch `nn.Linear` weight `[d_out, d_in]` (what bitsandbytes
/// quantizes, so blocks run along input features and the codes equal bnb's for the same layer);
/// the forward contract is this workspace's `[d_in, d_out]` one: `forward(x) = x · Wᵀ_torch`.
/// Nothing here is trainable: the codes are an `Int` tensor (no gradient can exist for them) and
/// the absmax a frozen f32 parameter (`require_grad = false`).
#[derive(Module, Debug)]
pub struct QuantLinear<B: Backend> {
    /// Packed codes, `[ceil(d_out·d_in / 8)]`, `Int` of dtype I32, eight codes a word.
    pub words: Param<Tensor<B, 1, Int>>,
    /// Block absmax, `[ceil(d_out·d_in / blocksize)]`, f32, frozen (reconstructed from the double
    /// quantization when the source was double-quantized; bit-equal to bnb's reconstruction).
    pub absmax: Param<Tensor<B, 1>>,
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
    /// the equivalent `nn.Linear` weight `[d_out, d_in]`.
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
    /// [`crate::bnb::from_state_dict`]).
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
        let words = pack_words(&t.packed);
        let n_words = words.len();
        let words =
            Tensor::<B, 1, Int>::from_data(TensorData::new(words, [n_words]), (device, DType::I32));
        let absmax = t.absmax_f32()?;
        let n_blocks = absmax.len();
        let absmax = Tensor::<B, 1>::from_data(TensorData::new(absmax, [n_blocks]), device);
        Ok(Self {
            words: Param::initialized(ParamId::new(), words),
            absmax: Param::from_tensor(absmax).set_require_grad(false),
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

    /// The dtype the backend holds the packed words in (I32 on NdArray and the CubeCL backends).
    pub fn storage_dtype(&self) -> DType {
        self.words.val().dtype()
    }

    /// Bytes held on the device: the words (4 bytes per 8 codes, or the backend's element size)
    /// plus 4 per absmax (the 64-byte code table not counted).
    pub fn storage_bytes(&self) -> usize {
        let [n_words] = self.words.dims();
        let [n_blocks] = self.absmax.dims();
        n_words * self.storage_dtype().size() + 4 * n_blocks
    }

    /// The packed bytes read back from the device (bnb layout, `ceil(n/2)` bytes).
    ///
    /// # Errors
    /// [`QuantError::Format`] if the data cannot be read.
    pub fn packed_bytes(&self) -> Result<Vec<u8>, QuantError> {
        let words = self
            .words
            .val()
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .map_err(|e| QuantError::Format {
                key: "words".into(),
                message: format!("cannot read tensor data: {e:?}"),
            })?;
        let n = (self.d_in * self.d_out).div_ceil(2);
        Ok(words
            .iter()
            .flat_map(|&w| (w as u32).to_be_bytes())
            .take(n)
            .collect())
    }

    /// The dequantized weight in PyTorch layout `[d_out, d_in]`: `code[q] · absmax[block]`, equal
    /// bit for bit to bitsandbytes' `dequantize_4bit`.
    pub fn dequantize_weight(&self) -> Tensor<B, 2> {
        let words = self.words.val();
        let [n_words] = words.dims();
        let device = words.device();
        let nibbles: Vec<Tensor<B, 1, Int>> = (0..NIBBLES_PER_WORD)
            .map(|k| {
                let shift = (28 - 4 * k as i64).elem::<B::IntElem>();
                words
                    .clone()
                    .bitwise_right_shift_scalar(shift)
                    .bitwise_and_scalar(15i64.elem::<B::IntElem>())
            })
            .collect();
        let idx = Tensor::stack::<2>(nibbles, 1).reshape([n_words * NIBBLES_PER_WORD]);
        let values = self.code.clone().select(0, idx);
        let n = self.d_in * self.d_out;
        let [n_blocks] = self.absmax.dims();
        let padded = n_blocks * self.blocksize;
        let have = n_words * NIBBLES_PER_WORD;
        let values = if have >= padded {
            values.narrow(0, 0, padded)
        } else {
            Tensor::cat(vec![values, Tensor::zeros([padded - have], &device)], 0)
        };
        let w =
            values.reshape([n_blocks, self.blocksize]) * self.absmax.val().reshape([n_blocks, 1]);
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

/// QLoRA's layer: a frozen NF4 base ([`QuantLinear`]), an optional frozen f32 bias and an optional
/// LoRA adapter (Dettmers et al. 2023, "QLoRA", eq. 5:
/// `Y = X·dequant(W) + b + s·X·A·B`), with the forward contract of `lora_core::LoraLinear`.
#[derive(Module, Debug)]
pub struct QLoraLinear<B: Backend> {
    /// The quantized base.
    pub base: QuantLinear<B>,
    /// Optional bias `[d_out]`, f32, frozen.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The adapter, if attached (A `[d_in, r]`, B `[r, d_out]`, trainable).
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> QLoraLinear<B> {
    /// A layer from a quantized base and an optional bias `[d_out]`.
    ///
    /// # Errors
    /// [`QuantError::Shape`] when the bias length differs from `d_out`.
    pub fn new(base: QuantLinear<B>, bias: Option<Tensor<B, 1>>) -> Result<Self, QuantError> {
        if let Some(b) = &bias {
            if b.dims()[0] != base.d_out {
                return Err(QuantError::Shape {
                    what: "bias".into(),
                    expected: vec![base.d_out],
                    got: b.dims().to_vec(),
                });
            }
        }
        Ok(Self {
            base,
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            lora: None,
        })
    }

    /// Quantizes a dense `[d_in, d_out]` weight (see [`QuantLinear::from_weight`]) and keeps the
    /// bias in f32.
    ///
    /// # Errors
    /// As [`QuantLinear::from_weight`] and [`QLoraLinear::new`].
    pub fn from_weight(
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
        blocksize: usize,
        compress_statistics: bool,
    ) -> Result<Self, QuantError> {
        Self::new(
            QuantLinear::from_weight(weight, blocksize, compress_statistics)?,
            bias,
        )
    }

    /// `(d_in, d_out)`.
    pub fn dims(&self) -> (usize, usize) {
        self.base.dims()
    }

    /// Attaches a fresh adapter (as `LoraLinear::attach`).
    ///
    /// # Errors
    /// [`QuantError::Lora`] for a bad rank or dropout.
    pub fn attach(
        &mut self,
        config: &LoraLayerConfig,
        device: &B::Device,
    ) -> Result<(), QuantError> {
        let (i, o) = self.dims();
        self.lora = Some(LoraAdapter::new(i, o, config, device)?);
        Ok(())
    }

    /// Attaches an adapter from factors `a` `[d_in, r]`, `b` `[r, d_out]`.
    ///
    /// # Errors
    /// [`QuantError::Shape`] when the factors do not fit the layer; [`QuantError::Lora`].
    pub fn attach_tensors(
        &mut self,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        config: &LoraLayerConfig,
    ) -> Result<(), QuantError> {
        let (i, o) = self.dims();
        for (what, got, expected) in [
            ("lora_A", a.dims(), [i, config.r]),
            ("lora_B", b.dims(), [config.r, o]),
        ] {
            if got != expected {
                return Err(QuantError::Shape {
                    what: what.into(),
                    expected: expected.to_vec(),
                    got: got.to_vec(),
                });
            }
        }
        self.lora = Some(LoraAdapter::from_tensors(a, b, config)?);
        Ok(())
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x·dequant(W) + b + scaling·B(A(dropout(x)))`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let base = burn::tensor::module::linear(
            x.clone(),
            self.base.weight_in_out(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match &self.lora {
            Some(l) => base + l.forward(x),
            None => base,
        }
    }

    /// A dense `lora_core::LoraLinear` with the dequantized weight `[d_in, d_out]`, the bias and
    /// the adapter (unmerged) — for merging (`merge_and_unload`) or export, as PEFT merges a
    /// 4-bit layer into its dequantized weight.
    ///
    /// # Errors
    /// [`QuantError::Lora`] (cannot happen for a layer built by [`QLoraLinear::new`]: the bias
    /// length was checked there).
    pub fn into_lora_linear(self) -> Result<LoraLinear<B>, QuantError> {
        let mut l = LoraLinear::new(self.base.weight_in_out(), self.bias.map(|b| b.val()), false)?;
        l.lora = self.lora;
        Ok(l)
    }
}
