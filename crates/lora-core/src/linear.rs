//! The LoRA linear layer: a [`FrozenLinear`] base with an optional [`Adapter`] beside it
//! (PEFT `peft/tuners/lora/layer.py`, `Linear`).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use lora_quant::{QuantBase, QuantKind, QuantStats};

use crate::{Adapter, BaseTensors, FrozenLinear, LoraAdapter, LoraError, LoraLayerConfig};

/// A linear layer with a frozen base and an optional adapter:
/// `y = x·W + b + scaling · B(A(dropout(x)))` for LoRA.
///
/// The base ([`FrozenLinear`]) holds the weight `[d_in, d_out]` f32 (burn `nn::Linear` layout;
/// also GPT-2 Conv1D's), dense or quantized (QLoRA; see [`LoraLinear::quantize`]), and the bias
/// `[d_out]` f32, never quantized. Base and bias are frozen (`require_grad = false`) unless the
/// layer was made trainable as a PEFT `modules_to_save` module with
/// [`LoraLinear::set_base_trainable`]. Code that reads the base weight (export, merging,
/// initialisation from it) must use [`LoraLinear::base_weight`], which dequantizes when needed.
///
/// Compute dtype: the dtype of the stored base weight (also of the empty placeholder of a
/// quantized layer) is the dtype the layer's matmuls run in; it is the backend's float dtype
/// (f32) unless [`LoraLinear::set_compute_dtype`] changed it (mixed precision).
///
/// # Shapes
/// - input `[..., d_in]`, output `[..., d_out]`
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// The frozen base: weight (dense or quantized), bias, layout flag, compute dtype.
    base: FrozenLinear<B>,
    /// The adapter, if one is attached.
    adapter: Option<Adapter<B>>,
    /// Whether the adapter's update has been added into the base weight (then forward skips it).
    merged: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// A frozen linear layer from its weight `[d_in, d_out]` and optional bias `[d_out]`.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when the bias length differs from `d_out`.
    pub fn new(
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
        fan_in_fan_out: bool,
    ) -> Result<Self, LoraError> {
        Ok(Self::from_base(FrozenLinear::new(
            weight,
            bias,
            fan_in_fan_out,
        )?))
    }

    /// A layer over a given base, without an adapter.
    pub fn from_base(base: FrozenLinear<B>) -> Self {
        Self {
            base,
            adapter: None,
            merged: false,
        }
    }

    /// The frozen base (weight, bias, compute dtype).
    pub fn base(&self) -> &FrozenLinear<B> {
        &self.base
    }

    /// `(d_in, d_out)`, of the dense or the quantized base.
    pub fn dims(&self) -> (usize, usize) {
        self.base.dims()
    }

    /// Whether the base is quantized.
    pub fn is_quantized(&self) -> bool {
        self.base.is_quantized()
    }

    /// The base weight `[d_in, d_out]` in the backend's float dtype (f32, see
    /// [`crate::master_dtype`]): the dense weight (widened exactly when it is stored in
    /// bf16/f16), or the dequantized codes (bit-equal to bitsandbytes' dequantization of the
    /// same codes). Includes the adapter's update only when the layer is merged.
    pub fn base_weight(&self) -> Tensor<B, 2> {
        self.base.weight()
    }

    /// The dtype the layer's matmuls run in: the dtype of the stored base weight (F32 unless
    /// changed by [`LoraLinear::set_compute_dtype`]).
    pub fn compute_dtype(&self) -> FloatDType {
        self.base.compute_dtype()
    }

    /// Sets the compute dtype of the frozen base (mixed precision; Micikevicius et al. 2018
    /// §3, PyTorch autocast): a dense weight is stored in `dtype` (rounded to nearest even
    /// once; setting f32 again widens the rounded values, it does not restore the originals);
    /// a quantized base keeps its codes and is dequantized to f32 then cast to `dtype` in each
    /// forward (the values bitsandbytes' `dequantize_4bit(…, dtype)` produces). The forward then
    /// casts `x` to `dtype`, runs the base and the LoRA matmuls in `dtype` (A and B cast for the
    /// matmul only), and casts the sum back to `x`'s dtype before adding the f32 bias. A and B,
    /// their gradients and the optimizer state stay f32. With `dtype` equal to the current one
    /// nothing changes; with f32 on a never-switched layer the forward is bit-identical.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedDtype`] when the backend cannot hold `dtype` (NdArray has no
    /// bf16/f16); [`LoraError::State`] when the base weight is trainable (a `modules_to_save`
    /// layer must keep an f32 master weight) and `dtype` is not the backend's float dtype. The
    /// layer is unchanged on error.
    pub fn set_compute_dtype(&mut self, dtype: FloatDType) -> Result<(), LoraError> {
        self.base.set_compute_dtype(dtype)
    }

    /// Quantizes the frozen base weight in place (QLoRA: quantize the base, then attach
    /// adapters; an adapter already attached is kept and still trains). The stored weight
    /// becomes an empty placeholder and the codes go to the quantized base; the bias stays f32.
    /// Returns the reconstruction error of the weight (max abs, RMS) and its bytes in f32 and
    /// quantized (device storage).
    ///
    /// # Errors
    /// [`LoraError::State`] if the layer is already quantized or its base weight is trainable
    /// (a `modules_to_save` layer); [`LoraError::Quant`] for a bad block size or a non-finite
    /// weight (the layer is then unchanged).
    pub fn quantize(&mut self, kind: &QuantKind) -> Result<QuantStats, LoraError> {
        self.base.quantize(kind)
    }

    /// Turns a quantized base back into a dense weight (the dequantized values; frozen), in
    /// the compute dtype (f32 unless [`LoraLinear::set_compute_dtype`] changed it). A no-op on
    /// a dense layer. Use it to export merged f32 weights or to train the base.
    pub fn dequantize(&mut self) {
        self.base.dequantize();
    }

    /// Attaches a fresh adapter (replacing any existing one).
    ///
    /// # Errors
    /// As [`LoraAdapter::new`]; [`LoraError::State`] if the layer is merged.
    pub fn attach(
        &mut self,
        config: &LoraLayerConfig,
        device: &B::Device,
    ) -> Result<(), LoraError> {
        if self.merged {
            return Err(LoraError::State(
                "cannot attach an adapter to a merged layer".into(),
            ));
        }
        let (i, o) = self.dims();
        self.adapter = Some(LoraAdapter::new(i, o, config, device)?.into());
        Ok(())
    }

    /// Attaches any method's adapter (an [`Adapter`] variant, or a module that converts into
    /// one), replacing an existing one: the entry point of methods other than LoRA, whose
    /// constructors take the layer's [`LoraLinear::dims`] and check their own shapes.
    ///
    /// # Errors
    /// [`LoraError::State`] if the layer is merged.
    pub fn attach_adapter(&mut self, adapter: impl Into<Adapter<B>>) -> Result<(), LoraError> {
        if self.merged {
            return Err(LoraError::State(
                "cannot attach an adapter to a merged layer".into(),
            ));
        }
        self.adapter = Some(adapter.into());
        Ok(())
    }

    /// Attaches an adapter built from factors `a` `[d_in, r]`, `b` `[r, d_out]`.
    ///
    /// # Errors
    /// [`LoraError::Shape`] if `a`/`b` do not fit this layer; as [`LoraAdapter::from_tensors`].
    pub fn attach_tensors(
        &mut self,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        config: &LoraLayerConfig,
    ) -> Result<(), LoraError> {
        let (i, o) = self.dims();
        if a.dims() != [i, config.r] {
            return Err(LoraError::Shape {
                what: "lora_A".into(),
                expected: vec![i, config.r],
                got: a.dims().to_vec(),
            });
        }
        if b.dims() != [config.r, o] {
            return Err(LoraError::Shape {
                what: "lora_B".into(),
                expected: vec![config.r, o],
                got: b.dims().to_vec(),
            });
        }
        self.adapter = Some(LoraAdapter::from_tensors(a, b, config)?.into());
        Ok(())
    }

    /// Makes the base weight and bias trainable (PEFT `modules_to_save`) or frozen again. A
    /// quantized base is dequantized first when made trainable, and a base stored in bf16/f16
    /// is widened back to the backend's float dtype (only a dense f32 master weight trains;
    /// the bf16 rounding stays).
    pub fn set_base_trainable(&mut self, trainable: bool) {
        self.base.set_trainable(trainable);
    }

    /// The adapter that takes part in forward: attached and not merged.
    fn active_adapter(&self) -> Option<&Adapter<B>> {
        match (&self.adapter, self.merged) {
            (Some(a), false) => Some(a),
            _ => None,
        }
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x·W + b + scaling·B(A(dropout(x)))`; the adapter
    /// term is skipped when merged or absent. A quantized `W` is dequantized for the call (a
    /// transient f32 copy of the base; the dense `ΔW` is never built); no gradient reaches the
    /// codes or their scales.
    ///
    /// Mixed precision: when the compute dtype ([`LoraLinear::compute_dtype`]) differs from
    /// `x`'s dtype, `x` (and, separately, `dropout(x)` when dropout is active) is cast to the
    /// compute dtype, `x·W + scaling·B(A(x))` is computed in it (A, B cast for the matmul
    /// only; [`LoraAdapter::forward_cast`]), the sum is cast back to `x`'s dtype and the bias is
    /// added there (f32). Output dtype = input dtype. When the dtypes agree this is the plain
    /// f32 computation, with no cast.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // Without an active adapter the base's own forward (which handles mixed precision).
        let Some(a) = self.active_adapter() else {
            return self.base.forward(x);
        };
        let cd = self.base.weight_dtype();
        if cd != x.dtype() {
            let cd = FloatDType::from(cd);
            return a.forward_mixed(&self.base, x.clone(), x.cast(cd), cd);
        }
        a.forward(x.clone(), self.base.forward(a.base_input(x)))
    }

    /// Adds the adapter's update (`scaling·A·B`) into the base weight (PEFT `merge`). Forward
    /// output is unchanged up to float rounding on a dense base, and up to the requantization
    /// error on a quantized one (see [`LoraLinear::merge_report`]).
    ///
    /// # Errors
    /// [`LoraError::State`] if there is no adapter or it is already merged;
    /// [`LoraError::Quant`] if requantization fails (the layer is then unchanged).
    pub fn merge(&mut self) -> Result<(), LoraError> {
        self.merge_report().map(|_| ())
    }

    /// [`LoraLinear::merge`], returning for a quantized base the requantization statistics:
    /// PEFT's bitsandbytes `merge` dequantizes, adds `scaling·A·B` and quantizes again with the
    /// same scheme, and the error reported is that of the new codes against the exact merged
    /// f32 weight (`None` for a dense base, which merges exactly).
    ///
    /// # Errors
    /// As [`LoraLinear::merge`].
    pub fn merge_report(&mut self) -> Result<Option<QuantStats>, LoraError> {
        let adapter = match (&self.adapter, self.merged) {
            (None, _) => return Err(LoraError::State("merge: layer has no adapter".into())),
            (Some(_), true) => return Err(LoraError::State("merge: already merged".into())),
            (Some(a), false) => a,
        };
        let stats = self.base.update(|w, b| adapter.merge_into(w, b))?;
        self.merged = true;
        Ok(stats)
    }

    /// Subtracts the adapter's update from the base weight (PEFT `unmerge`); a quantized base
    /// is dequantized, updated and requantized (see [`LoraLinear::unmerge_report`]).
    ///
    /// # Errors
    /// [`LoraError::State`] if the layer is not merged; [`LoraError::Quant`] if requantization
    /// fails (the layer is then unchanged).
    pub fn unmerge(&mut self) -> Result<(), LoraError> {
        self.unmerge_report().map(|_| ())
    }

    /// [`LoraLinear::unmerge`], returning the requantization statistics of a quantized base (the
    /// error of the new codes against the exact f32 result of the subtraction), `None` for a
    /// dense base.
    ///
    /// # Errors
    /// As [`LoraLinear::unmerge`].
    pub fn unmerge_report(&mut self) -> Result<Option<QuantStats>, LoraError> {
        let adapter = match (&self.adapter, self.merged) {
            (Some(a), true) => a,
            _ => return Err(LoraError::State("unmerge: layer is not merged".into())),
        };
        let stats = self.base.update(|w, b| adapter.unmerge_from(w, b))?;
        self.merged = false;
        Ok(stats)
    }

    /// Merges the adapter (if any, and not merged yet) and drops it, leaving a plain frozen
    /// linear layer (PEFT `merge_and_unload`). A quantized base stays quantized (requantized
    /// with the update, as PEFT does for bitsandbytes layers); should requantization fail (a
    /// non-finite merged weight), the base is left dense with the exact merged weight.
    ///
    /// # Errors
    /// As [`Adapter::merge_into`]: a method whose update cannot be folded into the base.
    pub fn merge_and_unload(mut self) -> Result<Self, LoraError> {
        self.unload_adapter(true)?;
        Ok(self)
    }

    /// The attached LoRA adapter, if any.
    pub fn adapter(&self) -> Option<&LoraAdapter<B>> {
        self.adapter.as_ref().and_then(Adapter::as_lora)
    }

    /// The attached adapter of any method, if any.
    pub fn attached_adapter(&self) -> Option<&Adapter<B>> {
        self.adapter.as_ref()
    }

    /// Whether an adapter is attached (merged or not).
    pub fn has_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    /// Whether the adapter's update has been added into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// True when the Hugging Face checkpoint stores this weight `[d_in, d_out]` (GPT-2 Conv1D,
    /// PEFT's `fan_in_fan_out=True`); false for `nn.Linear` (`[d_out, d_in]`).
    pub fn fan_in_fan_out(&self) -> bool {
        self.base.fan_in_fan_out()
    }

    /// The base bias `[d_out]` (f32), if the layer has one.
    pub fn bias(&self) -> Option<Tensor<B, 1>> {
        self.base.bias()
    }

    /// Whether the base weight trains (PEFT `modules_to_save`; see
    /// [`LoraLinear::set_base_trainable`]).
    pub fn is_base_trainable(&self) -> bool {
        self.base.is_trainable()
    }

    /// The quantized base, or `None` for a dense one.
    pub fn quant_base(&self) -> Option<&QuantBase<B>> {
        self.base.quant_base()
    }

    /// The dense f32 weight `[d_in, d_out]` and bias `[d_out]` to export: the base's when the
    /// layer is merged or has no adapter, else the base with the adapter folded in
    /// ([`Adapter::merge_into`]: PEFT `merge`, here in f32 without requantizing).
    ///
    /// # Errors
    /// As [`Adapter::merge_into`] (a method whose update cannot be folded into the base).
    pub fn merged_base(&self) -> Result<BaseTensors<B>, LoraError> {
        let (w, b) = (self.base_weight(), self.bias());
        match self.active_adapter() {
            Some(a) => a.merge_into(w, b),
            None => Ok((w, b)),
        }
    }

    /// Replaces the base with a dense trainable `weight` `[d_in, d_out]` (and `bias` `[d_out]`,
    /// when the layer has one), as when a PEFT `modules_to_save` copy is loaded: a quantized
    /// base is dropped, parameter ids are kept, and the base is made trainable.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when `weight` is not `[d_in, d_out]` or `bias` not `[d_out]`.
    pub fn replace_base(
        &mut self,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Result<(), LoraError> {
        self.base.replace(weight, bias)
    }

    /// Drops the adapter in place (PEFT `_unload_and_optionally_merge`): with `merge`, its update
    /// is merged into the base first (PEFT `merge_and_unload`; a quantized base is requantized,
    /// and should that fail — a non-finite merged weight — the base is left dense with the exact
    /// merged weight); without, a merged layer is unmerged first (PEFT `unload`), with the same
    /// dense fallback. Returns whether the layer had an adapter.
    ///
    /// # Errors
    /// As [`Adapter::merge_into`] / [`Adapter::unmerge_from`] (a method whose update cannot be
    /// folded into the base); the adapter is then kept.
    pub fn unload_adapter(&mut self, merge: bool) -> Result<bool, LoraError> {
        if self.adapter.is_none() {
            return Ok(false);
        }
        if merge && !self.merged {
            self.dense_fallback(Self::merge)?;
        }
        if !merge && self.merged {
            self.dense_fallback(Self::unmerge)?;
        }
        self.adapter = None;
        self.merged = false;
        Ok(true)
    }

    /// Runs `op` (merge or unmerge); when requantizing the result fails (a non-finite weight),
    /// dequantizes the base and runs it again on the dense f32 weight, which cannot fail so.
    fn dense_fallback(
        &mut self,
        op: fn(&mut Self) -> Result<(), LoraError>,
    ) -> Result<(), LoraError> {
        match op(self) {
            Err(LoraError::Quant(_)) => {
                self.dequantize();
                op(self)
            }
            r => r,
        }
    }

    /// Converts to burn's `nn::Linear` (same `[d_in, d_out]` layout), merging first; a quantized
    /// base is dequantized, and a bf16/f16 base widened, to f32 (the backend's float dtype).
    ///
    /// # Errors
    /// As [`LoraLinear::merge_and_unload`].
    pub fn into_linear(self) -> Result<burn::nn::Linear<B>, LoraError> {
        Ok(self.merge_and_unload()?.base.into_linear())
    }
}
