//! DoRA, weight-decomposed low-rank adaptation (Liu et al. 2024, "DoRA: Weight-Decomposed
//! Low-Rank Adaptation", §4.1 and §4.3): a LoRA pair plus a trainable magnitude per output unit
//! (PEFT `peft/tuners/lora/dora.py`, `DoraLinearLayer`; `peft/tuners/lora/variants.py`,
//! `DoraLinearVariant`).
//!
//! With `ΔW = scaling·A·B` and `n = ‖W + ΔW‖` per output unit (a column of the `[d_in, d_out]`
//! weight here, a row of PyTorch's `[d_out, d_in]`), the layer computes
//! `(m/n) ⊙ (x·(W + ΔW)) + b`. The norm `n` is recomputed from the current `A`, `B` in every
//! forward and detached from the gradient graph (DoRA §4.3), as PEFT does.

use std::sync::Mutex;

use burn::module::{Module, Param};
use burn::nn::Dropout;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::{BaseTensors, FrozenLinear, LoraAdapter, LoraError};

/// The weight norm of the last merge, kept on the host for the unmerge (PEFT caches it as
/// `{adapter}-weight_norm`): the merged weight alone does not determine it. Not part of the
/// module's record; a clone copies the value.
#[derive(Debug, Default)]
struct MergeNorm(Mutex<Option<Vec<f32>>>);

impl MergeNorm {
    fn get(&self) -> Option<Vec<f32>> {
        // A poisoned lock still holds a whole value (only assignments happen under it).
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, v: Vec<f32>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }
}

impl Clone for MergeNorm {
    fn clone(&self) -> Self {
        Self(Mutex::new(self.get()))
    }
}

/// A DoRA adapter: a [`LoraAdapter`] and the magnitude vector `m` (PEFT
/// `lora_magnitude_vector`).
///
/// Forward (PEFT `DoraLinearLayer.forward` added to the base result, `DoraLinearVariant.forward`):
/// `y = base(x) + (m/n − 1)⊙(x'·W) + (m/n)⊙scaling·B(A(x'))` with `x' = dropout(x)` and
/// `n = ‖W + scaling·A·B‖` per output unit, detached. Without active dropout `x'·W` is the base
/// output less its bias, and `y = (m/n)⊙(x·W + scaling·B(A(x))) + b`. With dropout PEFT computes
/// `x'·W` from the dropped input, so the base output keeps the undropped one.
///
/// # Shapes
/// - A `[d_in, r]`, B `[r, d_out]` (the inner [`LoraAdapter`]), m `[d_out]`, all f32 and trainable
/// - input `[..., d_in]`, output `[..., d_out]`
#[derive(Module, Debug)]
pub struct DoraAdapter<B: Backend> {
    /// The low-rank pair `A`, `B` (with its scaling and dropout).
    lora: LoraAdapter<B>,
    /// `m`, `[d_out]`, f32, trainable (PEFT `lora_magnitude_vector`).
    lora_magnitude_vector: Param<Tensor<B, 1>>,
    /// The norm `n` the last merge used, for the unmerge.
    merge_norm: MergeNorm,
}

/// `‖W + ΔW‖` per output unit: the column norms of a `[d_in, d_out]` weight, `[d_out]`.
fn column_norm<B: Backend>(w: Tensor<B, 2>) -> Tensor<B, 1> {
    let [_, d_out] = w.dims();
    w.powi_scalar(2).sum_dim(0).sqrt().reshape([d_out])
}

impl<B: Backend> DoraAdapter<B> {
    /// A DoRA adapter initialised from the base (PEFT `DoraLinearLayer.update_layer`):
    /// `m = ‖W + scaling·A·B‖` per output unit, with `W` the base weight in f32 (a quantized
    /// base is dequantized first, as PEFT's `dequantize_module_weight` does for bitsandbytes
    /// layers). With PEFT's default `B = 0` this is `‖W‖`, and the layer starts as the base.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when `lora` does not fit the base's `(d_in, d_out)`.
    pub fn init(lora: LoraAdapter<B>, base: &FrozenLinear<B>) -> Result<Self, LoraError> {
        check_fits(&lora, base.dims())?;
        let w = base.weight().detach();
        let m = column_norm(w + lora.delta_weight().detach());
        Self::from_parts(lora, m)
    }

