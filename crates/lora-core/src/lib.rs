//! # lora-core — the LoRA linear layer on burn
//!
//! A frozen base linear map `y = x·W + b` (W stored `[d_in, d_out]`, burn's and GPT-2 Conv1D's
//! layout) with an optional low-rank adapter beside it:
//!
//! ```text
//! y = x·W + b + scaling · B(A(dropout(x)))        (Hu et al. 2021, "LoRA", §4.1)
//! ```
//!
//! computed in factored form (`(x·A)·B`), never by building the dense `ΔW = A·B` in the forward
//! pass. Scaling is `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA (Kalajdzievski 2023).
//! Semantics follow Hugging Face PEFT's `peft/tuners/lora/layer.py` (`Linear.forward`,
//! `update_layer`, `reset_lora_parameters`, `merge`, `unmerge`).
//!
//! Layout note: PEFT stores `lora_A.weight` as `[r, d_in]` and `lora_B.weight` as `[d_out, r]`
//! (PyTorch `nn.Linear` layout). Here A is `[d_in, r]` and B is `[r, d_out]` so the forward is two
//! plain matmuls; `lora-peft` transposes when it reads and writes PEFT files.
//!
//! QLoRA (Dettmers et al. 2023): the frozen base of any [`LoraLinear`] can be quantized in place
//! ([`LoraLinear::quantize`] with a [`QuantKind`]: NF4, NF4 with double-quantized statistics, or
//! LLM.int8 vector-wise). The codes stay packed on the device (crate `lora-quant`, re-exported as
//! [`quant`]); the forward pass dequantizes the base weight and the adapter trains beside it
//! exactly as on a dense base. Merging into a quantized base requantizes, as PEFT does for
//! bitsandbytes layers.
//!
//! Mixed precision (Micikevicius et al. 2018, "Mixed Precision Training", §3; PyTorch
//! `torch.autocast`): [`LoraLinear::set_compute_dtype`] (one layer) and
//! [`NamedLinears::set_compute_dtype`] (a whole model) store the frozen base in bf16 or f16 and
//! run the layer's matmuls in that dtype, while the LoRA factors stay f32 *master weights*, so
//! gradients and AdamW state are f32. Each layer takes and returns f32 activations; embeddings,
//! norms, softmax, attention scores and the loss stay f32. [`Precision`] parses the
//! `--precision f32|bf16|f16` flag of the examples.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Element, FloatDType, Tensor};

pub use lora_quant as quant;
pub use lora_quant::{QuantBase, QuantError, QuantKind, QuantStats};

/// Errors of the LoRA layer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoraError {
    /// `r` must be at least 1 (PEFT raises `ValueError` for `r <= 0`).
    #[error("invalid LoRA rank r = {0}: r must be a positive integer")]
    ZeroRank(usize),
    /// `lora_dropout` must be a probability in `[0, 1)`.
    #[error("invalid lora_dropout = {0}: expected a probability in [0, 1)")]
    BadDropout(f64),
    /// A tensor had a shape other than the one the layer needs.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which tensor (for example `lora_A` of `transformer.h.0.attn.c_attn`).
        what: String,
        /// The shape the layer needs.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// Merge asked of a layer without an adapter, or unmerge of a layer that is not merged;
    /// quantizing a layer that is already quantized or whose base is trainable.
    #[error("{0}")]
    State(String),
    /// Quantizing (or requantizing, on merge) the base weight failed: a non-finite value, a bad
    /// block size, unreadable tensor data.
    #[error("quantization: {0}")]
    Quant(#[from] QuantError),
    /// The backend cannot hold tensors of the requested compute dtype (for example bf16 or f16
    /// on burn's NdArray CPU backend, whose `dtype_usage` lists neither).
    #[error(
        "compute dtype {dtype:?} is not supported by the {backend} backend; use f32 there, or \
         a GPU backend (cuda, wgpu) for bf16/f16"
    )]
    UnsupportedDtype {
        /// The dtype asked for.
        dtype: FloatDType,
        /// The backend's name (`Backend::name`).
        backend: String,
    },
    /// A `--precision` value other than `f32`, `bf16` and `f16`.
    #[error("unknown precision {0:?}: expected one of \"f32\", \"bf16\", \"f16\"")]
    UnknownPrecision(String),
}

