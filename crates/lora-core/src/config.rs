//! Hyper-parameters of one LoRA adapter: rank, alpha, dropout, rsLoRA, initialisation.

use crate::LoraError;

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
