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

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

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
}

/// A linear layer with a frozen base and an optional LoRA adapter.
///
/// The base weight is `[d_in, d_out]` f32 (burn `nn::Linear` layout; also GPT-2 Conv1D's), held
/// either dense in `weight` or quantized in `quant` (QLoRA; see [`LoraLinear::quantize`]). `bias`
/// is `[d_out]` f32 and is never quantized. Base and bias are frozen (`require_grad = false`)
/// unless the layer was made trainable as a PEFT `modules_to_save` module with
/// [`LoraLinear::set_base_trainable`]. Code that reads the base weight (export, merging,
/// initialisation from it) must use [`LoraLinear::base_weight`], which dequantizes when needed.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// Dense base weight `[d_in, d_out]` f32 when `quant` is `None`. When the layer is quantized
    /// this is an empty `[0, 0]` frozen placeholder (it keeps its parameter id) and the base
    /// lives in `quant`.
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

    /// The base weight `[d_in, d_out]` f32: `weight`, or the dequantized `quant` (bit-equal to
    /// bitsandbytes' dequantization of the same codes). Includes the adapter's update only when
    /// the layer is merged.
    pub fn base_weight(&self) -> Tensor<B, 2> {
        match &self.quant {
            Some(q) => q.dequantize_weight_in_out(),
            None => self.weight.val(),
        }
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
        let (q, stats) = QuantBase::quantize(self.weight.val(), kind)?;
        let device = self.weight.device();
        self.weight = Param::initialized(self.weight.id, Tensor::zeros([0, 0], &device))
            .set_require_grad(false);
        self.quant = Some(q);
        Ok(stats)
    }

    /// Turns a quantized base back into a dense f32 `weight` (the dequantized values; frozen).
    /// A no-op on a dense layer. Use it to export merged f32 weights or to train the base.
    pub fn dequantize(&mut self) {
        if let Some(q) = self.quant.take() {
            let w = q.dequantize_weight_in_out();
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
    /// quantized base is dequantized first when made trainable (only a dense f32 weight trains).
    pub fn set_base_trainable(&mut self, trainable: bool) {
        if trainable {
            self.dequantize();
        }
        self.weight = self.weight.clone().set_require_grad(trainable);
        self.bias = self.bias.take().map(|b| b.set_require_grad(trainable));
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x·W + b + scaling·B(A(dropout(x)))`; the adapter
    /// term is skipped when merged or absent. A quantized `W` is dequantized for the call (a
    /// transient f32 copy of the base; the dense `ΔW` is never built); no gradient reaches the
    /// codes or their scales.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
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
                let w = self.weight.val().detach() + delta;
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
        if self.lora.is_some() && !self.merged && self.merge().is_err() {
            // Only requantization can fail here: merge densely instead.
            self.dequantize();
            let _ = self.merge();
        }
        self.lora = None;
        self.merged = false;
        self
    }

    /// Converts to burn's `nn::Linear` (same `[d_in, d_out]` layout), merging first; a quantized
    /// base is dequantized to f32.
    pub fn into_linear(self) -> burn::nn::Linear<B> {
        let mut s = self.merge_and_unload();
        s.dequantize();
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
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written, given
/// mode 0644 (Unix), fsynced and renamed over `path` (then the directory is fsynced, best effort),
/// so that a crash leaves either the old file or the complete new one, never half a file. Every
/// file this workspace writes (adapters, configs, checkpoints, merged models) goes through it.
///
/// # Errors
/// The I/O error, its message prefixed with `path`.
pub fn atomic_write(path: impl AsRef<std::path::Path>, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let ctx = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(ctx)?;
    tmp.write_all(bytes).map_err(ctx)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; give the result ordinary file permissions.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(ctx)?;
    }
    tmp.as_file().sync_all().map_err(ctx)?;
    tmp.persist(path).map_err(|e| ctx(e.error))?;
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The values of a safetensors tensor as f32: F32 as is, F16 and BF16 widened exactly.
/// `None` for any other dtype (the caller names the file and key in its error). Shared by every
/// reader of checkpoints and adapter files in this workspace.
pub fn safetensors_f32(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}
