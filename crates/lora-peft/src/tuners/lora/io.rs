//! Saving and loading LoRA adapter directories (PEFT `PeftModel.save_pretrained` /
//! `from_pretrained` for `peft_type = "LORA"`): the LoRA tensors ([`super::keys`]) plus the
//! generic parts of [`crate::adapter_dir`] (config, `modules_to_save`, strict reading).
use super::dora::{attach_loaded, lora_parts, magnitude_key};
use super::keys::{lora_a_key, lora_b_key, ADAPTER_PARTS};
use super::LoraConfig;
use crate::adapter_dir::{
    push_module_to_save, read_weights, take_module_to_save, tensor_f32, write_weights, AdapterFile,
    LayerInfo, CONFIG_NAME, WEIGHTS_NAME,
};
use crate::matching::resolve;
use crate::PeftError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_core::{LoraLayerConfig, NamedLinears};
use lora_io::StTensor;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A loaded adapter: A `[d_in, r]`, B `[r, d_out]` and, for DoRA, the magnitude `[d_out]`.
type LoadedTensors<B> = (Tensor<B, 2>, Tensor<B, 2>, Option<Tensor<B, 1>>);

/// Saves the adapters of `model` as a PEFT adapter directory: `dir/adapter_config.json`
/// (`config`; for `SEQ_CLS` with `modules_to_save` completed by `classifier`/`score` as PEFT
/// writes it) and `dir/adapter_model.safetensors` (F32 tensors, metadata `{"format": "pt"}`,
/// keys as in [`super::keys`]; with `use_dora` each layer's `lora_magnitude_vector` too). Both written atomically; `dir` is created. PEFT
/// (`PeftModel.from_pretrained`) and [`load_adapter`] read the result.
///
/// The model must carry exactly the adapters `config` implies (as [`crate::apply_lora`] made
/// them): same layers, same ranks and scalings; otherwise the file could not be loaded back.
///
/// # Errors
/// The errors of [`crate::resolve_targets`]; [`PeftError::State`] when a layer has an adapter
/// the config does not target, a targeted layer has none, a rank/scaling differs from the
/// config's, or a layer's adapter is DoRA while `use_dora` is false (or the reverse);
/// [`PeftError::Io`].
pub fn save_adapter<B: Backend, M: NamedLinears<B>>(
    model: &M,
    config: &LoraConfig,
    dir: &Path,
) -> Result<(), PeftError> {
    let names = model.linear_names();
    let plan = resolve(&names, config, false)?;
    let targets: HashMap<&str, &LoraLayerConfig> =
        plan.targets.iter().map(|(n, c)| (n.as_str(), c)).collect();
    let mts: HashSet<&str> = plan.modules_to_save.iter().map(|s| s.as_str()).collect();

    let mut tensors: Vec<(String, StTensor)> = Vec::new();
    let mut err: Option<PeftError> = None;
    model.visit_linears(&mut |name, l| {
        if err.is_some() {
            return;
        }
        let res = (|| -> Result<(), PeftError> {
            match (targets.get(name), lora_parts(name, l, config.use_dora)?) {
                (Some(c), Some((a, magnitude))) => {
                    let want = c.scaling().map_err(|source| PeftError::Lora {
                        name: name.to_string(),
                        source,
                    })?;
                    let (r, scaling) = (a.r(), a.scaling());
                    if r != c.r || (scaling - want).abs() > 1e-9 * want.abs().max(1.0) {
                        return Err(PeftError::State(format!(
                            "layer `{name}`: adapter has r = {r}, scaling = {scaling} but the \
                             config gives r = {}, scaling = {want}",
                            c.r
                        )));
                    }
                    let (d_in, d_out) = l.dims();
                    let key_a = lora_a_key(name);
                    let key_b = lora_b_key(name);
                    let ta = tensor_f32(a.lora_a().transpose(), &key_a)?;
                    let tb = tensor_f32(a.lora_b().transpose(), &key_b)?;
                    tensors.push((key_a, StTensor::f32(vec![r, d_in], &ta)));
                    tensors.push((key_b, StTensor::f32(vec![d_out, r], &tb)));
                    if let Some(m) = magnitude {
                        let key_m = magnitude_key(name);
                        let tm = tensor_f32(m, &key_m)?;
                        tensors.push((key_m, StTensor::f32(vec![d_out], &tm)));
                    }
                }
                (Some(_), None) => {
                    return Err(PeftError::State(format!(
                        "the config targets layer `{name}` but it has no adapter (apply_lora first)"
                    )))
                }
                (None, Some(_)) => {
                    return Err(PeftError::State(format!(
                        "layer `{name}` has an adapter but the config does not target it"
                    )))
                }
                (None, None) => {}
            }
            if mts.contains(name) {
                push_module_to_save(name, l, &mut tensors)?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }

    let mut cfg = config.clone();
    if cfg.is_seq_cls() {
        cfg.modules_to_save = Some(cfg.effective_modules_to_save());
    }
    write_weights(&dir.join(WEIGHTS_NAME), &tensors)?;
    cfg.save(dir)?;
    Ok(())
}

/// Loads a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`, as
/// written by PEFT's `save_pretrained` or [`save_adapter`]) into `model`: attaches an adapter
/// with the file's `lora_A`/`lora_B` (and, with `use_dora`, its `lora_magnitude_vector`: a
/// DoRA adapter) to every layer the config targets (matching rules of
/// [`crate::resolve_targets`], per-layer rank/alpha patterns applied) and replaces the weight
/// (and bias) of every `modules_to_save` layer with the file's, made trainable. Keys may carry
/// PEFT's adapter name (`lora_A.default.weight`) or not. F32, F16 and BF16 tensors are read (as
/// f32). Nothing is changed in the model unless the whole file checks out. Returns the config.
///
/// # Errors
/// [`PeftError::Io`] (a missing file, named), [`PeftError::Json`], the errors of
/// [`LoraConfig::validate`] and of the matching (nothing matched);
/// [`PeftError::SafeTensors`] (truncated or corrupt file); [`PeftError::MissingKey`] for a
/// tensor the config implies; [`PeftError::UnexpectedKey`] for a tensor nothing accounts for;
/// [`PeftError::Shape`] naming key, expected and actual shape (a magnitude vector whose length
/// is not the layer's `d_out` included); [`PeftError::Dtype`];
/// [`PeftError::State`] if a target layer is merged.
pub fn load_adapter<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    dir: &Path,
    device: &B::Device,
) -> Result<LoraConfig, PeftError> {
    let config = LoraConfig::from_file(dir.join(CONFIG_NAME))?;
    config.validate()?;
    let (st_path, bytes) = read_weights(dir)?;
    let mut file = AdapterFile::parse(&st_path, &bytes, ADAPTER_PARTS)?;

    let names = model.linear_names();
    let plan = resolve(&names, &config, false)?;
    let mut info: HashMap<String, LayerInfo> = HashMap::new();
    model.visit_linears(&mut |n, l| {
        info.insert(n.to_string(), LayerInfo::of(l));
    });

    let mut adapters: HashMap<String, (LoadedTensors<B>, LoraLayerConfig)> = HashMap::new();
    for (name, c) in &plan.targets {
        let LayerInfo {
            dims: (d_in, d_out),
            merged,
            ..
        } = info[name];
        if merged {
            return Err(PeftError::State(format!(
                "cannot load an adapter into merged layer `{name}`"
            )));
        }
        let a = file.take::<B, 2>(&lora_a_key(name), [c.r, d_in], device)?;
        let b = file.take::<B, 2>(&lora_b_key(name), [d_out, c.r], device)?;
        // PEFT's magnitude is per output unit, also for Conv1D (`d_out` after its transpose).
        let m = match config.use_dora {
            true => Some(file.take::<B, 1>(&magnitude_key(name), [d_out], device)?),
            false => None,
        };
        adapters.insert(name.clone(), ((a.transpose(), b.transpose(), m), c.clone()));
    }
    let mut saved: HashMap<String, (Tensor<B, 2>, Option<Tensor<B, 1>>)> = HashMap::new();
    for name in &plan.modules_to_save {
        let taken = take_module_to_save(&mut file, name, info[name], device)?;
        saved.insert(name.clone(), taken);
    }
    file.finish()?;

    let mut err = None;
    model.visit_linears_mut(&mut |name, l| {
        if err.is_some() {
            return;
        }
        if let Some((t, c)) = adapters.remove(name) {
            if let Err(e) = attach_loaded(name, l, t, &c) {
                err = Some(e);
                return;
            }
        }
        if let Some((w, b)) = saved.remove(name) {
            // The file's dense weight replaces the base, quantized or not.
            if let Err(source) = l.replace_base(w, b) {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source,
                });
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(config),
    }
}