/// The compute precision of the frozen bases' matmuls (the `--precision` flag). The LoRA
/// factors, their gradients and the optimizer state are f32 in every case (master weights,
/// Micikevicius et al. 2018 §3); only the frozen base weight and the layer's matmuls change
/// dtype, as under PyTorch `torch.autocast(dtype=torch.bfloat16)` with PEFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything f32 (the default; bit-identical to a model that was never switched).
    #[default]
    F32,
    /// bfloat16 base and matmuls (8-bit exponent: f32's range, 8 significant bits).
    Bf16,
    /// IEEE half base and matmuls (5-bit exponent, 11 significant bits; overflows above
    /// 65504, so activations or gradients can become non-finite where bf16 would not).
    F16,
}

impl Precision {
    /// The burn dtype: `F32`, `BF16` or `F16`.
    pub fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
            Self::F16 => FloatDType::F16,
        }
    }

    /// `"f32"`, `"bf16"` or `"f16"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Precision {
    /// [`Precision::name`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = LoraError;

    /// `"f32"`/`"fp32"`, `"bf16"`, `"f16"`/`"fp16"`, case-insensitive.
    ///
    /// # Errors
    /// [`LoraError::UnknownPrecision`] naming the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" | "fp16" => Ok(Self::F16),
            _ => Err(LoraError::UnknownPrecision(s.to_string())),
        }
    }
}

/// The dtype of the backend's default float element (`B::FloatElem`; F32 for `NdArray<f32>`
/// and `Cuda<f32, i32>`): the dtype of master weights, activations between layers and the loss.
pub fn master_dtype<B: Backend>() -> FloatDType {
    FloatDType::from(<B::FloatElem as Element>::dtype())
}

/// How the adapter factors are initialised (PEFT's `init_lora_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraInit {
    /// `init_lora_weights=True` (PEFT default): A ~ kaiming-uniform(a=√5) of the PyTorch
    /// `[r, d_in]` weight, i.e. U(−1/√d_in, 1/√d_in); B = 0. The adapter starts as a no-op.
    #[default]
    Default,
    /// `init_lora_weights="gaussian"`: A ~ N(0, std = 1/r) (PEFT `nn.init.normal_(std=1/r)`);
    /// B = 0.
    Gaussian,
    /// `init_lora_weights=False`: no zeroing. A as in `Default`, B ~ U(−1/√r, 1/√r) (PyTorch's
    /// own `nn.Linear` init of the `[d_out, r]` weight). Only useful for tests.
    NoZero,
}

/// Hyper-parameters of one adapter (a subset of PEFT's `LoraConfig`, per layer).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraLayerConfig {
    /// Rank `r` of the update (PEFT default 8). Must be ≥ 1.
    pub r: usize,
    /// `lora_alpha` (PEFT default 8).
    pub lora_alpha: f64,
    /// Dropout probability on the LoRA path only, in training only (PEFT default 0.0).
    pub lora_dropout: f64,
    /// rsLoRA: `scaling = lora_alpha / sqrt(r)` instead of `lora_alpha / r`.
    pub use_rslora: bool,
    /// Initialisation of A and B.
    pub init: LoraInit,
}

impl Default for LoraLayerConfig {
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            use_rslora: false,
            init: LoraInit::Default,
        }
    }
}

impl LoraLayerConfig {
    /// The scale applied to `B(A(x))`: `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA.
    ///
    /// # Errors
    /// [`LoraError::ZeroRank`] when `r == 0`.
    pub fn scaling(&self) -> Result<f64, LoraError> {
        scaling(self.r, self.lora_alpha, self.use_rslora)
    }

    /// Checks `r ≥ 1` and `0 ≤ lora_dropout < 1`.
    ///
    /// # Errors
    /// [`LoraError::ZeroRank`], [`LoraError::BadDropout`].
    pub fn validate(&self) -> Result<(), LoraError> {
        if self.r == 0 {
            return Err(LoraError::ZeroRank(self.r));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(LoraError::BadDropout(self.lora_dropout));
        }
        Ok(())
    }
}

