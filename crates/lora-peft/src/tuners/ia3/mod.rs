//! (IA)³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper
//! than In-Context Learning", §3.3), PEFT's `peft_type = "IA3"`
//! (`peft/tuners/ia3/{config,layer,model}.py`).
//!
//! - [`config`]: [`IA3Config`] (`adapter_config.json`) and PEFT's checks;
//! - [`targeting`]: the config's targeting fields for [`crate::matching`], which layers are
//!   feed-forward, and PEFT's defaults per architecture ([`IA3Config::prepare`]);
//! - [`model`]: injection ([`apply_ia3`]); the layer itself is `lora_core::LoraLinear` with a
//!   `lora_core::Ia3Adapter`, and merging / removal are the method-independent
//!   [`crate::merge_and_unload`] / [`crate::unload`];
//! - [`keys`]: the tensor names; [`io`]: [`save_ia3`] / [`load_ia3`].
//!
//! Layout: `lora_core::Ia3Adapter` keeps `ia3_l` 1-D (`[d_out]`, or `[d_in]` for a
//! feed-forward layer); files hold PEFT's `[d_out, 1]` / `[1, d_in]`.
use super::{PeftType, Tuner};
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::NamedLinears;
use std::path::Path;

pub mod config;
pub mod io;
pub mod keys;
pub mod model;
pub mod targeting;

pub use config::IA3Config;
pub use io::{load_ia3, save_ia3};
pub use keys::state_dict_keys;
pub use model::apply_ia3;
pub use targeting::Ia3LayerConfig;

/// (IA)³ as a [`Tuner`]: [`apply_ia3`], [`state_dict_keys`], [`save_ia3`], [`load_ia3`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Ia3;

impl Tuner for Ia3 {
    const PEFT_TYPE: PeftType = PeftType::Ia3;
    const PREFIX: &'static str = "ia3_";
    type Config = IA3Config;

    fn inject<B: Backend, M: NamedLinears<B>>(
        model: &mut M,
        config: &IA3Config,
        device: &B::Device,
    ) -> Result<Vec<String>, PeftError> {
        apply_ia3(model, config, device)
    }

    fn state_dict_keys<B: Backend, M: NamedLinears<B>>(
        model: &M,
        config: &IA3Config,
    ) -> Result<Vec<String>, PeftError> {
        state_dict_keys(model, config)
    }

    fn save<B: Backend, M: NamedLinears<B>>(
        model: &M,
        config: &IA3Config,
        dir: &Path,
    ) -> Result<(), PeftError> {
        save_ia3(model, config, dir)
    }

    fn load<B: Backend, M: NamedLinears<B>>(
        model: &mut M,
        dir: &Path,
        device: &B::Device,
    ) -> Result<IA3Config, PeftError> {
        load_ia3(model, dir, device)
    }
}
