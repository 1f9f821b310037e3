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

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

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
    /// Merge asked of a layer without an adapter, or unmerge of a layer that is not merged.
    #[error("{0}")]
    State(String),
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
/// `weight` is `[d_in, d_out]` f32 (burn `nn::Linear` layout; also GPT-2 Conv1D's). `bias` is
/// `[d_out]`. Both are frozen (`require_grad = false`) unless the layer was made trainable as a
/// PEFT `modules_to_save` module with [`LoraLinear::set_base_trainable`].
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// Base weight `[d_in, d_out]`.
    pub weight: Param<Tensor<B, 2>>,
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
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            lora: None,
            merged: false,
            fan_in_fan_out,
        })
    }

    /// `(d_in, d_out)`.
    pub fn dims(&self) -> (usize, usize) {
        let [i, o] = self.weight.dims();
        (i, o)
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

    /// Makes the base weight and bias trainable (PEFT `modules_to_save`) or frozen again.
    pub fn set_base_trainable(&mut self, trainable: bool) {
        self.weight = self.weight.clone().set_require_grad(trainable);
        self.bias = self.bias.take().map(|b| b.set_require_grad(trainable));
    }

    /// `x` `[..., d_in]` → `[..., d_out]`: `x·W + b + scaling·B(A(dropout(x)))`; the adapter
    /// term is skipped when merged or absent.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let base = burn::tensor::module::linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match (&self.lora, self.merged) {
            (Some(l), false) => base + l.forward(x),
            _ => base,
        }
    }

    /// Adds `scaling·A·B` into the base weight (PEFT `merge`). Forward output is unchanged up to
    /// float rounding.
    ///
    /// # Errors
    /// [`LoraError::State`] if there is no adapter or it is already merged.
    pub fn merge(&mut self) -> Result<(), LoraError> {
        let delta = match (&self.lora, self.merged) {
            (None, _) => return Err(LoraError::State("merge: layer has no adapter".into())),
            (Some(_), true) => return Err(LoraError::State("merge: already merged".into())),
            (Some(l), false) => l.delta_weight(),
        };
        let grad = self.weight.is_require_grad();
        let w = self.weight.val().detach() + delta.detach();
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(grad);
        self.merged = true;
        Ok(())
    }

    /// Subtracts `scaling·A·B` from the base weight (PEFT `unmerge`).
    ///
    /// # Errors
    /// [`LoraError::State`] if the layer is not merged.
    pub fn unmerge(&mut self) -> Result<(), LoraError> {
        let delta = match (&self.lora, self.merged) {
            (Some(l), true) => l.delta_weight(),
            _ => return Err(LoraError::State("unmerge: layer is not merged".into())),
        };
        let grad = self.weight.is_require_grad();
        let w = self.weight.val().detach() - delta.detach();
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(grad);
        self.merged = false;
        Ok(())
    }

    /// Merges the adapter (if any, and not merged yet) and drops it, leaving a plain frozen
    /// linear layer (PEFT `merge_and_unload`).
    pub fn merge_and_unload(mut self) -> Self {
        if self.lora.is_some() && !self.merged {
            // Cannot fail: there is an adapter and it is not merged.
            let _ = self.merge();
        }
        self.lora = None;
        self.merged = false;
        self
    }

    /// Converts to burn's `nn::Linear` (same `[d_in, d_out]` layout), merging first.
    pub fn into_linear(self) -> burn::nn::Linear<B> {
        let s = self.merge_and_unload();
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
}

impl<B: Backend> ModuleVisitor<B> for Counter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let n = param.shape().num_elements();
        self.count.all += n;
        if param.is_require_grad() {
            self.count.trainable += n;
        }
    }
}

/// Trainable and total parameter counts of any module (PEFT `get_nb_trainable_parameters`).
/// "Trainable" is `require_grad`, which only an autodiff backend tracks: count the training model.
pub fn count_parameters<B: Backend, M: Module<B>>(module: &M) -> ParamCount {
    let mut c = Counter {
        count: ParamCount::default(),
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
