//! The sequential bottleneck adapter (Houlsby et al. 2019, "Parameter-Efficient Transfer
//! Learning for NLP", §2.1; Pfeiffer et al. 2021, "AdapterFusion", §3), as AdapterHub
//! `adapters` 1.3 defines it: `methods/modeling.py` `Adapter` (`pre_forward`, `forward`,
//! `post_forward`) driven by `methods/bottleneck.py` `BottleneckLayer`.
//!
//! The adapter replaces a sub-block's residual addition `residual + x` (`x` the attention or MLP
//! output). For the decoder families here (AdapterHub `models/gpt2/modeling_gpt2.py`,
//! `models/llama/modeling_llama.py`) the transformer layer norm handed to the adapter is `None`,
//! so "apply the original layer norm" reduces to "add the residual":
//!
//! ```text
//! h   = x + residual            if original_ln_before, else x
//! res = x                       if residual_before_ln, else h
//! out = dropout(scaling · up(act(down(h)))) + res
//! out = out + residual          if original_ln_after
//! ```
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use crate::LoraError;

/// The non-linearity between `adapter_down` and `adapter_up`, by AdapterHub's
/// `non_linearity` name (`Activation_Function_Class`: transformers' `get_activation` of the
/// lower-cased name, except `"leakyrelu"`, which is `torch.nn.functional.leaky_relu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottleneckActivation {
    /// `"relu"`.
    Relu,
    /// `"swish"` or `"silu"`: `x · sigmoid(x)`.
    Silu,
    /// `"gelu"`: exact (erf) GELU (transformers' `GELUActivation`).
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`: the tanh approximation
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    GeluTanh,
    /// `"tanh"`.
    Tanh,
    /// `"sigmoid"`.
    Sigmoid,
    /// `"leakyrelu"` or `"leaky_relu"`: negative slope 0.01.
    LeakyRelu,
    /// `"linear"`: the identity.
    Identity,
}

impl BottleneckActivation {
    /// The names [`BottleneckActivation::from_name`] accepts, for error messages.
    pub const NAMES: &'static [&'static str] = &[
        "relu",
        "swish",
        "silu",
        "gelu",
        "gelu_new",
        "gelu_pytorch_tanh",
        "gelu_fast",
        "tanh",
        "sigmoid",
        "leakyrelu",
        "leaky_relu",
        "linear",
    ];

    /// The activation of AdapterHub's `non_linearity` string (case-insensitive, as AdapterHub
    /// lower-cases it); `None` for a name not implemented here.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_lowercase().as_str() {
            "relu" => Self::Relu,
            "swish" | "silu" => Self::Silu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "leakyrelu" | "leaky_relu" => Self::LeakyRelu,
            "linear" => Self::Identity,
            _ => return None,
        })
    }

    /// Applies the activation elementwise (any shape).
    pub fn forward<const D: usize, B: Backend>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::Silu => activation::silu(x),
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let inner = x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715);
                x.clone()
                    .mul_scalar(0.5)
                    .mul(inner.mul_scalar(c).tanh().add_scalar(1.0))
            }
            Self::Tanh => x.tanh(),
            Self::Sigmoid => activation::sigmoid(x),
            Self::LeakyRelu => activation::leaky_relu(x, 0.01),
            Self::Identity => x,
        }
    }
}

/// Initialisation of a fresh adapter (AdapterHub `BnConfig.init_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottleneckInit {
    /// `"bert"` (the default): both weights N(0, 0.02), biases zero. Not the identity.
    Bert,
    /// `"mam_adapter"`: `adapter_down` Kaiming-uniform (a = √5, i.e. U(±1/√hidden)), biases
    /// and `adapter_up` zero, so the adapter starts as the identity map.
    MamAdapter,
}

/// The configuration of one bottleneck adapter layer (the per-layer part of AdapterHub's
/// `BnConfig`; where adapters sit is the model's business).
#[derive(Debug, Clone, PartialEq)]
pub struct BottleneckConfig {
    /// The model's hidden size `d` (the adapter's input and output width).
    pub hidden_size: usize,
    /// The bottleneck width `d_b` = `max(1, int(hidden_size // reduction_factor))`.
    pub bottleneck_size: usize,
    /// The activation between the projections.
    pub non_linearity: BottleneckActivation,
    /// Add the sub-block residual to the input of the adapter (AdapterHub: apply the original
    /// layer norm and residual before the adapter; the norm is `None` here).
    pub original_ln_before: bool,
    /// Add the sub-block residual to the adapter output.
    pub original_ln_after: bool,
    /// The adapter's own residual is the sub-block output `x` (true) or the adapter input `h`.
    pub residual_before_ln: bool,
    /// Constant factor on the bottleneck output (AdapterHub `scaling` as a float).
    pub scaling: f64,
    /// Dropout probability on the scaled bottleneck output (AdapterHub `dropout`); active only
    /// on an autodiff backend.
    pub adapter_dropout: f64,
    /// Initialisation of a fresh adapter.
    pub init_weights: BottleneckInit,
}

