//! The trainable parameters and their AdamW moments as named tensors, and back.
//!
//! A parameter is named by its module path (`model.layers.3.self_attn.q_proj.weight`), the
//! field names burn's `Module` derive reports; a path seen twice gets `#2`, `#3`… so every name
//! is unique. Frozen parameters (no `require_grad`) are neither saved nor read. Tensors, as in
//! `torch.optim.AdamW`'s state: `param.<name>` (the value, F32), `exp_avg.<name>` and
//! `exp_avg_sq.<name>` (first and second moments, F32) and `step.<name>` (I64 `[]`, the
//! moment's step count t, which the bias correction uses).

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamW, AdamWState, AdaptiveMomentumState};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use lora_io::{f32_values, StTensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};

/// burn's AdamW state of one parameter.
pub(crate) type AdamWRecord<B> = AdaptorRecord<AdamW, B>;

/// AdamW states keyed by the ids of the parameters they belong to.
pub(crate) type Moments<B> = Vec<(ParamId, AdamWRecord<B>)>;

/// Module paths from `enter_module` / `exit_module`, made unique.
#[derive(Default)]
struct PathStack {
    parts: Vec<String>,
    seen: HashMap<String, usize>,
}

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.parts.push(name.to_string());
    }

    fn exit(&mut self) {
        self.parts.pop();
    }

    fn name(&mut self) -> String {
        let base = self.parts.join(".");
        let n = self.seen.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}#{n}")
        }
    }
}

fn f32_tensor<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> StTensor {
    let shape = t.dims().to_vec();
    let values: Vec<f32> = t.into_data().iter::<f32>().collect();
    StTensor::f32(shape, &values)
}

struct Collect<'a, B: AutodiffBackend> {
    path: PathStack,
    moments: &'a dyn Fn(ParamId) -> Option<AdamWRecord<B>>,
    out: Vec<(String, StTensor)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = self.path.name();
        if !param.is_require_grad() {
            return;
        }
        self.out
            .push((format!("param.{name}"), f32_tensor(param.val().inner())));
        if let Some(record) = (self.moments)(param.id) {
            let state: AdamWState<B::InnerBackend, D> = record.into_state();
            let m = state.momentum;
            self.out
                .push((format!("exp_avg.{name}"), f32_tensor(m.moment_1)));
            self.out
                .push((format!("exp_avg_sq.{name}"), f32_tensor(m.moment_2)));
            self.out.push((
                format!("step.{name}"),
                StTensor {
                    dtype: Dtype::I64,
                    shape: vec![],
                    bytes: (m.time as i64).to_le_bytes().to_vec(),
                },
            ));
        }
    }
}

/// The trainable parameters of `model` and, where `moments(id)` has one, their AdamW state, as
/// named tensors (module docs).
pub(crate) fn collect<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    moments: &dyn Fn(ParamId) -> Option<AdamWRecord<B>>,
) -> Vec<(String, StTensor)> {
    let mut v = Collect {
        path: PathStack::default(),
        moments,
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

struct Apply<'a, B: AutodiffBackend> {
    path: PathStack,
    file: &'a SafeTensors<'a>,
    used: BTreeSet<String>,
    records: Moments<B>,
    error: Option<String>,
}

impl<B: AutodiffBackend> Apply<'_, B> {
    /// The values of `key` if it holds an F32 tensor of `shape`.
    fn values(&mut self, key: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, String> {
        let Ok(view) = self.file.tensor(key) else {
            return Ok(None);
        };
        self.used.insert(key.to_string());
        if view.shape() != shape || view.dtype() != Dtype::F32 {
            return Err(format!(
                "`{key}` is {:?} {:?}, this model needs F32 {shape:?}: a different model or method",
                view.dtype(),
                view.shape()
            ));
        }
        let values = f32_values(&view).unwrap_or_default();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "`{key}` holds {} at index {i}: a damaged checkpoint",
                values[i]
            ));
        }
        Ok(Some(values))
    }

    fn step_count(&mut self, key: &str) -> Result<usize, String> {
        let view = self
            .file
            .tensor(key)
            .map_err(|_| format!("`{key}` is missing (the moments have no step count)"))?;
        self.used.insert(key.to_string());
        let bytes: [u8; 8] = view
            .data()
            .try_into()
            .ok()
            .filter(|_| view.dtype() == Dtype::I64)
            .ok_or_else(|| format!("`{key}` must be one I64 value"))?;
        usize::try_from(i64::from_le_bytes(bytes)).map_err(|_| format!("`{key}` is negative"))
    }

    fn load<const D: usize>(
        &mut self,
        name: &str,
        param: &Param<Tensor<B, D>>,
    ) -> Result<Vec<f32>, String> {
        let shape = param.shape().dims::<D>().to_vec();
        let device = param.val().device();
        let key = format!("param.{name}");
        let values = self.values(&key, &shape)?.ok_or_else(|| {
            format!("the trainable parameter `{name}` {shape:?} is missing: a different model or method")
        })?;
        let inner = |v: Vec<f32>| {
            Tensor::<B::InnerBackend, D>::from_data(TensorData::new(v, shape.clone()), &device)
        };
        if let Some(m1) = self.values(&format!("exp_avg.{name}"), &shape)? {
            let m2 = self
                .values(&format!("exp_avg_sq.{name}"), &shape)?
                .ok_or_else(|| format!("`exp_avg_sq.{name}` is missing"))?;
            let time = self.step_count(&format!("step.{name}"))?;
            let state = AdamWState::new(AdaptiveMomentumState::new(time, inner(m1), inner(m2)));
            self.records
                .push((param.id, AdaptorRecord::from_state::<D>(state)));
        }
        Ok(values)
    }
}

impl<B: AutodiffBackend> ModuleMapper<B> for Apply<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.name();
        if !param.is_require_grad() || self.error.is_some() {
            return param;
        }
        match self.load(&name, &param) {
            Ok(values) => {
                let shape = param.shape().dims::<D>().to_vec();
                param.map(|t| {
                    Tensor::from_data(TensorData::new(values, shape), &t.device()).require_grad()
                })
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// Sets every trainable parameter of `model` from `file` (module docs) and returns the model
/// with the AdamW state found for each (keyed by the parameters' ids in `model`).
///
/// # Errors
/// A trainable parameter missing from `file` or of another shape, a moment without its step
/// count, or a tensor in `file` that names no trainable parameter of `model`: each names the
/// tensor.
pub(crate) fn apply<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: M,
    file: &SafeTensors<'_>,
) -> Result<(M, Moments<B>), String> {
    let mut a = Apply {
        path: PathStack::default(),
        file,
        used: BTreeSet::new(),
        records: Vec::new(),
        error: None,
    };
    let model = model.map(&mut a);
    if let Some(e) = a.error {
        return Err(e);
    }
    if let Some(extra) = file.names().into_iter().find(|k| !a.used.contains(*k)) {
        return Err(format!(
            "`{extra}` names no trainable parameter of this model: a different model or method"
        ));
    }
    Ok((model, a.records))
}