/// `lora_alpha / r`, or `lora_alpha / sqrt(r)` when `use_rslora` (PEFT `LoraLayer.update_layer`).
///
/// # Errors
/// [`LoraError::ZeroRank`] when `r == 0`.
pub fn scaling(r: usize, lora_alpha: f64, use_rslora: bool) -> Result<f64, LoraError> {
    if r == 0 {
        return Err(LoraError::ZeroRank(r));
    }
    Ok(if use_rslora {
        lora_alpha / (r as f64).sqrt()
    } else {
        lora_alpha / r as f64
    })
}

/// The trainable low-rank pair of one layer.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// A, `[d_in, r]`, f32, trainable (PEFT `lora_A.weight` transposed).
    pub lora_a: Param<Tensor<B, 2>>,
    /// B, `[r, d_out]`, f32, trainable (PEFT `lora_B.weight` transposed).
    pub lora_b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter's input; active only on an autodiff backend.
    pub dropout: Dropout,
    /// `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    pub scaling: f64,
    /// Rank.
    pub r: usize,
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter for a `[d_in, d_out]` layer, initialised per `config.init` (see
    /// [`LoraInit`]) with the backend's random generator (seed it with `B::seed`).
    ///
    /// # Errors
    /// [`LoraError::ZeroRank`], [`LoraError::BadDropout`].
    pub fn new(
        d_in: usize,
        d_out: usize,
        config: &LoraLayerConfig,
        device: &B::Device,
    ) -> Result<Self, LoraError> {
        config.validate()?;
        let r = config.r;
        let bound_a = 1.0 / (d_in as f64).sqrt();
        let a = match config.init {
            LoraInit::Gaussian => {
                Tensor::random([d_in, r], Distribution::Normal(0.0, 1.0 / r as f64), device)
            }
            _ => Tensor::random([d_in, r], Distribution::Uniform(-bound_a, bound_a), device),
        };
        let b = match config.init {
            LoraInit::NoZero => {
                let bound_b = 1.0 / (r as f64).sqrt();
                Tensor::random([r, d_out], Distribution::Uniform(-bound_b, bound_b), device)
            }
            _ => Tensor::zeros([r, d_out], device),
        };
        Ok(Self::from_tensors(a, b, config)?)
    }

    /// An adapter from given factors: `a` `[d_in, r]`, `b` `[r, d_out]`.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when the inner dimensions differ from `config.r`;
    /// [`LoraError::ZeroRank`], [`LoraError::BadDropout`].
    pub fn from_tensors(
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        config: &LoraLayerConfig,
    ) -> Result<Self, LoraError> {
        config.validate()?;
        let [_, ra] = a.dims();
        let [rb, d_out] = b.dims();
        if ra != config.r || rb != config.r {
            return Err(LoraError::Shape {
                what: "lora_A/lora_B rank".into(),
                expected: vec![config.r, d_out],
                got: vec![rb, d_out],
            });
        }
        Ok(Self {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            dropout: DropoutConfig::new(config.lora_dropout).init(),
            scaling: config.scaling()?,
            r: config.r,
        })
    }

    /// A, `[d_in, r]` (f32; PEFT's `lora_A.weight` transposed).
    pub fn lora_a(&self) -> Tensor<B, 2> {
        self.lora_a.val()
    }

    /// B, `[r, d_out]` (f32; PEFT's `lora_B.weight` transposed).
    pub fn lora_b(&self) -> Tensor<B, 2> {
        self.lora_b.val()
    }

    /// The rank `r`.
    pub fn r(&self) -> usize {
        self.r
    }

    /// `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    /// The dropout probability on the adapter's input (`lora_dropout`).
    pub fn dropout_prob(&self) -> f64 {
        self.dropout.prob
    }

    /// The dense update `scaling · A·B`, `[d_in, d_out]` — for merging only, never in forward.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_a
            .val()
            .matmul(self.lora_b.val())
            .mul_scalar(self.scaling)
    }

    /// `scaling · (dropout(x)·A)·B` for `x` `[..., d_in]` → `[..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = self.dropout.forward(x);
        let h = x.matmul(self.lora_a.val().unsqueeze::<D>());
        h.matmul(self.lora_b.val().unsqueeze::<D>())
            .mul_scalar(self.scaling)
    }

    /// `scaling · (x·A)·B` with **no dropout** (apply it before) for an `x` `[..., d_in]` that
    /// is already in the compute dtype `dtype` (bf16/f16): A and B are cast to `dtype` for the
    /// two matmuls only, so the result `[..., d_out]` is in `dtype` while the parameters stay
    /// f32 and their gradients come back f32 through the casts (burn-autodiff `float_cast`
    /// casts the gradient to the input's dtype). PyTorch autocast does the same with PEFT's
    /// f32 `lora_A`/`lora_B` inside a bf16 autocast region.
    pub fn forward_cast<const D: usize>(&self, x: Tensor<B, D>, dtype: FloatDType) -> Tensor<B, D> {
        let a = self.lora_a.val().cast(dtype);
        let b = self.lora_b.val().cast(dtype);
        x.matmul(a.unsqueeze::<D>())
            .matmul(b.unsqueeze::<D>())
            .mul_scalar(self.scaling)
    }
}

