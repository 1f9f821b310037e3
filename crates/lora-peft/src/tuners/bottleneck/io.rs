//! AdapterHub adapter directories for bottleneck adapters (`adapters` 1.3 `loading.py`
//! `AdapterLoader.save` / `load`, `model.save_adapter(dir, name, use_safetensors=True)`):
//! `adapter_config.json` ([`BnAdapterConfig`]) and `adapter.safetensors` (keys in
//! [`super::keys`]).
use super::keys::{adapter_keys, adapter_shapes};
use super::model::{check_leave_out, set_all, slot_error};
use super::{BnConfig, ADAPTERHUB_VERSION, ADAPTERHUB_WEIGHTS_NAME};
use crate::adapter_dir::{
    read_config_text, tensor_f32, write_atomic, write_weights, AdapterFile, CONFIG_NAME,
};
use crate::PeftError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_core::{BottleneckAdapter, BottleneckLayers, BottleneckLocation};
use lora_io::StTensor;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// AdapterHub's `adapter_config.json` of one adapter: the [`BnConfig`] under `"config"` and
/// the metadata `AdapterLoader.save` adds. Unknown top-level fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BnAdapterConfig {
    /// The adapter's architecture.
    pub config: BnConfig,
    /// The model's hidden size (must equal the model's when loading).
    pub hidden_size: usize,
    /// The transformers class the adapter was saved from (`"GPT2LMHeadModel"`).
    #[serde(default)]
    pub model_class: Option<String>,
    /// The base model's name or path (informational).
    #[serde(default)]
    pub model_name: Option<String>,
    /// The transformers `model_type` (`"gpt2"`, `"llama"`; must equal the model's).
    pub model_type: String,
    /// The adapter's name; it is part of every tensor key.
    pub name: String,
    /// `"adapters.1.3.0"`.
    pub version: String,
    /// Fields this crate does not model, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BnAdapterConfig {
    /// The config AdapterHub would write for adapter `name` of `config` on `model`
    /// (`model_name`: the base model's name or path, `None` for JSON `null`).
    pub fn new<B: Backend, M: BottleneckLayers<B>>(
        model: &M,
        config: BnConfig,
        name: &str,
        model_name: Option<&str>,
    ) -> Self {
        Self {
            config,
            hidden_size: model.hidden_size(),
            model_class: Some(model.model_class().into()),
            model_name: model_name.map(Into::into),
            model_type: model.model_type().into(),
            name: name.into(),
            version: ADAPTERHUB_VERSION.into(),
            extra: Map::new(),
        }
    }

    /// Parses `adapter_config.json` text (`path` names it in errors). Does not validate.
    ///
    /// # Errors
    /// [`PeftError::Json`] naming the file (serde names the missing or mistyped field).
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, PeftError> {
        serde_json::from_str(text).map_err(|source| PeftError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads `path` (the file, or the adapter directory holding `adapter_config.json`).
    ///
    /// # Errors
    /// [`PeftError::Io`], [`PeftError::Json`] naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PeftError> {
        let (path, text) = read_config_text(path.as_ref())?;
        Self::from_json_str(&text, &path)
    }

    /// The JSON text AdapterHub writes: keys sorted at every level, two-space indent.
    ///
    /// # Errors
    /// [`PeftError::State`] if serialization fails (not expected).
    pub fn to_json_string(&self) -> Result<String, PeftError> {
        let v = serde_json::to_value(self)
            .map_err(|e| PeftError::State(format!("cannot serialize the adapter config: {e}")))?;
        serde_json::to_string_pretty(&sorted(v))
            .map_err(|e| PeftError::State(format!("cannot serialize the adapter config: {e}")))
    }

    /// Checks the config against `model`: the [`BnConfig`] is one this crate implements, and
    /// `hidden_size`, `model_type` and `leave_out` fit the model.
    ///
    /// # Errors
    /// As [`BnConfig::validate`]; [`PeftError::Config`] naming `hidden_size`, `model_type` or
    /// `leave_out` with the model's value.
    pub fn check_model<B: Backend, M: BottleneckLayers<B>>(
        &self,
        model: &M,
    ) -> Result<(), PeftError> {
        self.config.validate(false)?;
        if self.hidden_size != model.hidden_size() {
            return Err(PeftError::Config {
                field: "hidden_size".into(),
                value: self.hidden_size.to_string(),
                msg: format!("the model's hidden size is {}", model.hidden_size()),
            });
        }
        if self.model_type != model.model_type() {
            return Err(PeftError::Config {
                field: "model_type".into(),
                value: format!("{:?}", self.model_type),
                msg: format!("the model is {:?}", model.model_type()),
            });
        }
        check_leave_out(model.num_layers(), &self.config)
    }
}

