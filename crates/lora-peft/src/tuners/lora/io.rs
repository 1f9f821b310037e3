//! PEFT adapter directories: `adapter_config.json` + `adapter_model.safetensors`
//! (PEFT `PeftModel.save_pretrained` / `from_pretrained`, `peft/utils/save_and_load.py`).
//!
//! Keys (adapter name removed, as PEFT saves them):
//! - `base_model.model.{layer}.lora_A.weight`: `[r, d_in]` f32 (our `lora_a` `[d_in, r]`
//!   transposed);
//! - `base_model.model.{layer}.lora_B.weight`: `[d_out, r]` f32 (our `lora_b` `[r, d_out]`
//!   transposed);
//! - `base_model.model.{layer}.weight` (+ `.bias`) for `modules_to_save` layers, in the Hugging
//!   Face layout: `[d_out, d_in]` for `nn.Linear`, `[d_in, d_out]` for GPT-2 `Conv1D`
//!   (`fan_in_fan_out`).
use crate::config::CONFIG_NAME;
use crate::matching::resolve;
use crate::{LoraConfig, PeftError};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lora_core::{LoraLayerConfig, NamedLinears};
use safetensors::{Dtype, SafeTensors};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// File name of the weights inside an adapter directory (PEFT `SAFETENSORS_WEIGHTS_NAME`).
pub const WEIGHTS_NAME: &str = "adapter_model.safetensors";

/// Key prefix PEFT gives every tensor (`PeftModel.base_model.model`).
pub const KEY_PREFIX: &str = "base_model.model.";

/// Writes `bytes` to `path` atomically: a temp file in the same directory, flushed and synced,
/// then renamed over `path`. Creates the directory if needed.
///
/// # Errors
/// [`PeftError::Io`] naming the directory or file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PeftError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PeftError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    lora_core::atomic_write(path, bytes).map_err(|source| PeftError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn tensor_bytes<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    what: &str,
) -> Result<Vec<u8>, PeftError> {
    let v = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| PeftError::State(format!("cannot read tensor {what}: {e:?}")))?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Saves the adapters of `model` as a PEFT adapter directory: `dir/adapter_config.json`