/// A linear layer with a frozen base and an optional LoRA adapter.
///
/// The base weight is `[d_in, d_out]` f32 (burn `nn::Linear` layout; also GPT-2 Conv1D's), held
/// either dense in `weight` or quantized in `quant` (QLoRA; see [`LoraLinear::quantize`]). `bias`
/// is `[d_out]` f32 and is never quantized. Base and bias are frozen (`require_grad = false`)
/// unless the layer was made trainable as a PEFT `modules_to_save` module with
/// [`LoraLinear::set_base_trainable`]. Code that reads the base weight (export, merging,
/// initialisation from it) must use [`LoraLinear::base_weight`], which dequantizes when needed.
///
/// Compute dtype: the dtype of `weight` (also of the empty placeholder of a quantized layer) is
/// the dtype the layer's matmuls run in; it is the backend's float dtype (f32) unless
/// [`LoraLinear::set_compute_dtype`] changed it (mixed precision).
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// Dense base weight `[d_in, d_out]` when `quant` is `None`, f32 or the compute dtype (bf16,
    /// f16) set by [`LoraLinear::set_compute_dtype`]. When the layer is quantized this is an
    /// empty `[0, 0]` frozen placeholder in the compute dtype (it keeps its parameter id) and
    /// the base lives in `quant`.
    pub weight: Param<Tensor<B, 2>>,
    /// The frozen quantized base (NF4 or int8 codes packed on the device), or `None` for a dense
    /// base in `weight`.
    pub quant: Option<QuantBase<B>>,
    /// Optional base bias `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The adapter, if one is attached.
    pub lora: Option<LoraAdapter<B>>,
    /// Whether the adapter's update has been added into `weight` (then forward skips it).
    pub merged: bool,
    /// True when the Hugging Face checkpoint stores this weight `[d_in, d_out]` (GPT-2 Conv1D,
    /// PEFT's `fan_in_fan_out=True`); false for `nn.Linear` (`[d_out, d_in]`). Used on export.
    pub fan_in_fan_out: bool,
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
            lora: None,
            merged: false,
            fan_in_fan_out,
        })
    }

    /// `(d_in, d_out)`, of the dense or the quantized base.
    pub fn dims(&self) -> (usize, usize) {
        match &self.quant {
            Some(q) => q.dims(),
            None => {
                let [i, o] = self.weight.dims();
                (i, o)
            }
        }
    }

    /// Whether the base is quantized (`quant` is `Some`).
    pub fn is_quantized(&self) -> bool {
        self.quant.is_some()
    }

    /// The base weight `[d_in, d_out]` in the backend's float dtype (f32, see
    /// [`master_dtype`]): `weight` (widened exactly when it is stored in bf16/f16), or the
    /// dequantized `quant` (bit-equal to bitsandbytes' dequantization of the same codes).
    /// Includes the adapter's update only when the layer is merged.
    pub fn base_weight(&self) -> Tensor<B, 2> {
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

    /// The dtype the layer's matmuls run in: the dtype of `weight` (F32 unless changed by
    /// [`LoraLinear::set_compute_dtype`]).
    pub fn compute_dtype(&self) -> FloatDType {
        FloatDType::from(self.weight.dtype())
    }

    /// Sets the compute dtype of the frozen base (mixed precision; Micikevicius et al. 2018
    /// §3, PyTorch autocast): a dense `weight` is stored in `dtype` (rounded to nearest even
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
            // `empty`, not `zeros`: filling 0 elements launches a kernel with a grid of 0 blocks,
            // which CUDA rejects (CUDA_ERROR_INVALID_VALUE) and which leaves burn's CUDA server
            // unusable (H200, 2026-11-29; docs/gpu_notes.md).
            Some(_) => Tensor::empty([0, 0], (&device, DType::from(dtype))),
            None => self.weight.val().cast(dtype),
        };
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
        Ok(())
    }

    /// Quantizes the frozen base weight in place (QLoRA: quantize the base, then attach
    /// adapters; an adapter already attached is kept and still trains). `weight` becomes an
    /// empty placeholder and the codes go to `quant`; the bias stays f32. Returns the
    /// reconstruction error of the weight (max abs, RMS) and its bytes in f32 and quantized
    /// (device storage).
    ///
    /// # Errors
    /// [`LoraError::State`] if the layer is already quantized or its base weight is trainable
    /// (a `modules_to_save` layer); [`LoraError::Quant`] for a bad block size or a non-finite
    /// weight (the layer is then unchanged).
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
        let (q, stats) = QuantBase::quantize(self.base_weight(), kind)?;
        let device = self.weight.device();
        // The placeholder keeps the compute dtype (f32 unless set_compute_dtype changed it).
        let cd = self.compute_dtype();
        // `empty`, not `zeros`: a 0-element fill is a 0-block kernel launch, an error on CUDA.
        let placeholder = if cd == master_dtype::<B>() {
            Tensor::empty([0, 0], &device)
        } else {
            Tensor::empty([0, 0], (&device, DType::from(cd)))
        };
        self.weight = Param::initialized(self.weight.id, placeholder).set_require_grad(false);
        self.quant = Some(q);
        Ok(stats)
    }

    /// Turns a quantized base back into a dense `weight` (the dequantized values; frozen), in
    /// the compute dtype (f32 unless [`LoraLinear::set_compute_dtype`] changed it). A no-op on
    /// a dense layer. Use it to export merged f32 weights or to train the base.
    pub fn dequantize(&mut self) {
        let cd = self.compute_dtype();
        if let Some(q) = self.quant.take() {
            let w = q.dequantize_weight_in_out_as(cd);
            self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
        }
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
        self.lora = Some(LoraAdapter::new(i, o, config, device)?);
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
        self.lora = Some(LoraAdapter::from_tensors(a, b, config)?);
        Ok(())
    }

    /// Makes the base weight and bias trainable (PEFT `modules_to_save`) or frozen again. A
    /// quantized base is dequantized first when made trainable, and a base stored in bf16/f16
    /// is widened back to the backend's float dtype (only a dense f32 master weight trains;
    /// the bf16 rounding stays).
    pub fn set_base_trainable(&mut self, trainable: bool) {
        if trainable {
            self.dequantize();
            if self.compute_dtype() != master_dtype::<B>() {
                let w = self.base_weight();
                self.weight = Param::initialized(self.weight.id, w);
            }
        }
        self.weight = self.weight.clone().set_require_grad(trainable);
        self.bias = self.bias.take().map(|b| b.set_require_grad(trainable));
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
        let cd = self.weight.dtype();
        if cd != x.dtype() {
            return self.forward_mixed(x, FloatDType::from(cd));
        }
        let base = burn::tensor::module::linear(
            x.clone(),
            self.base_weight(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match (&self.lora, self.merged) {
            (Some(l), false) => base + l.forward(x),
            _ => base,
        }
    }

    /// The forward of a layer whose compute dtype `cd` differs from `x`'s (see `forward`).
    fn forward_mixed<const D: usize>(&self, x: Tensor<B, D>, cd: FloatDType) -> Tensor<B, D> {
        let xd = FloatDType::from(x.dtype());
        let xc = x.clone().cast(cd);
        let w = match &self.quant {
            Some(q) => q.dequantize_weight_in_out_as(cd),
            None => self.weight.val(),
        };
        let mut y = burn::tensor::module::linear(xc.clone(), w, None);
        if let (Some(l), false) = (&self.lora, self.merged) {
            // Dropout in the input's dtype (its mask is drawn there), then cast; without active
            // dropout the cast input of the base is reused.
            let h = if l.dropout.prob == 0.0 || !B::ad_enabled(&x.device()) {
                xc
            } else {
                l.dropout.forward(x).cast(cd)
            };
            y = y + l.forward_cast(h, cd);
        }
        let y = y.cast(xd);
        match &self.bias {
            Some(b) => {
                let b = b.val();
                let b = if b.dtype() == DType::from(xd) {
                    b
                } else {
                    b.cast(xd)
                };
                y + b.unsqueeze::<D>()
            }
            None => y,
        }
    }

    /// Adds `scaling·A·B` into the base weight (PEFT `merge`). Forward output is unchanged up to
    /// float rounding on a dense base, and up to the requantization error on a quantized one
    /// (see [`LoraLinear::merge_report`]).
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
        let delta = match (&self.lora, self.merged) {
            (None, _) => return Err(LoraError::State("merge: layer has no adapter".into())),
            (Some(_), true) => return Err(LoraError::State("merge: already merged".into())),
            (Some(l), false) => l.delta_weight().detach(),
        };
        let stats = self.shift_base(delta)?;
        self.merged = true;
        Ok(stats)
    }

    /// Subtracts `scaling·A·B` from the base weight (PEFT `unmerge`); a quantized base is
    /// dequantized, updated and requantized (see [`LoraLinear::unmerge_report`]).
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
        let delta = match (&self.lora, self.merged) {
            (Some(l), true) => l.delta_weight().detach(),
            _ => return Err(LoraError::State("unmerge: layer is not merged".into())),
        };
        let stats = self.shift_base(delta.neg())?;
        self.merged = false;
        Ok(stats)
    }

    /// Adds `delta` `[d_in, d_out]` to the base: exactly for a dense base, with requantization
    /// (same scheme) for a quantized one. Leaves the layer unchanged on error.
    fn shift_base(&mut self, delta: Tensor<B, 2>) -> Result<Option<QuantStats>, LoraError> {
        match &self.quant {
            None => {
                let grad = self.weight.is_require_grad();
                let cd = self.compute_dtype();
                // In the backend's float dtype, then back to the compute dtype (bf16/f16 bases
                // are rounded once more, as PEFT's merge into a bf16 weight is).
                let w = self.base_weight().detach() + delta;
                let w = if cd == master_dtype::<B>() {
                    w
                } else {
                    w.cast(cd)
                };
                self.weight = Param::initialized(self.weight.id, w).set_require_grad(grad);
                Ok(None)
            }
            Some(q) => {
                let w = q.dequantize_weight_in_out().detach() + delta;
                let (nq, stats) = QuantBase::quantize(w, &q.kind())?;
                self.quant = Some(nq);
                Ok(Some(stats))
            }
        }
    }

    /// Merges the adapter (if any, and not merged yet) and drops it, leaving a plain frozen
    /// linear layer (PEFT `merge_and_unload`). A quantized base stays quantized (requantized
    /// with the update, as PEFT does for bitsandbytes layers); should requantization fail (a
    /// non-finite merged weight), the base is left dense with the exact merged weight.
    pub fn merge_and_unload(mut self) -> Self {
        self.unload_adapter(true);
        self
    }

    /// The attached adapter, if any.
    pub fn adapter(&self) -> Option<&LoraAdapter<B>> {
        self.lora.as_ref()
    }

    /// Whether an adapter is attached (merged or not).
    pub fn has_adapter(&self) -> bool {
        self.lora.is_some()
    }

    /// Whether the adapter's update has been added into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// True when the Hugging Face checkpoint stores this weight `[d_in, d_out]` (GPT-2 Conv1D,
    /// PEFT's `fan_in_fan_out=True`); false for `nn.Linear` (`[d_out, d_in]`).
    pub fn fan_in_fan_out(&self) -> bool {
        self.fan_in_fan_out
    }

    /// The base bias `[d_out]` (f32), if the layer has one.
    pub fn bias(&self) -> Option<Tensor<B, 1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    /// Whether the base weight trains (PEFT `modules_to_save`; see
    /// [`LoraLinear::set_base_trainable`]).
    pub fn is_base_trainable(&self) -> bool {
        self.weight.is_require_grad()
    }

    /// The quantized base, or `None` for a dense one.
    pub fn quant_base(&self) -> Option<&QuantBase<B>> {
        self.quant.as_ref()
    }

    /// The dense f32 weight to export, `[d_in, d_out]`: [`LoraLinear::base_weight`] when the
    /// layer is merged or has no adapter, else base + `scaling·A·B` (PEFT `merge`, in f32
    /// without requantizing).
    pub fn merged_weight(&self) -> Tensor<B, 2> {
        match (&self.lora, self.merged) {
            (Some(a), false) => self.base_weight() + a.delta_weight(),
            _ => self.base_weight(),
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
        self.set_base_trainable(true);
        Ok(())
    }

    /// Drops the adapter in place (PEFT `_unload_and_optionally_merge`): with `merge`, its update
    /// is merged into the base first (PEFT `merge_and_unload`; a quantized base is requantized,
    /// and should that fail — a non-finite merged weight — the base is left dense with the exact
    /// merged weight); without, a merged layer is unmerged first (PEFT `unload`), with the same
    /// dense fallback. Returns whether the layer had an adapter.
    pub fn unload_adapter(&mut self, merge: bool) -> bool {
        if self.lora.is_none() {
            return false;
        }
        if merge && !self.merged && self.merge().is_err() {
            self.dequantize();
            let _ = self.merge();
        }
        if !merge && self.merged && self.unmerge().is_err() {
            self.dequantize();
            let _ = self.unmerge();
        }
        self.lora = None;
        self.merged = false;
        true
    }

    /// Converts to burn's `nn::Linear` (same `[d_in, d_out]` layout), merging first; a quantized
    /// base is dequantized, and a bf16/f16 base widened, to f32 (the backend's float dtype).
    pub fn into_linear(self) -> burn::nn::Linear<B> {
        let mut s = self.merge_and_unload();
        s.dequantize();
        if s.compute_dtype() != master_dtype::<B>() {
            let grad = s.weight.is_require_grad();
            let w = s.base_weight();
            s.weight = Param::initialized(s.weight.id, w).set_require_grad(grad);
        }
        burn::nn::Linear {
            weight: s.weight,
            bias: s.bias,
        }
    }
}

