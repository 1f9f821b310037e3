//! LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"), PEFT's
//! `peft_type = "LORA"` (`peft/tuners/lora/{config,layer,model}.py`).
//!
//! - [`config`]: [`LoraConfig`] (`adapter_config.json`), [`init`]: `init_lora_weights`,
//!   [`validate`]: PEFT's checks and what is refused;
//! - [`targeting`]: the config's targeting fields for [`crate::matching`] and PEFT's default
//!   targets;
//! - [`model`]: injection ([`apply_lora`]) and removal ([`merge_and_unload`], [`unload`]);
//!   the layer itself is `lora_core::LoraLinear`;
//! - [`keys`]: the tensor names; [`io`]: [`save_adapter`] / [`load_adapter`];
//! - [`dora`]: DoRA (`use_dora = true`): attaching it, its magnitude key.
//! - [`weighted`]: `add_weighted_adapter` on [`crate::NamedAdapters`] (`cat`, `linear`,
//!   `svd`), with the host SVD of [`svd`].
//!
//! Layout: `lora_core::LoraAdapter` keeps A as `[d_in, r]` and B as `[r, d_out]`; files keep
//! PyTorch's `nn.Linear` layout, so both are transposed on the way in and out.
use super::{PeftType, Tuner};
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::NamedLinears;
use std::path::Path;

pub mod config;
pub mod dora;
pub mod init;
pub mod io;
pub mod keys;
pub mod model;
pub mod svd;
pub mod targeting;
pub mod validate;
pub mod weighted;

pub use config::LoraConfig;
pub use init::InitLoraWeights;
pub use io::{load_adapter, save_adapter};
pub use keys::state_dict_keys;
pub use model::{apply_lora, merge_and_unload, unload};
pub use weighted::CombinationType;

/// LoRA as a [`Tuner`]: [`apply_lora`], [`state_dict_keys`], [`save_adapter`],
/// [`load_adapter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Lora;

impl Tuner for Lora {
    const PEFT_TYPE: PeftType = PeftType::Lora;
    const PREFIX: &'static str = "lora_";
    type Config = LoraConfig;

    fn inject<B: Backend, M: NamedLinears<B>>(
        model: &mut M,
        config: &LoraConfig,
        device: &B::Device,
    ) -> Result<Vec<String>, PeftError> {
        apply_lora(model, config, device)
    }

    fn state_dict_keys<B: Backend, M: NamedLinears<B>>(
        model: &M,
        config: &LoraConfig,
    ) -> Result<Vec<String>, PeftError> {
        state_dict_keys(model, config)
    }

    fn save<B: Backend, M: NamedLinears<B>>(
        model: &M,
        config: &LoraConfig,
        dir: &Path,
    ) -> Result<(), PeftError> {
        save_adapter(model, config, dir)
    }

    fn load<B: Backend, M: NamedLinears<B>>(
        model: &mut M,
        dir: &Path,
        device: &B::Device,
    ) -> Result<LoraConfig, PeftError> {
        load_adapter(model, dir, device)
    }
}
