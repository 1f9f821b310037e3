//! The frozen base of a linear layer: dense (f32, bf16, f16) or quantized (NF4, NF4 with
//! double-quantized statistics, LLM.int8; crate `lora-quant`), plus its bias.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};
use lora_quant::{QuantBase, QuantKind, QuantStats};

use crate::{master_dtype, BaseTensors, LoraError};

/// A frozen linear map `y = x·W + b`, `W` dense or quantized (QLoRA, Dettmers et al. 2023).
///
/// The weight is `[d_in, d_out]` (burn `nn::Linear` layout; also GPT-2 Conv1D's), held either
/// dense or as a [`QuantBase`] (codes packed on the device; see [`FrozenLinear::quantize`]). The
/// bias is f32 and never quantized. Weight and bias are frozen (`require_grad = false`) unless
/// made trainable as a PEFT `modules_to_save` module with [`FrozenLinear::set_trainable`]. Code
/// that reads the weight (export, merging, initialisation from it) uses
/// [`FrozenLinear::weight`], which dequantizes when needed.
///
/// Compute dtype: the dtype of the stored weight (also of the empty placeholder of a quantized
/// base) is the dtype the matmul runs in; it is the backend's float dtype (f32) unless
/// [`FrozenLinear::set_compute_dtype`] changed it (mixed precision).
///
/// # Shapes
/// - weight `[d_in, d_out]`, bias `[d_out]`
/// - input `[..., d_in]`, output `[..., d_out]`
#[derive(Module, Debug)]
pub struct FrozenLinear<B: Backend> {
    /// Dense weight `[d_in, d_out]` when `quant` is `None`, f32 or the compute dtype (bf16,
    /// f16). When the base is quantized this is an empty `[0, 0]` frozen placeholder in the
    /// compute dtype (it keeps its parameter id) and the weight lives in `quant`.
    weight: Param<Tensor<B, 2>>,
    /// The quantized weight (NF4 or int8 codes packed on the device), or `None` when dense.
    quant: Option<QuantBase<B>>,
    /// Optional bias `[d_out]`.
    bias: Option<Param<Tensor<B, 1>>>,
    /// True when the Hugging Face checkpoint stores this weight `[d_in, d_out]` (GPT-2 Conv1D,
    /// PEFT's `fan_in_fan_out=True`); false for `nn.Linear` (`[d_out, d_in]`). Used on export.
    fan_in_fan_out: bool,
}

/// An empty `[0, 0]` tensor of dtype `dtype`: the weight placeholder of a quantized base.
/// `empty`, not `zeros`: a 0-element fill is a 0-block kernel launch, which CUDA rejects
/// (`CUDA_ERROR_INVALID_VALUE`, leaving burn's CUDA server unusable).
fn placeholder<B: Backend>(device: &B::Device, dtype: FloatDType) -> Tensor<B, 2> {
    if dtype == master_dtype::<B>() {
        Tensor::empty([0, 0], device)
    } else {
        Tensor::empty([0, 0], (device, DType::from(dtype)))
    }
}