/// Counts parameters as PEFT's `print_trainable_parameters` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamCount {
    /// Elements of parameters with `require_grad` (LoRA factors, `modules_to_save`).
    pub trainable: usize,
    /// Elements of all parameters.
    pub all: usize,
}

impl ParamCount {
    /// `trainable / all · 100`.
    pub fn percent(&self) -> f64 {
        if self.all == 0 {
            0.0
        } else {
            100.0 * self.trainable as f64 / self.all as f64
        }
    }
}

impl std::fmt::Display for ParamCount {
    /// PEFT's line: `trainable params: 1,234 || all params: 5,678 || trainable%: 21.7324`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(self.trainable),
            thousands(self.all),
            self.percent()
        )
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Counter {
    count: ParamCount,
    /// `(field, container type)` of the modules being visited (burn's `enter_module`).
    path: Vec<(String, String)>,
}

const QUANT_CONTAINERS: [(&str, usize); 2] = [
    ("Struct:QuantLinear", lora_quant::NIBBLES_PER_WORD),
    ("Struct:Int8Linear", lora_quant::BYTES_PER_WORD),
];

impl Counter {
    fn in_quantized_base(&self) -> bool {
        self.path
            .iter()
            .any(|(_, c)| QUANT_CONTAINERS.iter().any(|(q, _)| q == c))
    }
}