impl BottleneckConfig {
    /// The bottleneck width AdapterHub gives `hidden_size` and `reduction_factor`:
    /// `int(hidden_size // reduction_factor)`, at least 1 (`BottleneckLayer.add_adapter`,
    /// `Adapter.__init__`).
    ///
    /// # Errors
    /// [`LoraError::Bottleneck`] when `reduction_factor` is not a finite positive number.
    pub fn bottleneck_size_for(
        hidden_size: usize,
        reduction_factor: f64,
    ) -> Result<usize, LoraError> {
        if !(reduction_factor.is_finite() && reduction_factor > 0.0) {
            return Err(LoraError::Bottleneck(format!(
                "reduction_factor = {reduction_factor}: expected a finite number > 0"
            )));
        }
        let d = (hidden_size as f64 / reduction_factor).floor();
        Ok((d as usize).max(1))
    }

    /// AdapterHub's `seq_bn` (Pfeiffer) layer: reduction factor 16, relu,
    /// `original_ln_before`, `original_ln_after`, `residual_before_ln`, scaling 1, no dropout,
    /// "bert" init.
    pub fn seq_bn(hidden_size: usize) -> Self {
        Self {
            hidden_size,
            bottleneck_size: (hidden_size / 16).max(1),
            non_linearity: BottleneckActivation::Relu,
            original_ln_before: true,
            original_ln_after: true,
            residual_before_ln: true,
            scaling: 1.0,
            adapter_dropout: 0.0,
            init_weights: BottleneckInit::Bert,
        }
    }

    /// AdapterHub's `double_seq_bn` (Houlsby) layer: as [`BottleneckConfig::seq_bn`] but swish
    /// and `original_ln_before = false`.
    pub fn double_seq_bn(hidden_size: usize) -> Self {
        Self {
            non_linearity: BottleneckActivation::Silu,
            original_ln_before: false,
            ..Self::seq_bn(hidden_size)
        }
    }

    /// Checks sizes, scaling and dropout.
    ///
    /// # Errors
    /// [`LoraError::Bottleneck`] for a zero size or a non-finite scaling;
    /// [`LoraError::BadDropout`] for a dropout outside `[0, 1)`.
    pub fn validate(&self) -> Result<(), LoraError> {
        if self.hidden_size == 0 || self.bottleneck_size == 0 {
            return Err(LoraError::Bottleneck(format!(
                "hidden_size = {}, bottleneck size = {}: both must be at least 1",
                self.hidden_size, self.bottleneck_size
            )));
        }
        if !self.scaling.is_finite() {
            return Err(LoraError::Bottleneck(format!(
                "scaling = {}: expected a finite number",
                self.scaling
            )));
        }
        if !(0.0..1.0).contains(&self.adapter_dropout) {
            return Err(LoraError::BadDropout(self.adapter_dropout));
        }
        Ok(())
    }
}

/// One bottleneck adapter: `scaling · up(act(down(h)))` with the residual wiring of
/// [`BottleneckConfig`] (AdapterHub `Adapter`, sequential, no gating, no extra layer norms).
///
/// # Shapes
/// - `adapter_down` weight `[d, d_b]`, bias `[d_b]`; `adapter_up` weight `[d_b, d]`, bias `[d]`
///   (f32; AdapterHub's `adapter_down.0.weight` `[d_b, d]` and `adapter_up.weight` `[d, d_b]`
///   transposed)
/// - [`BottleneckAdapter::forward`]: `x`, `residual` `[..., d]` → `[..., d]`
#[derive(Module, Debug)]
pub struct BottleneckAdapter<B: Backend> {
    /// `adapter_down.0.weight` transposed, `[d, d_b]`, trainable.
    down_weight: Param<Tensor<B, 2>>,
    /// `adapter_down.0.bias`, `[d_b]`, trainable.
    down_bias: Param<Tensor<B, 1>>,
    /// `adapter_up.weight` transposed, `[d_b, d]`, trainable.
    up_weight: Param<Tensor<B, 2>>,
    /// `adapter_up.bias`, `[d]`, trainable.
    up_bias: Param<Tensor<B, 1>>,
    /// Dropout on the scaled bottleneck output.
    dropout: Dropout,
    /// The layer's configuration (not a parameter).
    #[module(skip)]
    config: BottleneckConfig,
}

