//! LoRA's side of target matching: [`LoraConfig`]'s targeting fields for
//! [`crate::matching::resolve_targets`], and PEFT's default LoRA targets
//! (`peft/utils/constants.py` `TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`).
use super::LoraConfig;
use crate::config_types::{LayersToTransform, StringOrList, TargetModules};
use crate::matching::{shown, TargetConfig};
use crate::PeftError;
use lora_core::LoraLayerConfig;

/// PEFT's default `target_modules` when the config has none
/// (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`): `["c_attn"]` for GPT-2 and
/// `["q_proj", "v_proj"]` for Llama-family models, recognised here by their layer names.
fn default_targets(names: &[String]) -> Result<Vec<String>, PeftError> {
    let ends = |s: &str| names.iter().any(|n| n.ends_with(&format!(".{s}")));
    if ends("c_attn") {
        Ok(vec!["c_attn".into()])
    } else if ends("q_proj") && ends("v_proj") {
        Ok(vec!["q_proj".into(), "v_proj".into()])
    } else {
        Err(PeftError::Config {
            field: "target_modules".into(),
            value: "null".into(),
            msg: format!(
                "no PEFT default is known for a model with layers {:?}: set target_modules",
                shown(names)
            ),
        })
    }
}

impl TargetConfig for LoraConfig {
    type Layer = LoraLayerConfig;

    fn validate_config(&self) -> Result<(), PeftError> {
        self.validate()
    }
    fn target_modules(&self) -> Option<&TargetModules> {
        self.target_modules.as_ref()
    }
    fn exclude_modules(&self) -> Option<&TargetModules> {
        self.exclude_modules.as_ref()
    }
    fn layers_to_transform(&self) -> Option<&LayersToTransform> {
        self.layers_to_transform.as_ref()
    }
    fn layers_pattern(&self) -> Option<&StringOrList> {
        self.layers_pattern.as_ref()
    }
    fn is_seq_cls(&self) -> bool {
        LoraConfig::is_seq_cls(self)
    }
    fn modules_to_save(&self) -> Vec<String> {
        self.effective_modules_to_save()
    }
    fn default_target_modules(&self, names: &[String]) -> Result<Vec<String>, PeftError> {
        default_targets(names)
    }
    fn layer(&self, name: &str) -> Result<LoraLayerConfig, PeftError> {
        self.layer_config(name)
    }
}