impl<B: Backend> ModuleVisitor<B> for Counter {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.in_quantized_base() {
            // Block/row absmax: quantization state, not parameters (as in PEFT, where they live
            // in bitsandbytes' `quant_state`).
            return;
        }
        let n = param.shape().num_elements();
        self.count.all += n;
        if param.is_require_grad() {
            self.count.trainable += n;
        }
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, burn::tensor::Int>>) {
        // The packed code words of a quantized weight count as the values they hold.
        if let Some((field, container)) = self.path.last() {
            if field == "words" {
                if let Some((_, per)) = QUANT_CONTAINERS.iter().find(|(c, _)| c == container) {
                    self.count.all += param.shape().num_elements() * per;
                }
            }
        }
    }
}

/// Trainable and total parameter counts of any module (PEFT `get_nb_trainable_parameters`).
/// "Trainable" is `require_grad`, which only an autodiff backend tracks: count the training model.
/// A quantized base weight counts its values (PEFT counts a 4-bit `Params4bit` as twice its
/// packed bytes), rounded up to whole storage words (8 NF4 or 4 int8 codes); its absmax
/// statistics are not counted.
pub fn count_parameters<B: Backend, M: Module<B>>(module: &M) -> ParamCount {
    let mut c = Counter {
        count: ParamCount::default(),
        path: Vec::new(),
    };
    module.visit(&mut c);
    c.count
}