impl<B: Backend> BottleneckAdapter<B> {
    /// A fresh adapter initialised per `config.init_weights` with the backend's random
    /// generator (seed it with `B::seed`).
    ///
    /// # Errors
    /// As [`BottleneckConfig::validate`].
    pub fn new(config: &BottleneckConfig, device: &B::Device) -> Result<Self, LoraError> {
        config.validate()?;
        let (d, db) = (config.hidden_size, config.bottleneck_size);
        let (down, up) = match config.init_weights {
            BottleneckInit::Bert => {
                let n = Distribution::Normal(0.0, 0.02);
                (
                    Tensor::random([d, db], n, device),
                    Tensor::random([db, d], n, device),
                )
            }
            BottleneckInit::MamAdapter => {
                // kaiming_uniform_(a = √5) on a [d_b, d] weight: bound = 1/√fan_in, fan_in = d.
                let bound = 1.0 / (d as f64).sqrt();
                (
                    Tensor::random([d, db], Distribution::Uniform(-bound, bound), device),
                    Tensor::zeros([db, d], device),
                )
            }
        };
        Self::from_tensors(
            down,
            Tensor::zeros([db], device),
            up,
            Tensor::zeros([d], device),
            config,
        )
    }

    /// An adapter from given tensors: `down_weight` `[d, d_b]`, `down_bias` `[d_b]`,
    /// `up_weight` `[d_b, d]`, `up_bias` `[d]` (workspace layout, see the `# Shapes` section).
    ///
    /// # Errors
    /// [`LoraError::Shape`] naming the tensor when a shape differs from the config's;
    /// as [`BottleneckConfig::validate`].
    pub fn from_tensors(
        down_weight: Tensor<B, 2>,
        down_bias: Tensor<B, 1>,
        up_weight: Tensor<B, 2>,
        up_bias: Tensor<B, 1>,
        config: &BottleneckConfig,
    ) -> Result<Self, LoraError> {
        config.validate()?;
        let (d, db) = (config.hidden_size, config.bottleneck_size);
        let checks: [(&str, Vec<usize>, Vec<usize>); 4] = [
            (
                "adapter_down weight",
                vec![d, db],
                down_weight.dims().to_vec(),
            ),
            ("adapter_down bias", vec![db], down_bias.dims().to_vec()),
            ("adapter_up weight", vec![db, d], up_weight.dims().to_vec()),
            ("adapter_up bias", vec![d], up_bias.dims().to_vec()),
        ];
        for (what, expected, got) in checks {
            if expected != got {
                return Err(LoraError::Shape {
                    what: what.into(),
                    expected,
                    got,
                });
            }
        }
        Ok(Self {
            down_weight: Param::from_tensor(down_weight),
            down_bias: Param::from_tensor(down_bias),
            up_weight: Param::from_tensor(up_weight),
            up_bias: Param::from_tensor(up_bias),
            dropout: DropoutConfig::new(config.adapter_dropout).init(),
            config: config.clone(),
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &BottleneckConfig {
        &self.config
    }

    /// `adapter_down` weight, `[d, d_b]` (AdapterHub's `adapter_down.0.weight` transposed).
    pub fn down_weight(&self) -> Tensor<B, 2> {
        self.down_weight.val()
    }

    /// `adapter_down` bias, `[d_b]`.
    pub fn down_bias(&self) -> Tensor<B, 1> {
        self.down_bias.val()
    }

    /// `adapter_up` weight, `[d_b, d]` (AdapterHub's `adapter_up.weight` transposed).
    pub fn up_weight(&self) -> Tensor<B, 2> {
        self.up_weight.val()
    }

    /// `adapter_up` bias, `[d]`.
    pub fn up_bias(&self) -> Tensor<B, 1> {
        self.up_bias.val()
    }

    /// The bottleneck branch alone, `dropout(scaling · (act(h·W_down + b_down)·W_up + b_up))`,
    /// `h` `[..., d]` → `[..., d]` (AdapterHub `Adapter.forward` before the residual).
    pub fn bottleneck<const D: usize>(&self, h: Tensor<B, D>) -> Tensor<B, D> {
        let down = h.matmul(self.down_weight.val().unsqueeze::<D>())
            + self.down_bias.val().unsqueeze::<D>();
        let down = self.config.non_linearity.forward(down);
        let up = down.matmul(self.up_weight.val().unsqueeze::<D>())
            + self.up_bias.val().unsqueeze::<D>();
        self.dropout.forward(up.mul_scalar(self.config.scaling))
    }

    /// The sub-block's output with the adapter: `x` is the attention or MLP output, `residual`
    /// the sub-block's input (what the plain model adds to `x`); returns what replaces
    /// `residual + x` (see the module docs for the wiring).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>, residual: Tensor<B, D>) -> Tensor<B, D> {
        let c = &self.config;
        let h = if c.original_ln_before {
            x.clone() + residual.clone()
        } else {
            x.clone()
        };
        let res = if c.residual_before_ln { x } else { h.clone() };
        let out = self.bottleneck(h) + res;
        if c.original_ln_after {
            out + residual
        } else {
            out
        }
    }
}