/// (`config`; for `SEQ_CLS` with `modules_to_save` completed by `classifier`/`score` as PEFT
/// writes it) and `dir/adapter_model.safetensors` (F32 tensors, metadata `{"format": "pt"}`,
/// keys as in the module docs). Both written atomically; `dir` is created. PEFT
/// (`PeftModel.from_pretrained`) and [`load_adapter`] read the result.
///
/// The model must carry exactly the adapters `config` implies (as [`crate::apply_lora`] made
/// them): same layers, same ranks and scalings; otherwise the file could not be loaded back.
///
/// # Errors
/// The errors of [`crate::resolve_targets`]; [`PeftError::State`] when a layer has an adapter
/// the config does not target, a targeted layer has none, or a rank/scaling differs from the
/// config's; [`PeftError::Io`].
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

    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut err: Option<PeftError> = None;
    model.visit_linears(&mut |name, l| {
        if err.is_some() {
            return;
        }
        let res = (|| -> Result<(), PeftError> {
            match (targets.get(name), l.adapter()) {
                (Some(c), Some(a)) => {
                    let want = c.scaling().map_err(|source| PeftError::Lora {
                        name: name.to_string(),
                        source,
                    })?;
                    if a.r != c.r || (a.scaling - want).abs() > 1e-9 * want.abs().max(1.0) {
                        return Err(PeftError::State(format!(
                            "layer `{name}`: adapter has r = {}, scaling = {} but the config gives \
                             r = {}, scaling = {want}",
                            a.r, a.scaling, c.r
                        )));
                    }
                    let (d_in, d_out) = l.dims();
                    let key_a = format!("{KEY_PREFIX}{name}.lora_A.weight");
                    let key_b = format!("{KEY_PREFIX}{name}.lora_B.weight");
                    let ta = tensor_bytes(a.lora_a.val().transpose(), &key_a)?;
                    let tb = tensor_bytes(a.lora_b.val().transpose(), &key_b)?;
                    tensors.push((key_a, vec![a.r, d_in], ta));
                    tensors.push((key_b, vec![d_out, a.r], tb));
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
                let (d_in, d_out) = l.dims();
                let key_w = format!("{KEY_PREFIX}{name}.weight");
                // A quantized base (not expected for a trainable module) is written dequantized.
                let (w, shape) = if l.fan_in_fan_out() {
                    (l.base_weight(), vec![d_in, d_out])
                } else {
                    (l.base_weight().transpose(), vec![d_out, d_in])
                };
                let bytes = tensor_bytes(w, &key_w)?;
                tensors.push((key_w, shape, bytes));
                if let Some(b) = l.bias() {
                    let key_b = format!("{KEY_PREFIX}{name}.bias");
                    let bytes = tensor_bytes(b, &key_b)?;
                    tensors.push((key_b, vec![d_out], bytes));
                }
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

    let st_path = dir.join(WEIGHTS_NAME);
    let views = tensors
        .iter()
        .map(|(k, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| PeftError::SafeTensors {
                    path: st_path.clone(),
                    msg: format!("tensor {k}: {e}"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| PeftError::SafeTensors {
        path: st_path.clone(),
        msg: e.to_string(),
    })?;

    let mut cfg = config.clone();
    if cfg.is_seq_cls() {
        cfg.modules_to_save = Some(cfg.effective_modules_to_save());
    }
    write_atomic(&st_path, &bytes)?;
    cfg.save(dir)?;
    Ok(())
}

/// PEFT saves keys without the adapter name; accept `lora_A.default.weight`,
/// `lora_B.default.weight` and `modules_to_save.default.weight` as well.
fn normalize_key(k: &str) -> String {
    k.replace(".lora_A.default.", ".lora_A.")
        .replace(".lora_B.default.", ".lora_B.")
        .replace(".modules_to_save.default.", ".")
}

struct AdapterFile<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
    /// Normalised key → key in the file.
    keys: HashMap<String, String>,
    used: HashSet<String>,
}

impl AdapterFile<'_> {
    /// Tensor `key` (normalised) as f32 with shape `expected` (PyTorch order).
    fn take<B: Backend, const D: usize>(
        &mut self,
        key: &str,
        expected: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, PeftError> {
        let orig = self.keys.get(key).ok_or_else(|| PeftError::MissingKey {
            path: self.path.to_path_buf(),
            key: key.to_string(),
        })?;
        let view = self.st.tensor(orig).map_err(|e| PeftError::SafeTensors {
            path: self.path.to_path_buf(),
            msg: format!("tensor {orig}: {e}"),
        })?;
        if view.shape() != expected {
            return Err(PeftError::Shape {
                path: self.path.to_path_buf(),
                key: orig.clone(),
                expected: expected.to_vec(),
                got: view.shape().to_vec(),
            });
        }
        let vals = lora_core::safetensors_f32(&view).ok_or_else(|| PeftError::Dtype {
            path: self.path.to_path_buf(),
            key: orig.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        self.used.insert(key.to_string());
        Ok(Tensor::from_data(TensorData::new(vals, expected), device))
    }
}

/// Loads a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`, as
/// written by PEFT's `save_pretrained` or [`save_adapter`]) into `model`: attaches an adapter
/// with the file's `lora_A`/`lora_B` to every layer the config targets (matching rules of
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
/// [`PeftError::Shape`] naming key, expected and actual shape; [`PeftError::Dtype`];
/// [`PeftError::State`] if a target layer is merged.
pub fn load_adapter<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    dir: &Path,
    device: &B::Device,
) -> Result<LoraConfig, PeftError> {
    let config = LoraConfig::from_file(dir.join(CONFIG_NAME))?;
    config.validate()?;
    let st_path = dir.join(WEIGHTS_NAME);
    let bytes = match std::fs::read(&st_path) {
        Ok(b) => b,
        Err(source) => {
            if dir.join("adapter_model.bin").exists() {
                return Err(PeftError::State(format!(
                    "{}: missing; only safetensors adapters are supported (found adapter_model.bin, \
                     a pickle file: re-save it with PEFT's safe_serialization=True)",
                    st_path.display()
                )));
            }
            return Err(PeftError::Io {
                path: st_path,
                source,
            });
        }
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| PeftError::SafeTensors {
        path: st_path.clone(),
        msg: e.to_string(),
    })?;
    let mut keys = HashMap::new();
    for k in st.names() {
        let n = normalize_key(k);
        if let Some(prev) = keys.insert(n.clone(), k.to_string()) {
            return Err(PeftError::State(format!(
                "{}: keys `{prev}` and `{k}` both stand for `{n}`",
                st_path.display()
            )));
        }
    }
    let mut file = AdapterFile {
        path: &st_path,
        st,
        keys,
        used: HashSet::new(),
    };

    let names = model.linear_names();
    let plan = resolve(&names, &config, false)?;
    // (d_in, d_out, has_bias, fan_in_fan_out, merged) per layer.
    let mut info: HashMap<String, (usize, usize, bool, bool, bool)> = HashMap::new();
    model.visit_linears(&mut |n, l| {
        let (i, o) = l.dims();
        info.insert(
            n.to_string(),
            (i, o, l.bias().is_some(), l.fan_in_fan_out(), l.is_merged()),
        );
    });

    let mut adapters: HashMap<String, (Tensor<B, 2>, Tensor<B, 2>, LoraLayerConfig)> =
        HashMap::new();
    for (name, c) in &plan.targets {
        let (d_in, d_out, _, _, merged) = info[name];
        if merged {
            return Err(PeftError::State(format!(
                "cannot load an adapter into merged layer `{name}`"
            )));
        }
        let a = file.take::<B, 2>(
            &format!("{KEY_PREFIX}{name}.lora_A.weight"),
            [c.r, d_in],
            device,
        )?;
        let b = file.take::<B, 2>(
            &format!("{KEY_PREFIX}{name}.lora_B.weight"),
            [d_out, c.r],
            device,
        )?;
        adapters.insert(name.clone(), (a.transpose(), b.transpose(), c.clone()));
    }
    let mut saved: HashMap<String, (Tensor<B, 2>, Option<Tensor<B, 1>>)> = HashMap::new();
    for name in &plan.modules_to_save {
        let (d_in, d_out, has_bias, fifo, _) = info[name];
        let key_w = format!("{KEY_PREFIX}{name}.weight");
        let w = if fifo {
            file.take::<B, 2>(&key_w, [d_in, d_out], device)?
        } else {
            file.take::<B, 2>(&key_w, [d_out, d_in], device)?
                .transpose()
        };
        let b = if has_bias {
            Some(file.take::<B, 1>(&format!("{KEY_PREFIX}{name}.bias"), [d_out], device)?)
        } else {
            None
        };
        saved.insert(name.clone(), (w, b));
    }
    let mut unexpected: Vec<&String> = file
        .keys
        .iter()
        .filter(|(n, _)| !file.used.contains(*n))
        .map(|(_, orig)| orig)
        .collect();
    unexpected.sort();
    if let Some(k) = unexpected.first() {
        return Err(PeftError::UnexpectedKey {
            path: st_path.clone(),
            key: (*k).clone(),
            total: unexpected.len(),
        });
    }

    let mut err = None;
    model.visit_linears_mut(&mut |name, l| {
        if err.is_some() {
            return;
        }
        if let Some((a, b, c)) = adapters.remove(name) {
            if let Err(source) = l.attach_tensors(a, b, &c) {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source,
                });
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