    /// A DoRA adapter from its LoRA pair and a given magnitude `m` `[d_out]` (as loaded from a
    /// PEFT file).
    ///
    /// # Errors
    /// [`LoraError::Shape`] when `m`'s length is not B's `d_out`.
    pub fn from_parts(lora: LoraAdapter<B>, magnitude: Tensor<B, 1>) -> Result<Self, LoraError> {
        let [_, d_out] = lora.lora_b().dims();
        if magnitude.dims() != [d_out] {
            return Err(LoraError::Shape {
                what: "lora_magnitude_vector".into(),
                expected: vec![d_out],
                got: magnitude.dims().to_vec(),
            });
        }
        Ok(Self {
            lora,
            lora_magnitude_vector: Param::from_tensor(magnitude),
            merge_norm: MergeNorm::default(),
        })
    }

    /// The LoRA pair (A, B, scaling, rank).
    pub fn lora(&self) -> &LoraAdapter<B> {
        &self.lora
    }

    /// The magnitude `m`, `[d_out]` f32 (PEFT `lora_magnitude_vector`).
    pub fn magnitude(&self) -> Tensor<B, 1> {
        self.lora_magnitude_vector.val()
    }

    /// `n = ‖W + scaling·A·B‖` per output unit, `[d_out]` f32, detached (DoRA §4.3), for a base
    /// weight `w` `[d_in, d_out]` (f32).
    pub fn weight_norm(&self, w: Tensor<B, 2>) -> Tensor<B, 1> {
        column_norm(w.detach() + self.lora.delta_weight().detach()).detach()
    }

    /// `m / n` as a `[1, d_out]` row for broadcasting against outputs.
    fn scale(&self, base: &FrozenLinear<B>) -> Tensor<B, 2> {
        let n = self.weight_norm(base.weight());
        self.magnitude().div(n).unsqueeze::<2>()
    }

    /// The dropout of the LoRA path, when it draws (a probability above 0 on an autodiff
    /// backend; PEFT: `lora_dropout` not `Identity` and the module training).
    fn active_dropout(&self, x_device: &B::Device) -> Option<&Dropout> {
        let d = self.lora.dropout();
        (d.prob > 0.0 && B::ad_enabled(x_device)).then_some(d)
    }

    /// The layer output for input `x` `[..., d_in]`, the base's output `base_out` `[..., d_out]`
    /// (bias included) and the base itself (its weight gives `n`; its bias is taken out of
    /// `base_out` for the `(m/n − 1)` term): `base_out + (m/n − 1)⊙(x'·W) + (m/n)⊙s·B(A(x'))`,
    /// `x' = dropout(x)`.
    pub fn forward<const D: usize>(
        &self,
        base: &FrozenLinear<B>,
        x: Tensor<B, D>,
        base_out: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let scale = self.scale(base).unsqueeze::<D>();
        let (wx, h) = match self.active_dropout(&x.device()) {
            Some(d) => {
                let h = d.forward(x);
                (base.forward_compute(h.clone()), h)
            }
            None => {
                let wx = match base.bias() {
                    Some(b) => base_out.clone() - b.unsqueeze::<D>(),
                    None => base_out.clone(),
                };
                (wx, x)
            }
        };
        let lora = h
            .matmul(self.lora.lora_a().unsqueeze::<D>())
            .matmul(self.lora.lora_b().unsqueeze::<D>())
            .mul_scalar(self.lora.scaling());
        base_out + scale.clone().sub_scalar(1.0) * wx + scale * lora
    }

