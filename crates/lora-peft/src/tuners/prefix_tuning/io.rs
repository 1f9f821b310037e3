//! Saving and loading prefix-tuning adapter directories (PEFT `PeftModel.save_pretrained` /
//! `from_pretrained` for `peft_type = "PREFIX_TUNING"`, `peft/utils/save_and_load.py`,
//! `BasePromptEncoder._get_adapter_state_dict`): one tensor, `prompt_embeddings`.
use super::{PrefixEncoder, PrefixTuningConfig};
use crate::adapter_dir::{
    read_config_text, read_weights, tensor_f32, write_weights, AdapterFile, CONFIG_NAME,
    WEIGHTS_NAME,
};
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_io::StTensor;
use lora_models::AttentionShape;
use std::path::Path;

/// The key of the one tensor of a prompt-learning adapter file.
pub const PROMPT_EMBEDDINGS_KEY: &str = "prompt_embeddings";

/// Saves a prefix as a PEFT adapter directory: `dir/adapter_model.safetensors` with
/// `prompt_embeddings` `[V, num_layers · 2 · token_dim]` F32 — with a projection, its output for
/// all V virtual tokens, as PEFT saves it — and `dir/adapter_config.json` (`config` with
/// `inference_mode = true`, as PEFT writes it). Both atomic; `dir` is created.
///
/// # Errors
/// [`PeftError::Config`] / [`PeftError::Unsupported`] from [`PrefixTuningConfig::geometry`];
/// [`PeftError::State`] when the encoder's prefix does not have the config's shape;
/// [`PeftError::Io`].
pub fn save_prefix_tuning<B: Backend>(
    encoder: &PrefixEncoder<B>,
    config: &PrefixTuningConfig,
    dir: &Path,
) -> Result<(), PeftError> {
    let g = config.geometry()?;
    let p = encoder.prompt_embeddings();
    let want = [g.num_virtual_tokens, g.flat_dim()];
    if p.dims() != want {
        return Err(PeftError::State(format!(
            "the prefix encoder gives prompt_embeddings of shape {:?} but the config implies {want:?}",
            p.dims()
        )));
    }
    let vals = tensor_f32(p, PROMPT_EMBEDDINGS_KEY)?;
    write_weights(
        &dir.join(WEIGHTS_NAME),
        &[(
            PROMPT_EMBEDDINGS_KEY.to_string(),
            StTensor::f32(want.to_vec(), &vals),
        )],
    )?;
    let mut cfg = config.clone();
    cfg.inference_mode = true;
    cfg.save(dir)?;
    Ok(())
}

/// Loads a prefix-tuning adapter directory for a model of attention geometry `shape`: reads
/// `adapter_config.json`, fills geometry fields left `null` from the model
/// ([`PrefixTuningConfig::prepare`]), checks them against the model, and reads
/// `prompt_embeddings` into an encoder holding the prefix itself (as PEFT in inference mode,
/// also for `prefix_projection` adapters, whose file holds the projected prefix). F32, F16 and
/// BF16 are read as f32. Returns the encoder (trainable) and the config.
///
/// # Errors
/// [`PeftError::Io`], [`PeftError::Json`]; [`PeftError::UnsupportedPeftType`] when
/// `peft_type` is not `"PREFIX_TUNING"`; [`PeftError::Config`] / [`PeftError::Unsupported`]
/// from [`PrefixTuningConfig::geometry`]; [`PeftError::ModelMismatch`] naming the file, field,
/// value and the model's value; [`PeftError::MissingKey`], [`PeftError::UnexpectedKey`],
/// [`PeftError::Shape`], [`PeftError::Dtype`], [`PeftError::SafeTensors`] for the weights file.
pub fn load_prefix_tuning<B: Backend>(
    dir: &Path,
    shape: AttentionShape,
    device: &B::Device,
) -> Result<(PrefixEncoder<B>, PrefixTuningConfig), PeftError> {
    let (path, text) = read_config_text(&dir.join(CONFIG_NAME))?;
    let mut config = PrefixTuningConfig::from_json_str(&text, &path)?;
    if config.peft_type != "PREFIX_TUNING" {
        return Err(PeftError::UnsupportedPeftType {
            path,
            value: format!("{:?}", config.peft_type),
            msg: "expected a prefix-tuning adapter".into(),
            accepted: "\"PREFIX_TUNING\"".into(),
        });
    }
    config.prepare(shape);
    let g = config.check_model(shape, &path)?;
    let (st_path, bytes) = read_weights(dir)?;
    let mut file = AdapterFile::parse(&st_path, &bytes, &[])?;
    let p = file.take::<B, 2>(
        PROMPT_EMBEDDINGS_KEY,
        [g.num_virtual_tokens, g.flat_dim()],
        device,
    )?;
    file.finish()?;
    let encoder = PrefixEncoder::from_prompt_embeddings(p, &g)?;
    Ok((encoder, config))
}
