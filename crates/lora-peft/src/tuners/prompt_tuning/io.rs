//! Saving and loading prompt-tuning adapter directories (PEFT `PeftModel.save_pretrained` /
//! `from_pretrained` for `peft_type = "PROMPT_TUNING"`): one tensor, `prompt_embeddings`
//! `[V, hidden]`.
use super::{PromptEmbedding, PromptTuningConfig};
use crate::adapter_dir::{
    read_config_text, read_weights, tensor_f32, write_weights, AdapterFile, CONFIG_NAME,
    WEIGHTS_NAME,
};
use crate::tuners::prefix_tuning::PROMPT_EMBEDDINGS_KEY;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_io::StTensor;
use std::path::Path;

/// Saves a prompt as a PEFT adapter directory: `dir/adapter_model.safetensors` with
/// `prompt_embeddings` `[V, token_dim]` F32 and `dir/adapter_config.json` (`config` with
/// `inference_mode = true`, as PEFT writes it). Both atomic; `dir` is created.
///
/// # Errors
/// As [`PromptTuningConfig::dims`]; [`PeftError::State`] when the prompt's shape differs from
/// the config's; [`PeftError::Io`].
pub fn save_prompt_tuning<B: Backend>(
    prompt: &PromptEmbedding<B>,
    config: &PromptTuningConfig,
    dir: &Path,
) -> Result<(), PeftError> {
    let (v, d) = config.dims()?;
    let w = prompt.embedding.val();
    if w.dims() != [v, d] {
        return Err(PeftError::State(format!(
            "the prompt embedding has shape {:?} but the config implies [{v}, {d}]",
            w.dims()
        )));
    }
    let vals = tensor_f32(w, PROMPT_EMBEDDINGS_KEY)?;
    write_weights(
        &dir.join(WEIGHTS_NAME),
        &[(
            PROMPT_EMBEDDINGS_KEY.to_string(),
            StTensor::f32(vec![v, d], &vals),
        )],
    )?;
    let mut cfg = config.clone();
    cfg.inference_mode = true;
    cfg.save(dir)?;
    Ok(())
}

/// Loads a prompt-tuning adapter directory for a model of hidden size `hidden_size` (fields left
/// `null` are filled in from `hidden_size`, `num_layers` and `num_heads`). F32, F16 and BF16 are
/// read as f32. Returns the prompt (trainable) and the config.
///
/// # Errors
/// [`PeftError::Io`], [`PeftError::Json`]; [`PeftError::UnsupportedPeftType`] when `peft_type`
/// is not `"PROMPT_TUNING"`; as [`PromptTuningConfig::check_model`]
/// ([`PeftError::ModelMismatch`] for a `token_dim` other than the hidden size);
/// [`PeftError::Shape`] naming the file, `prompt_embeddings`, the expected `[V, hidden]` and the
/// shape found; [`PeftError::MissingKey`], [`PeftError::UnexpectedKey`], [`PeftError::Dtype`],
/// [`PeftError::SafeTensors`].
pub fn load_prompt_tuning<B: Backend>(
    dir: &Path,
    hidden_size: usize,
    num_layers: usize,
    num_heads: usize,
    device: &B::Device,
) -> Result<(PromptEmbedding<B>, PromptTuningConfig), PeftError> {
    let (path, text) = read_config_text(&dir.join(CONFIG_NAME))?;
    let mut config = PromptTuningConfig::from_json_str(&text, &path)?;
    if config.peft_type != "PROMPT_TUNING" {
        return Err(PeftError::UnsupportedPeftType {
            path,
            value: format!("{:?}", config.peft_type),
            msg: "expected a prompt-tuning adapter".into(),
            accepted: "\"PROMPT_TUNING\"".into(),
        });
    }
    config.prepare(hidden_size, num_layers, num_heads);
    let (v, d) = config.check_model(hidden_size, &path)?;
    let (st_path, bytes) = read_weights(dir)?;
    let mut file = AdapterFile::parse(&st_path, &bytes, &[])?;
    let w = file.take::<B, 2>(PROMPT_EMBEDDINGS_KEY, [v, d], device)?;
    file.finish()?;
    Ok((PromptEmbedding::from_weight(w), config))
}
