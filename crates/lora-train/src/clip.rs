//! Global gradient norm and global-norm clipping (`torch.nn.utils.clip_grad_norm_`).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

struct SquaredNorms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(g.square().sum());
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Multiplies every gradient in `grads` of a float parameter of `module` by `factor`.
pub(crate) fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    module.visit(&mut ScaleGrads { grads, factor });
}

/// Global L2 norm `sqrt(Σ_p ‖g_p‖²)` over the gradients in `grads` of all float parameters of
/// `module` (parameters without a gradient, e.g. frozen ones, are skipped). One device sync.
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut v = SquaredNorms::<B> {
        grads,
        sums: Vec::new(),
    };
    module.visit(&mut v);
    if v.sums.is_empty() {
        return 0.0;
    }
    Tensor::cat(v.sums, 0)
        .into_data()
        .iter::<f64>()
        .sum::<f64>()
        .sqrt()
}

/// Divides the gradients by `loss_scale` (when it is not 1) and takes their global norm,
/// clipping them to `max_norm` when it is set: the step's gradient handling after
/// accumulation (or the all-reduce), on one device or on each replica. Returns the pre-clip
/// norm (non-finite when the step must be skipped).
pub(crate) fn unscale_and_clip<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    loss_scale: f64,
    max_norm: Option<f64>,
) -> f64 {
    if loss_scale != 1.0 {
        scale_grads::<B, M>(module, grads, 1.0 / loss_scale);
    }
    match max_norm {
        Some(max) => clip_grad_norm::<B, M>(module, grads, max),
        None => grad_norm::<B, M>(module, grads),
    }
}

/// Global-norm clipping like `torch.nn.utils.clip_grad_norm_(params, max_norm)`: computes the
/// total norm over all parameter gradients ([`grad_norm`]), and when
/// `max_norm / (total + 1e-6) < 1` multiplies every gradient by that coefficient (direction
/// unchanged, new norm ≈ `max_norm`). Returns the pre-clip total norm. A non-finite norm is
/// returned as is and nothing is scaled (the loop reports it as an error).
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let total = grad_norm::<B, M>(module, grads);
    let coef = max_norm / (total + 1e-6);
    if total.is_finite() && coef < 1.0 {
        scale_grads::<B, M>(module, grads, coef);
    }
    total
}
