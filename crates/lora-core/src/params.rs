//! Parameter counts as PEFT's `print_trainable_parameters` reports them.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::NamedLinears;

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

/// Every parameter at face value: its elements, float and int, into `all`, and a float one's
/// into `trainable` when it has `require_grad`.
#[derive(Default)]
struct FaceCount(ParamCount);

impl FaceCount {
    fn add(&mut self, n: usize, trainable: bool) {
        self.0.all += n;
        if trainable {
            self.0.trainable += n;
        }
    }
}

impl<B: Backend> ModuleVisitor<B> for FaceCount {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.add(param.shape().num_elements(), param.is_require_grad());
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        // Integer tensors take no gradient.
        self.add(param.shape().num_elements(), false);
    }
}

/// The face count of one module.
fn face_count<B: Backend, M: Module<B>>(module: &M) -> ParamCount {
    let mut c = FaceCount::default();
    module.visit(&mut c);
    c.0
}

/// Trainable and total parameter counts of a model (PEFT `get_nb_trainable_parameters`).
/// "Trainable" is `require_grad`, which only an autodiff backend tracks: count the training model.
/// A quantized base weight counts its values (PEFT counts a 4-bit `Params4bit` as twice its
/// packed bytes), rounded up to whole storage words (8 NF4 or 4 int8 codes;
/// [`crate::QuantBase::num_values`]); its packed words and absmax statistics are not counted
/// themselves (as in PEFT, where the statistics live in bitsandbytes' `quant_state`).
///
/// Every parameter is counted at face value; then, for each quantized base among the model's
/// [`NamedLinears`], the face count of that base is replaced by its number of values.
pub fn count_parameters<B: Backend, M: Module<B> + NamedLinears<B>>(module: &M) -> ParamCount {
    let mut count = face_count(module);
    module.visit_linears(&mut |_, l| {
        if let Some(q) = l.quant_base() {
            let face = face_count(q);
            count.all = count.all - face.all + q.num_values();
            count.trainable -= face.trainable;
        }
    });
    count
}
