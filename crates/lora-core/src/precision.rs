//! The compute precision of the frozen bases (the `--precision` flag) and the master dtype.

use burn::tensor::backend::Backend;
use burn::tensor::{Element, FloatDType};

use crate::LoraError;

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
