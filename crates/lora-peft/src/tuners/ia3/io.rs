//! Saving and loading (IA)³ adapter directories (PEFT `PeftModel.save_pretrained` /
//! `from_pretrained` for `peft_type = "IA3"`): the `ia3_l` tensors ([`super::keys`]) plus the
//! generic parts of [`crate::adapter_dir`] (config, `modules_to_save`, strict reading).
use super::keys::{ia3_l_key, ia3_l_shape, ADAPTER_PARTS};
use super::targeting::Ia3LayerConfig;
use super::IA3Config;
use crate::adapter_dir::{
    push_module_to_save, read_weights, take_module_to_save, tensor_f32, write_weights, AdapterFile,
    LayerInfo, CONFIG_NAME, WEIGHTS_NAME,
};
use crate::matching::resolve;
use crate::PeftError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_core::{Adapter, Ia3Adapter, NamedLinears};
use lora_io::StTensor;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Saves the (IA)³ vectors of `model` as a PEFT adapter directory:
/// `dir/adapter_config.json` (`config` completed as PEFT saves it: [`IA3Config::prepare`]'s
/// targets, `fan_in_fan_out` set to the targeted layers' layout as PEFT's `_create_new_module`
/// sets it, and for `SEQ_CLS` `modules_to_save` completed by `classifier`/`score`) and
/// `dir/adapter_model.safetensors` (F32, metadata `{"format": "pt"}`, keys and shapes as in
/// [`super::keys`]). Both written atomically; `dir` is created. PEFT
/// (`PeftModel.from_pretrained`) and [`load_ia3`] read the result.
///
/// The model must carry exactly the adapters `config` implies (as [`super::apply_ia3`] made
/// them): the same layers, each with an (IA)³ adapter of the same kind (input or output
/// scaling).
///
/// # Errors
/// The errors of [`IA3Config::prepare`] and of the matching; [`PeftError::State`] when a layer
/// has an adapter the config does not target, a targeted layer has none or one of another
/// method, or its scaling kind differs from the config's; [`PeftError::Io`].
pub fn save_ia3<B: Backend, M: NamedLinears<B>>(
    model: &M,
    config: &IA3Config,
    dir: &Path,
) -> Result<(), PeftError> {
    let names = model.linear_names();
    let mut cfg = config.prepare(&names)?;
    let plan = resolve(&names, &cfg, false)?;
    let targets: HashMap<&str, Ia3LayerConfig> =
        plan.targets.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let mts: HashSet<&str> = plan.modules_to_save.iter().map(|s| s.as_str()).collect();

    let mut tensors: Vec<(String, StTensor)> = Vec::new();
    let mut last_layout = None;
    let mut err: Option<PeftError> = None;
    model.visit_linears(&mut |name, l| {
        if err.is_some() {
            return;
        }
        let res =
            (|| -> Result<(), PeftError> {
                match (targets.get(name), l.attached_adapter()) {
                    (Some(c), Some(Adapter::Ia3(a))) => {
                        if a.is_feedforward() != c.is_feedforward {
                            return Err(PeftError::State(format!(
                            "layer `{name}`: its ia3_l scales the {} but the config makes it {}",
                            if a.is_feedforward() { "input" } else { "output" },
                            if c.is_feedforward {
                                "feed-forward (input scaling)"
                            } else {
                                "output scaling"
                            }
                        )));
                        }
                        let (d_in, d_out) = l.dims();
                        let key = ia3_l_key(name);
                        let v = tensor_f32(a.ia3_l(), &key)?;
                        tensors
                            .push((key, StTensor::f32(ia3_l_shape(c, d_in, d_out).to_vec(), &v)));
                        last_layout = Some(l.fan_in_fan_out());
                    }
                    (Some(_), Some(_)) => {
                        return Err(PeftError::State(format!(
                        "the IA3 config targets layer `{name}` but it holds an adapter of another \
                         method"
                    )))
                    }
                    (Some(_), None) => {
                        return Err(PeftError::State(format!(
                        "the config targets layer `{name}` but it has no adapter (apply_ia3 first)"
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

    if let Some(fifo) = last_layout {
        cfg.fan_in_fan_out = fifo;
    }
    if cfg.is_seq_cls() {
        cfg.modules_to_save = Some(cfg.effective_modules_to_save());
    }
    write_weights(&dir.join(WEIGHTS_NAME), &tensors)?;
    cfg.save(dir)?;
    Ok(())
}

/// Loads a PEFT (IA)³ adapter directory (`adapter_config.json` + `adapter_model.safetensors`,
/// as written by PEFT's `save_pretrained` or [`save_ia3`]) into `model`: attaches an
/// [`Ia3Adapter`] with the file's `ia3_l` (`[d_out, 1]`, or `[1, d_in]` for a feed-forward
/// layer) to every layer the config targets, and replaces the weight (and bias) of every
/// `modules_to_save` layer with the file's, made trainable. F32, F16 and BF16 tensors are read
/// (as f32). Nothing in the model changes unless the whole file checks out. Returns the config.
///
/// # Errors
/// [`PeftError::Io`] (a missing file, named), [`PeftError::Json`]; the errors of
/// [`IA3Config::validate`] (PEFT's: `feedforward_modules` not a subset of `target_modules`) and
/// of the matching; [`PeftError::SafeTensors`]; [`PeftError::MissingKey`] for a tensor the
/// config implies; [`PeftError::UnexpectedKey`] for a tensor nothing accounts for;
/// [`PeftError::Shape`] naming the key, the expected and the actual shape (an output-scaling
/// `[d_out, 1]` vector where the config says feed-forward, or the other way round);
/// [`PeftError::Dtype`]; [`PeftError::State`] if a target layer is merged.
pub fn load_ia3<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    dir: &Path,
    device: &B::Device,
) -> Result<IA3Config, PeftError> {
    let config = IA3Config::from_file(dir.join(CONFIG_NAME))?;
    let names = model.linear_names();
    let prepared = config.prepare(&names)?;
    let (st_path, bytes) = read_weights(dir)?;
    let mut file = AdapterFile::parse(&st_path, &bytes, ADAPTER_PARTS)?;

    let plan = resolve(&names, &prepared, false)?;
    let mut info: HashMap<String, LayerInfo> = HashMap::new();
    model.visit_linears(&mut |n, l| {
        info.insert(n.to_string(), LayerInfo::of(l));
    });

    let mut adapters: HashMap<String, Ia3Adapter<B>> = HashMap::new();
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
        let shape = ia3_l_shape(c, d_in, d_out);
        let t: Tensor<B, 2> = file.take(&ia3_l_key(name), shape, device)?;
        let a = Ia3Adapter::from_tensor(
            t.reshape([shape[0] * shape[1]]),
            d_in,
            d_out,
            c.is_feedforward,
        )
        .map_err(|source| PeftError::Lora {
            name: name.clone(),
            source,
        })?;
        adapters.insert(name.clone(), a);
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
        if let Some(a) = adapters.remove(name) {
            if let Err(source) = l.attach_adapter(a) {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source,
                });
                return;
            }
        }
        if let Some((w, b)) = saved.remove(name) {
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