    /// [`DoraAdapter::forward`] in a mixed-precision layer: the base and LoRA matmuls run in the
    /// compute dtype `cd` (`xc` is `x` cast to it), their results are cast back to `x`'s dtype,
    /// and `m/n` (computed in f32 from the f32 weight, as PyTorch autocast runs norms in f32)
    /// scales them there; the bias is added in `x`'s dtype.
    pub fn forward_mixed<const D: usize>(
        &self,
        base: &FrozenLinear<B>,
        x: Tensor<B, D>,
        xc: Tensor<B, D>,
        cd: FloatDType,
    ) -> Tensor<B, D> {
        let xd = FloatDType::from(x.dtype());
        let scale = self.scale(base).cast(xd).unsqueeze::<D>();
        let wx_full = base.forward_compute(xc.clone()).cast(xd);
        let base_out = base.add_bias(wx_full.clone());
        let (wx, h) = match self.active_dropout(&x.device()) {
            Some(d) => {
                let h = d.forward(x).cast(cd);
                (base.forward_compute(h.clone()).cast(xd), h)
            }
            None => (wx_full, xc),
        };
        let lora = self.lora.forward_cast(h, cd).cast(xd);
        base_out + scale.clone().sub_scalar(1.0) * wx + scale * lora
    }

    /// The merged base (PEFT `DoraLinearVariant.merge_safe`): `W' = (m/n)⊙(W + ΔW)` scaling each
    /// output column of the f32 weight `w` `[d_in, d_out]`, with `n = ‖W + ΔW‖` of the weight
    /// given; the bias is kept. `n` is remembered for [`DoraAdapter::unmerge_from`].
    ///
    /// # Errors
    /// [`LoraError::State`] when the backend cannot read the norm back to the host.
    pub fn merge_into(
        &self,
        w: Tensor<B, 2>,
        b: Option<Tensor<B, 1>>,
    ) -> Result<BaseTensors<B>, LoraError> {
        let w = w + self.lora.delta_weight().detach();
        let n = column_norm(w.clone());
        self.merge_norm.set(host_values(n.clone())?);
        let scale = self.magnitude().detach().div(n).unsqueeze::<2>();
        Ok((w * scale, b))
    }

    /// The inverse of [`DoraAdapter::merge_into`] (PEFT `DoraLinearVariant.unmerge`):
    /// `W = W'·(n/m) − ΔW` with the norm `n` the merge used (PEFT's cached weight norm: the
    /// merged weight does not determine it); the bias is kept.
    ///
    /// # Errors
    /// [`LoraError::State`] when this adapter has not been merged (no norm remembered).
    pub fn unmerge_from(
        &self,
        w: Tensor<B, 2>,
        b: Option<Tensor<B, 1>>,
    ) -> Result<BaseTensors<B>, LoraError> {
        let n = self.merge_norm.get().ok_or_else(|| {
            LoraError::State(
                "DoRA unmerge: no weight norm from a merge of this adapter (merge first)".into(),
            )
        })?;
        let d_out = n.len();
        let n = Tensor::<B, 1>::from_data(TensorData::new(n, [d_out]), &w.device());
        let inv = n.div(self.magnitude().detach()).unsqueeze::<2>();
        Ok((w * inv - self.lora.delta_weight().detach(), b))
    }
}

/// The f32 values of a `[d_out]` tensor on the host.
fn host_values<B: Backend>(t: Tensor<B, 1>) -> Result<Vec<f32>, LoraError> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| LoraError::State(format!("DoRA merge: cannot read the weight norm: {e:?}")))
}

/// Checks that `lora`'s A `[d_in, r]` and B `[r, d_out]` fit a base of `(d_in, d_out)`.
fn check_fits<B: Backend>(
    lora: &LoraAdapter<B>,
    (d_in, d_out): (usize, usize),
) -> Result<(), LoraError> {
    let r = lora.r();
    if lora.lora_a().dims() != [d_in, r] {
        return Err(LoraError::Shape {
            what: "lora_A of the DoRA adapter".into(),
            expected: vec![d_in, r],
            got: lora.lora_a().dims().to_vec(),
        });
    }
    if lora.lora_b().dims() != [r, d_out] {
        return Err(LoraError::Shape {
            what: "lora_B of the DoRA adapter".into(),
            expected: vec![r, d_out],
            got: lora.lora_b().dims().to_vec(),
        });
    }
    Ok(())
}