/// `v` with the keys of every object in sorted order (Python `json.dump(..., sort_keys=True)`),
/// whatever map type serde_json was built with.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Saves `model`'s bottleneck adapters as the AdapterHub directory `dir`:
/// `dir/adapter_config.json` (`config`) and `dir/adapter.safetensors` (F32, PyTorch layout),
/// both written atomically; `dir` is created. AdapterHub's `model.load_adapter(dir)` and
/// [`load_bottleneck`] read the result.
///
/// # Errors
/// As [`BnAdapterConfig::check_model`]; [`PeftError::State`] when the model's adapters are
/// not the ones the config describes (a slot filled or empty against the config, a different
/// layer config); [`PeftError::Io`].
pub fn save_bottleneck<B: Backend, M: BottleneckLayers<B>>(
    model: &M,
    config: &BnAdapterConfig,
    dir: &Path,
) -> Result<(), PeftError> {
    config.check_model(model)?;
    let d = model.hidden_size();
    let mut tensors: Vec<(String, StTensor)> = Vec::new();
    for layer in 0..model.num_layers() {
        for loc in BottleneckLocation::ALL {
            let want = config.config.layer_config(d, layer, loc, false)?;
            let slot = format!("{}.{}", model.layer_name(layer), loc.module_name());
            let a = match (want, model.bottleneck(layer, loc)) {
                (None, None) => continue,
                (Some(_), None) => {
                    return Err(PeftError::State(format!(
                        "the config puts an adapter at `{slot}` but the model has none there"
                    )))
                }
                (None, Some(_)) => {
                    return Err(PeftError::State(format!(
                        "`{slot}` has an adapter but the config puts none there"
                    )))
                }
                (Some(w), Some(a)) => {
                    let mut have = a.config().clone();
                    have.init_weights = w.init_weights;
                    if have != w {
                        return Err(PeftError::State(format!(
                            "`{slot}`: the adapter is {have:?} but the config gives {w:?}"
                        )));
                    }
                    a
                }
            };
            let keys = adapter_keys(&model.layer_name(layer), loc, &config.name);
            let shapes = adapter_shapes(d, a.config().bottleneck_size);
            let values = [
                tensor_f32(a.down_weight().transpose(), &keys[0])?,
                tensor_f32(a.down_bias(), &keys[1])?,
                tensor_f32(a.up_weight().transpose(), &keys[2])?,
                tensor_f32(a.up_bias(), &keys[3])?,
            ];
            for ((k, s), v) in keys.into_iter().zip(shapes).zip(values) {
                tensors.push((k, StTensor::f32(s, &v)));
            }
        }
    }
    write_atomic(&dir.join(CONFIG_NAME), config.to_json_string()?.as_bytes())?;
    write_weights(&dir.join(ADAPTERHUB_WEIGHTS_NAME), &tensors)
}

/// The bytes of `dir/adapter.safetensors` and its path.
fn read_weights(dir: &Path) -> Result<(PathBuf, Vec<u8>), PeftError> {
    let path = dir.join(ADAPTERHUB_WEIGHTS_NAME);
    lora_io::read_regular_file(&path).map(|b| (path.clone(), b)).map_err(|source| {
        if dir.join("pytorch_adapter.bin").exists() {
            PeftError::State(format!(
                "{}: missing; only safetensors adapters are supported (found pytorch_adapter.bin, \
                 a pickle file: re-save it with AdapterHub's save_adapter(..., use_safetensors=True))",
                path.display()
            ))
        } else {
            PeftError::Io { path, source }
        }
    })
}

/// Loads the AdapterHub bottleneck adapter directory `dir` into `model` (AdapterHub
/// `model.load_adapter(dir)` then `set_active_adapters(name)`): every slot the config names
/// gets its adapter from `adapter.safetensors` (weights transposed to `[d_in, d_out]`), every
/// other slot is emptied. Strict: each expected key must be there with its shape, and no other
/// key may be. The model is unchanged on error. Returns the config.
///
/// # Errors
/// [`PeftError::Io`] / [`PeftError::Json`] for the config; as
/// [`BnAdapterConfig::check_model`] (unsupported config values, `hidden_size` or `model_type`
/// not the model's); [`PeftError::MissingKey`], [`PeftError::Shape`], [`PeftError::Dtype`],
/// [`PeftError::UnexpectedKey`], [`PeftError::SafeTensors`] naming the file and key;
/// [`PeftError::State`] when only `pytorch_adapter.bin` is there.
pub fn load_bottleneck<B: Backend, M: BottleneckLayers<B>>(
    model: &mut M,
    dir: &Path,
    device: &B::Device,
) -> Result<BnAdapterConfig, PeftError> {
    let config = BnAdapterConfig::from_file(dir.join(CONFIG_NAME))?;
    config.check_model(model)?;
    let (path, bytes) = read_weights(dir)?;
    let mut file = AdapterFile::parse(&path, &bytes, &[])?;
    let d = model.hidden_size();
    let mut built = Vec::new();
    for layer in 0..model.num_layers() {
        for loc in BottleneckLocation::ALL {
            let adapter = match config.config.layer_config(d, layer, loc, false)? {
                None => None,
                Some(c) => {
                    let db = c.bottleneck_size;
                    let keys = adapter_keys(&model.layer_name(layer), loc, &config.name);
                    let down: Tensor<B, 2> = file.take(&keys[0], [db, d], device)?;
                    let down_b: Tensor<B, 1> = file.take(&keys[1], [db], device)?;
                    let up: Tensor<B, 2> = file.take(&keys[2], [d, db], device)?;
                    let up_b: Tensor<B, 1> = file.take(&keys[3], [d], device)?;
                    let a = BottleneckAdapter::from_tensors(
                        down.transpose(),
                        down_b,
                        up.transpose(),
                        up_b,
                        &c,
                    )
                    .map_err(|e| slot_error(layer, loc, e))?;
                    Some(a)
                }
            };
            built.push((layer, loc, adapter));
        }
    }
    file.finish()?;
    set_all(model, built)?;
    Ok(config)
}