/// A model whose linear layers can carry adapters, addressed by their Hugging Face module names
/// (for example `transformer.h.0.attn.c_attn` or `model.layers.3.self_attn.q_proj`).
/// `lora-peft` uses it to apply configs and to save and load adapter files.
pub trait NamedLinears<B: Backend> {
    /// Calls `f(name, layer)` for every linear layer, in model order.
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>));
    /// Calls `f(name, layer)` for every linear layer, mutably, in model order.
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>));
    /// The names of all linear layers, in model order.
    fn linear_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        self.visit_linears(&mut |n, _| v.push(n.to_string()));
        v
    }

    /// Mixed precision for the whole model: [`LoraLinear::set_compute_dtype`] on every linear
    /// layer whose base is frozen. Layers with a trainable base (PEFT `modules_to_save`, such
    /// as a classifier's `score`) keep their f32 master weight and compute in f32; they are
    /// listed in the report. Everything outside the linear layers (embeddings, norms, softmax,
    /// attention scores, the loss) stays f32, as under PyTorch autocast, where those ops run in
    /// f32 (Micikevicius et al. 2018 §3). `Precision::F32.dtype()` switches a model back.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedDtype`] when the backend cannot hold `dtype`, checked on the
    /// first layer before anything changes.
    fn set_compute_dtype(&mut self, dtype: FloatDType) -> Result<PrecisionReport, LoraError> {
        let mut first_err = None;
        let mut checked = false;
        self.visit_linears(&mut |_, l| {
            if !checked {
                checked = true;
                let device = l.weight.device();
                if !B::supports_dtype(&device, dtype.into()) {
                    first_err = Some(LoraError::UnsupportedDtype {
                        dtype,
                        backend: B::name(&device),
                    });
                }
            }
        });
        if let Some(e) = first_err {
            return Err(e);
        }
        let mut report = PrecisionReport {
            dtype,
            ..PrecisionReport::default()
        };
        let mut err = None;
        self.visit_linears_mut(&mut |name, l| {
            if err.is_some() {
                return;
            }
            if l.weight.is_require_grad() {
                report.kept_master.push(name.to_string());
                return;
            }
            match l.set_compute_dtype(dtype) {
                Ok(()) => report.switched.push(name.to_string()),
                Err(e) => err = Some(LoraError::State(format!("{name}: {e}"))),
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// What [`NamedLinears::set_compute_dtype`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionReport {
    /// The compute dtype asked for.
    pub dtype: FloatDType,
    /// Layers now computing in `dtype` (module names, model order).
    pub switched: Vec<String>,
    /// Layers with a trainable base (`modules_to_save`) left in f32.
    pub kept_master: Vec<String>,
}

impl Default for PrecisionReport {
    fn default() -> Self {
        Self {
            dtype: FloatDType::F32,
            switched: Vec::new(),
            kept_master: Vec::new(),
        }
    }
}

impl std::fmt::Display for PrecisionReport {
    /// `compute dtype BF16 on 210 linear layers (kept f32: ["score"])`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "compute dtype {:?} on {} linear layers (kept f32: {:?})",
            self.dtype,
            self.switched.len(),
            self.kept_master
        )
    }
}

/// Atomic writes and safetensors reading live in `lora-io`; re-exported for existing callers.
pub use lora_io::{atomic_write, f32_values as safetensors_f32};
