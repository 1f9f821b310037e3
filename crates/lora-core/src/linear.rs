//! The LoRA linear layer: a [`FrozenLinear`] base with named [`Adapter`]s beside it (PEFT
//! `peft/tuners/lora/layer.py`, `Linear`, whose `lora_A`/`lora_B` are dicts by adapter name).
//! The single-adapter API here works on the adapter named [`DEFAULT_ADAPTER`]; adding, switching
//! and deleting named adapters, and the per-row choice of `adapter_names`, are in
//! `named_adapters.rs`.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use lora_quant::{QuantBase, QuantKind, QuantStats};

use crate::{Adapter, BaseTensors, FrozenLinear, LoraAdapter, LoraError, LoraLayerConfig};

/// PEFT's default adapter name: the adapter of the single-adapter API ([`LoraLinear::attach`],
/// [`LoraLinear::adapter`]) and the one `save_pretrained` writes to the top directory.
pub const DEFAULT_ADAPTER: &str = "default";

/// A linear layer with a frozen base and named adapters beside it:
/// `y = x·W + b + Σ_active scaling · B(A(dropout(x)))` for LoRA (PEFT `Linear.forward`: every
/// active adapter's term is added).
///
/// The base ([`FrozenLinear`]) holds the weight `[d_in, d_out]` f32 (burn `nn::Linear` layout;
/// also GPT-2 Conv1D's), dense or quantized (QLoRA; see [`LoraLinear::quantize`]), and the bias
/// `[d_out]` f32, never quantized. Base and bias are frozen (`require_grad = false`) unless the
/// layer was made trainable as a PEFT `modules_to_save` module with
/// [`LoraLinear::set_base_trainable`]. Code that reads the base weight (export, merging,
/// initialisation from it) must use [`LoraLinear::base_weight`], which dequantizes when needed.
///
/// Adapters are kept in the order they were added, which is also their parameter (record)
/// order; their names are plain data beside them (`#[module(skip)]`: not parameters, not in
/// the record). The active set decides which adapters take part in forward and merge.
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
    /// The adapters, in the order they were added (parameter and record order).
    pub(crate) adapters: Vec<Adapter<B>>,
    /// Their names, parallel to `adapters` (unique, never `"__base__"`).
    #[module(skip)]
    pub(crate) names: Vec<String>,
    /// Names of the adapters that take part in forward and merge, in activation order.
    #[module(skip)]
    pub(crate) active: Vec<String>,
    /// Names of the adapters whose update is in the base weight (empty when not merged; then
    /// forward skips every adapter).
    #[module(skip)]
    pub(crate) merged: Vec<String>,
    /// One adapter name per batch row for the forward (PEFT `adapter_names`), when set.
    #[module(skip)]
    pub(crate) row_adapters: Option<Vec<String>>,
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
            adapters: Vec::new(),
            names: Vec::new(),
            active: Vec::new(),
            merged: Vec::new(),
            row_adapters: None,
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

    /// Attaches a fresh adapter as the adapter named [`DEFAULT_ADAPTER`] (replacing it if
    /// present); it is active when no other adapter is.
    ///
    /// # Errors
    /// As [`LoraAdapter::new`]; [`LoraError::State`] if the layer is merged.
    pub fn attach(
        &mut self,
        config: &LoraLayerConfig,
        device: &B::Device,
    ) -> Result<(), LoraError> {
        self.check_not_merged("attach an adapter to")?;
        let (i, o) = self.dims();
        self.set_default(LoraAdapter::new(i, o, config, device)?.into())
    }

    /// Attaches any method's adapter (an [`Adapter`] variant, or a module that converts into
    /// one) as the adapter named [`DEFAULT_ADAPTER`], replacing it if present: the entry point
    /// of methods other than LoRA, whose constructors take the layer's [`LoraLinear::dims`] and
    /// check their own shapes. It is active when no other adapter is.
    ///
    /// # Errors
    /// [`LoraError::State`] if the layer is merged, or when the default adapter is active
    /// together with others and `adapter` is not LoRA (only LoRA terms add up).
    pub fn attach_adapter(&mut self, adapter: impl Into<Adapter<B>>) -> Result<(), LoraError> {
        self.check_not_merged("attach an adapter to")?;
        self.set_default(adapter.into())
    }

    /// Attaches an adapter built from factors `a` `[d_in, r]`, `b` `[r, d_out]` as the adapter
    /// named [`DEFAULT_ADAPTER`] (see [`LoraLinear::attach_adapter`]).
    ///
    /// # Errors
    /// [`LoraError::Shape`] if `a`/`b` do not fit this layer; as [`LoraAdapter::from_tensors`];
    /// [`LoraError::State`] if the layer is merged.
    pub fn attach_tensors(
        &mut self,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        config: &LoraLayerConfig,
    ) -> Result<(), LoraError> {
        let adapter = self.lora_from_tensors(a, b, config)?;
        self.check_not_merged("attach an adapter to")?;
        self.set_default(adapter.into())
    }

    /// Makes the base weight and bias trainable (PEFT `modules_to_save`) or frozen again. A
    /// quantized base is dequantized first when made trainable, and a base stored in bf16/f16
    /// is widened back to the backend's float dtype (only a dense f32 master weight trains;
    /// the bf16 rounding stays).
    pub fn set_base_trainable(&mut self, trainable: bool) {
        self.base.set_trainable(trainable);
    }

    /// The adapters that take part in forward: the active ones, in activation order; none when
    /// the layer is merged.
    pub(crate) fn active_list(&self) -> Vec<&Adapter<B>> {
        if self.is_merged() {
            return Vec::new();
        }
        self.indices(&self.active)
            .into_iter()
            .map(|i| &self.adapters[i])
            .collect()
    }

    /// The positions of the adapters `names` (every name is held: the lists are kept in step).
    fn indices(&self, names: &[String]) -> Vec<usize> {
        names.iter().filter_map(|n| self.position(n)).collect()
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x·W + b + Σ scaling·B(A(dropout(x)))` over the active
    /// adapters (PEFT `Linear.forward`); no adapter term when merged or none is active. With
    /// per-row adapter names set ([`LoraLinear::set_adapter_names`]) each batch row takes its
    /// own adapter instead (PEFT `_mixed_batch_forward`). A quantized `W` is dequantized for the
    /// call (a transient f32 copy of the base; the dense `ΔW` is never built); no gradient
    /// reaches the codes or their scales.
    ///
    /// Mixed precision: when the compute dtype ([`LoraLinear::compute_dtype`]) differs from
    /// `x`'s dtype, `x` (and, separately, `dropout(x)` when dropout is active) is cast to the
    /// compute dtype, `x·W + Σ scaling·B(A(x))` is computed in it (A, B cast for the matmul
    /// only; [`LoraAdapter::forward_cast`]), the sum is cast back to `x`'s dtype and the bias is
    /// added there (f32). Output dtype = input dtype. When the dtypes agree this is the plain
    /// f32 computation, with no cast.
    ///
    /// # Panics
    /// With per-row adapter names set, when `x`'s first dimension differs from their number
    /// (`lora-peft`'s `NamedAdapters::with_adapter_names` checks the batch first).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if let Some(rows) = &self.row_adapters {
            return self.forward_rows(x, rows);
        }
        self.forward_with(&self.active_list(), x)
    }

    /// The layer output with the given adapters (a possibly empty, valid active set).
    pub(crate) fn forward_with<const D: usize>(
        &self,
        adapters: &[&Adapter<B>],
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let cd = self.base.weight_dtype();
        match adapters {
            // Without an adapter the base's own forward (which handles mixed precision).
            [] => self.base.forward(x),
            [a] if cd != x.dtype() => {
                let cd = FloatDType::from(cd);
                a.forward_mixed(&self.base, x.clone(), x.cast(cd), cd)
            }
            [a] => a.forward(&self.base, x.clone(), self.base.forward(a.base_input(x))),
            several => {
                let loras: Vec<&LoraAdapter<B>> =
                    several.iter().filter_map(|a| a.as_lora()).collect();
                if cd != x.dtype() && loras.len() == several.len() {
                    let (cd, xd) = (FloatDType::from(cd), FloatDType::from(x.dtype()));
                    let xc = x.clone().cast(cd);
                    let mut y = self.base.forward_compute(xc.clone());
                    for l in loras {
                        y = y + l.forward_autocast(x.clone(), xc.clone(), cd);
                    }
                    return self.base.add_bias(y.cast(xd));
                }
                // PEFT applies the active adapters one after the other on the running result;
                // for LoRA that is the sum of their terms.
                let xin = several.iter().fold(x.clone(), |x, a| a.base_input(x));
                let mut y = self.base.forward(xin);
                for a in several {
                    y = a.forward(&self.base, x.clone(), y);
                }
                y
            }
        }
    }

    /// Adds the active adapters' updates (`scaling·A·B` each) into the base weight (PEFT
    /// `merge`, which merges the active adapters in order). Forward output is unchanged up to
    /// float rounding on a dense base, and up to the requantization error on a quantized one
    /// (see [`LoraLinear::merge_report`]).
    ///
    /// # Errors
    /// [`LoraError::State`] if there is no active adapter or the layer is already merged;
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
        if self.adapters.is_empty() {
            return Err(LoraError::State("merge: layer has no adapter".into()));
        }
        if self.is_merged() {
            return Err(LoraError::State("merge: already merged".into()));
        }
        let active = self.indices(&self.active);
        if active.is_empty() {
            return Err(LoraError::State(format!(
                "merge: no active adapter (adapters {:?})",
                self.names
            )));
        }
        let adapters = &self.adapters;
        let stats = self.base.update(|w, b| {
            active
                .iter()
                .try_fold((w, b), |(w, b), &i| adapters[i].merge_into(w, b))
        })?;
        self.merged = self.active.clone();
        Ok(stats)
    }

    /// Subtracts the merged adapters' updates from the base weight (PEFT `unmerge`, in the
    /// reverse order); a quantized base is dequantized, updated and requantized (see
    /// [`LoraLinear::unmerge_report`]).
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
        if !self.is_merged() {
            return Err(LoraError::State("unmerge: layer is not merged".into()));
        }
        let merged = self.indices(&self.merged);
        let adapters = &self.adapters;
        let stats = self.base.update(|w, b| {
            merged
                .iter()
                .rev()
                .try_fold((w, b), |(w, b), &i| adapters[i].unmerge_from(w, b))
        })?;
        self.merged.clear();
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

    /// The LoRA adapter named [`DEFAULT_ADAPTER`], if any (see [`LoraLinear::lora_named`]).
    pub fn adapter(&self) -> Option<&LoraAdapter<B>> {
        self.attached_adapter().and_then(Adapter::as_lora)
    }

    /// The adapter of any method named [`DEFAULT_ADAPTER`], if any (see
    /// [`LoraLinear::adapter_named`]).
    pub fn attached_adapter(&self) -> Option<&Adapter<B>> {
        self.adapter_named(DEFAULT_ADAPTER)
    }

    /// Whether any adapter is attached (merged or not).
    pub fn has_adapter(&self) -> bool {
        !self.adapters.is_empty()
    }

    /// Whether adapters' updates have been added into the base weight.
    pub fn is_merged(&self) -> bool {
        !self.merged.is_empty()
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
    /// layer is merged or has no active adapter, else the base with the active adapters folded
    /// in, in order ([`Adapter::merge_into`]: PEFT `merge`, here in f32 without requantizing).
    ///
    /// # Errors
    /// As [`Adapter::merge_into`] (a method whose update cannot be folded into the base).
    pub fn merged_base(&self) -> Result<BaseTensors<B>, LoraError> {
        let (w, b) = (self.base_weight(), self.bias());
        self.active_list()
            .iter()
            .try_fold((w, b), |(w, b), a| a.merge_into(w, b))
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

    /// Drops every adapter in place (PEFT `_unload_and_optionally_merge`): with `merge`, the
    /// active adapters' updates are merged into the base first (PEFT `merge_and_unload`; a
    /// quantized base is requantized, and should that fail — a non-finite merged weight — the
    /// base is left dense with the exact merged weight); without, a merged layer is unmerged
    /// first (PEFT `unload`), with the same dense fallback. Returns whether the layer had an
    /// adapter.
    ///
    /// # Errors
    /// As [`Adapter::merge_into`] / [`Adapter::unmerge_from`] (a method whose update cannot be
    /// folded into the base); the adapters are then kept.
    pub fn unload_adapter(&mut self, merge: bool) -> Result<bool, LoraError> {
        if self.adapters.is_empty() {
            return Ok(false);
        }
        if merge && !self.is_merged() && !self.active_list().is_empty() {
            self.dense_fallback(Self::merge)?;
        }
        if !merge && self.is_merged() {
            self.dense_fallback(Self::unmerge)?;
        }
        self.adapters.clear();
        self.names.clear();
        self.active.clear();
        self.merged.clear();
        self.row_adapters = None;
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