impl<B: Backend> FrozenLinear<B> {
    /// A frozen dense base from its weight `[d_in, d_out]` and optional bias `[d_out]`.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when the bias length differs from `d_out`.
    pub fn new(
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
        fan_in_fan_out: bool,
    ) -> Result<Self, LoraError> {
        let [_, d_out] = weight.dims();
        if let Some(b) = &bias {
            if b.dims()[0] != d_out {
                return Err(LoraError::Shape {
                    what: "bias".into(),
                    expected: vec![d_out],
                    got: b.dims().to_vec(),
                });
            }
        }
        Ok(Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            quant: None,
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            fan_in_fan_out,
        })
    }

    /// `(d_in, d_out)`, of the dense or the quantized weight.
    pub fn dims(&self) -> (usize, usize) {
        match &self.quant {
            Some(q) => q.dims(),
            None => {
                let [i, o] = self.weight.dims();
                (i, o)
            }
        }
    }

    /// Whether the weight is quantized.
    pub fn is_quantized(&self) -> bool {
        self.quant.is_some()
    }

    /// The quantized weight, or `None` for a dense one.
    pub fn quant_base(&self) -> Option<&QuantBase<B>> {
        self.quant.as_ref()
    }

    /// The weight `[d_in, d_out]` in the backend's float dtype (f32, see [`master_dtype`]): the
    /// dense weight (widened exactly when it is stored in bf16/f16), or the dequantized codes
    /// (bit-equal to bitsandbytes' dequantization of the same codes).
    pub fn weight(&self) -> Tensor<B, 2> {
        match &self.quant {
            Some(q) => q.dequantize_weight_in_out(),
            None => {
                let w = self.weight.val();
                let master = master_dtype::<B>();
                if w.dtype() == DType::from(master) {
                    w
                } else {
                    w.cast(master)
                }
            }
        }
    }

    /// The stored weight parameter: the dense `[d_in, d_out]` weight in the compute dtype, or
    /// the empty `[0, 0]` placeholder of a quantized base (its id and dtype are kept across
    /// quantize, dequantize and merge).
    pub fn weight_param(&self) -> &Param<Tensor<B, 2>> {
        &self.weight
    }

    /// The bias `[d_out]` (f32), if any.
    pub fn bias(&self) -> Option<Tensor<B, 1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    /// The bias parameter `[d_out]`, if any.
    pub fn bias_param(&self) -> Option<&Param<Tensor<B, 1>>> {
        self.bias.as_ref()
    }

    /// True when the Hugging Face checkpoint stores this weight `[d_in, d_out]` (GPT-2 Conv1D,
    /// PEFT's `fan_in_fan_out=True`); false for `nn.Linear` (`[d_out, d_in]`).
    pub fn fan_in_fan_out(&self) -> bool {
        self.fan_in_fan_out
    }

    /// The device the weight lives on.
    pub fn device(&self) -> B::Device {
        self.weight.device()
    }

    /// Whether the weight trains (PEFT `modules_to_save`; see [`FrozenLinear::set_trainable`]).
    pub fn is_trainable(&self) -> bool {
        self.weight.is_require_grad()
    }

    /// The dtype of the stored weight, which is the dtype the matmul runs in.
    pub(crate) fn weight_dtype(&self) -> DType {
        self.weight.dtype()
    }

    /// The dtype the matmul runs in: the dtype of the stored weight (F32 unless changed by
    /// [`FrozenLinear::set_compute_dtype`]).
    pub fn compute_dtype(&self) -> FloatDType {
        FloatDType::from(self.weight.dtype())
    }

    /// Sets the compute dtype (mixed precision; Micikevicius et al. 2018 §3, PyTorch
    /// autocast): a dense weight is stored in `dtype` (rounded to nearest even once; setting
    /// f32 again widens the rounded values, it does not restore the originals); a quantized
    /// weight keeps its codes and is dequantized to f32 then cast to `dtype` in each forward
    /// (the values bitsandbytes' `dequantize_4bit(…, dtype)` produces). With `dtype` equal to
    /// the current one nothing changes.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedDtype`] when the backend cannot hold `dtype` (NdArray has no
    /// bf16/f16); [`LoraError::State`] when the weight is trainable (a `modules_to_save` layer
    /// must keep an f32 master weight) and `dtype` is not the backend's float dtype. The base
    /// is unchanged on error.
    pub fn set_compute_dtype(&mut self, dtype: FloatDType) -> Result<(), LoraError> {
        if self.compute_dtype() == dtype {
            return Ok(());
        }
        let device = self.weight.device();
        if !B::supports_dtype(&device, dtype.into()) {
            return Err(LoraError::UnsupportedDtype {
                dtype,
                backend: B::name(&device),
            });
        }
        if self.weight.is_require_grad() && dtype != master_dtype::<B>() {
            return Err(LoraError::State(format!(
                "set_compute_dtype({dtype:?}): the base weight is trainable (modules_to_save); a \
                 trained weight stays an f32 master weight"
            )));
        }
        let w = match &self.quant {
            // `empty`, not `zeros`: see `placeholder`.
            Some(_) => Tensor::empty([0, 0], (&device, DType::from(dtype))),
            None => self.weight.val().cast(dtype),
        };
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
        Ok(())
    }

    /// Quantizes the weight in place (QLoRA). The stored weight becomes an empty placeholder in
    /// the compute dtype and the codes go to the quantized base; the bias stays f32. Returns
    /// the reconstruction error of the weight (max abs, RMS) and its bytes in f32 and quantized
    /// (device storage).
    ///
    /// # Errors
    /// [`LoraError::State`] if the weight is already quantized or trainable (a
    /// `modules_to_save` layer); [`LoraError::Quant`] for a bad block size or a non-finite
    /// weight (the base is then unchanged).
    pub fn quantize(&mut self, kind: &QuantKind) -> Result<QuantStats, LoraError> {
        if let Some(q) = &self.quant {
            return Err(LoraError::State(format!(
                "quantize: the base is already quantized ({}); call dequantize() first",
                q.kind()
            )));
        }
        if self.weight.is_require_grad() {
            return Err(LoraError::State(
                "quantize: the base weight is trainable (modules_to_save); a quantized base is \
                 frozen"
                    .into(),
            ));
        }
        let (q, stats) = QuantBase::quantize(self.weight(), kind)?;
        let device = self.weight.device();
        // The placeholder keeps the compute dtype (f32 unless set_compute_dtype changed it).
        let placeholder = placeholder::<B>(&device, self.compute_dtype());
        self.weight = Param::initialized(self.weight.id, placeholder).set_require_grad(false);
        self.quant = Some(q);
        Ok(stats)
    }

    /// Turns a quantized weight back into a dense one (the dequantized values; frozen), in the
    /// compute dtype. A no-op on a dense base.
    pub fn dequantize(&mut self) {
        let cd = self.compute_dtype();
        if let Some(q) = self.quant.take() {
            let w = q.dequantize_weight_in_out_as(cd);
            self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
        }
    }

    /// Makes the weight and bias trainable (PEFT `modules_to_save`) or frozen again. A
    /// quantized weight is dequantized first when made trainable, and a weight stored in
    /// bf16/f16 is widened back to the backend's float dtype (only a dense f32 master weight
    /// trains; the bf16 rounding stays).
    pub fn set_trainable(&mut self, trainable: bool) {
        if trainable {
            self.dequantize();
            if self.compute_dtype() != master_dtype::<B>() {
                let w = self.weight();
                self.weight = Param::initialized(self.weight.id, w);
            }
        }
        self.weight = self.weight.clone().set_require_grad(trainable);
        self.bias = self.bias.take().map(|b| b.set_require_grad(trainable));
    }

    /// Replaces the base with a dense trainable `weight` `[d_in, d_out]` (and `bias` `[d_out]`,
    /// when the base has one), as when a PEFT `modules_to_save` copy is loaded: a quantized
    /// weight is dropped, parameter ids are kept, and the base is made trainable.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when `weight` is not `[d_in, d_out]` or `bias` not `[d_out]`.
    pub fn replace(
        &mut self,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Result<(), LoraError> {
        let (i, o) = self.dims();
        if weight.dims() != [i, o] {
            return Err(LoraError::Shape {
                what: "base weight".into(),
                expected: vec![i, o],
                got: weight.dims().to_vec(),
            });
        }
        if let Some(b) = &bias {
            if b.dims() != [o] {
                return Err(LoraError::Shape {
                    what: "base bias".into(),
                    expected: vec![o],
                    got: b.dims().to_vec(),
                });
            }
        }
        self.quant = None;
        self.weight = Param::initialized(self.weight.id, weight);
        if let (Some(b), Some(old_id)) = (bias, self.bias.as_ref().map(|p| p.id)) {
            self.bias = Some(Param::initialized(old_id, b));
        }
        self.set_trainable(true);
        Ok(())
    }

    /// Rewrites the base through `f` (merge and unmerge; the one path for every method and
    /// every kind of base): `f` gets the weight `[d_in, d_out]` in f32 (dequantized when
    /// quantized) and the bias `[d_out]`, both detached, and returns the new pair. A dense
    /// weight is stored back in the compute dtype (a bf16/f16 weight is rounded once more, as
    /// PEFT's merge into a bf16 weight is); a quantized one is requantized in the same scheme
    /// (PEFT's bitsandbytes `merge`). Parameter ids and `require_grad` are kept. Returns the
    /// requantization statistics (the error of the new codes against the exact f32 weight),
    /// `None` for a dense weight.
    ///
    /// # Errors
    /// `f`'s error; [`LoraError::Shape`] when `f` returns other shapes or adds a bias the layer
    /// does not have; [`LoraError::Quant`] if requantization fails. The base is then unchanged.
    pub fn update(
        &mut self,
        f: impl FnOnce(Tensor<B, 2>, Option<Tensor<B, 1>>) -> Result<BaseTensors<B>, LoraError>,
    ) -> Result<Option<QuantStats>, LoraError> {
        let w = match &self.quant {
            None => self.weight().detach(),
            Some(q) => q.dequantize_weight_in_out().detach(),
        };
        let dims = w.dims();
        let (w, b) = f(w, self.bias().map(|b| b.detach()))?;
        if w.dims() != dims {
            return Err(LoraError::Shape {
                what: "merged base weight".into(),
                expected: dims.to_vec(),
                got: w.dims().to_vec(),
            });
        }
        let bias = match (&self.bias, b) {
            (Some(p), Some(b)) if b.dims() == [dims[1]] => Some((p, b)),
            (None, None) => None,
            (_, b) => {
                return Err(LoraError::Shape {
                    what: "merged base bias".into(),
                    expected: self.bias.as_ref().map_or(vec![], |_| vec![dims[1]]),
                    got: b.map_or(vec![], |b| b.dims().to_vec()),
                })
            }
        };
        let stats = match &self.quant {
            None => {
                let grad = self.weight.is_require_grad();
                let cd = self.compute_dtype();
                let w = if cd == master_dtype::<B>() {
                    w
                } else {
                    w.cast(cd)
                };
                self.weight = Param::initialized(self.weight.id, w).set_require_grad(grad);
                None
            }
            Some(q) => {
                let (nq, stats) = QuantBase::quantize(w, &q.kind())?;
                self.quant = Some(nq);
                Some(stats)
            }
        };
        if let Some((p, b)) = bias {
            let p = Param::initialized(p.id, b).set_require_grad(p.is_require_grad());
            self.bias = Some(p);
        }
        Ok(stats)
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x·W + b`. A quantized `W` is dequantized for the
    /// call (a transient copy); no gradient reaches the codes or their scales. When the compute
    /// dtype differs from `x`'s, `x` is cast to it, `x·W` computed there
    /// ([`FrozenLinear::forward_compute`]), cast back, and the bias added in `x`'s dtype
    /// ([`FrozenLinear::add_bias`]); otherwise this is the plain computation, with no cast.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let cd = self.weight.dtype();
        if cd != x.dtype() {
            let xd = FloatDType::from(x.dtype());
            let y = self.forward_compute(x.cast(FloatDType::from(cd)));
            return self.add_bias(y.cast(xd));
        }
        burn::tensor::module::linear(x, self.weight(), self.bias())
    }

    /// `xc·W` without bias for an `xc` `[..., d_in]` already in the compute dtype; the result
    /// `[..., d_out]` is in the compute dtype (a quantized `W` is dequantized to it).
    pub fn forward_compute<const D: usize>(&self, xc: Tensor<B, D>) -> Tensor<B, D> {
        let w = match &self.quant {
            Some(q) => q.dequantize_weight_in_out_as(self.compute_dtype()),
            None => self.weight.val(),
        };
        burn::tensor::module::linear(xc, w, None)
    }

    /// `y + b` with the bias cast to `y`'s dtype when it differs; `y` unchanged without bias.
    pub fn add_bias<const D: usize>(&self, y: Tensor<B, D>) -> Tensor<B, D> {
        match &self.bias {
            Some(b) => {
                let b = b.val();
                let b = if b.dtype() == y.dtype() {
                    b
                } else {
                    b.cast(FloatDType::from(y.dtype()))
                };
                y + b.unsqueeze::<D>()
            }
            None => y,
        }
    }

    /// Converts to burn's `nn::Linear` (same `[d_in, d_out]` layout): a quantized weight is
    /// dequantized, and a bf16/f16 weight widened, to f32 (the backend's float dtype);
    /// `require_grad` is kept.
    pub fn into_linear(mut self) -> burn::nn::Linear<B> {
        self.dequantize();
        if self.compute_dtype() != master_dtype::<B>() {
            let grad = self.weight.is_require_grad();
            let w = self.weight();
            self.weight = Param::initialized(self.weight.id, w).set_require_grad(grad);
        }
        burn::nn::Linear {
            weight: self.weight,
            bias: self.bias,
        }
    }
}
