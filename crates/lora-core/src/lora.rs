//! The LoRA adapter: the trainable low-rank pair `A`, `B` beside a frozen base (Hu et al. 2021,
//! "LoRA", §4.1; PEFT `peft/tuners/lora/layer.py`, `LoraLayer.update_layer`, `Linear.forward`).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};

use crate::{LoraError, LoraInit, LoraLayerConfig};

/// The trainable low-rank pair of one layer: `scaling · B(A(dropout(x)))`.
///
/// # Shapes
/// - A: `[d_in, r]`, B: `[r, d_out]` (f32 master weights; PEFT's `lora_A.weight` and
///   `lora_B.weight` transposed)
/// - input `[..., d_in]`, output `[..., d_out]`
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// A, `[d_in, r]`, f32, trainable (PEFT `lora_A.weight` transposed).
    lora_a: Param<Tensor<B, 2>>,
    /// B, `[r, d_out]`, f32, trainable (PEFT `lora_B.weight` transposed).
    lora_b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter's input; active only on an autodiff backend.
    dropout: Dropout,
    /// `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    scaling: f64,
    /// Rank.
    r: usize,
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
        Self::from_tensors(a, b, config)
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

    /// The dropout of the adapter's input (DoRA applies it itself: its weight term uses the
    /// dropped input too).
    pub(crate) fn dropout(&self) -> &Dropout {
        &self.dropout
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

    /// The adapter's term of a mixed-precision forward, in the compute dtype `cd`: `x` is the
    /// layer input in its own dtype, `xc` the same input already cast to `cd`. Dropout is drawn
    /// in the input's dtype and then cast; without active dropout (probability 0, or a backend
    /// without autodiff) the cast input `xc` of the base is reused. Then
    /// [`LoraAdapter::forward_cast`].
    pub fn forward_autocast<const D: usize>(
        &self,
        x: Tensor<B, D>,
        xc: Tensor<B, D>,
        cd: FloatDType,
    ) -> Tensor<B, D> {
        let h = if self.dropout.prob == 0.0 || !B::ad_enabled(&x.device()) {
            xc
        } else {
            self.dropout.forward(x).cast(cd)
        };
        self.forward_cast(h, cd)
    }
}
