//! PEFT adapter directories, whatever the method: `adapter_config.json` +
//! `adapter_model.safetensors` (PEFT `PeftModel.save_pretrained` / `from_pretrained`,
//! `peft/utils/save_and_load.py`, `peft/utils/constants.py`).
//!
//! What every method shares lives here: the file names, the key prefix
//! `base_model.model.`, reading the config text, writing files atomically through `lora-io`,
//! the adapter-name normalisation of keys (`lora_A.default.weight` → `lora_A.weight`), strict
//! reading of the tensors (shape, dtype, missing and unexpected keys) and the `modules_to_save`
//! tensors (`base_model.model.{layer}.weight` / `.bias`, Hugging Face layout). A method's own
//! keys live in `tuners::<method>::keys`.
use crate::PeftError;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lora_core::LoraLinear;
use lora_io::{IoError, StTensor};
use safetensors::SafeTensors;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// File name of the config inside an adapter directory (PEFT `CONFIG_NAME`).
pub const CONFIG_NAME: &str = "adapter_config.json";

/// File name of the weights inside an adapter directory (PEFT `SAFETENSORS_WEIGHTS_NAME`).
pub const WEIGHTS_NAME: &str = "adapter_model.safetensors";

/// Key prefix PEFT gives every tensor (`PeftModel.base_model.model`).
pub const KEY_PREFIX: &str = "base_model.model.";

/// PEFT's default adapter name, which `save_pretrained` strips from the keys.
const DEFAULT_ADAPTER: &str = "default";

/// A write error as [`PeftError::Write`], naming `path` once.
fn write_error(path: &Path, source: std::io::Error) -> PeftError {
    PeftError::Write {
        path: path.to_path_buf(),
        source: lora_io::without_path_prefix(path, source),
    }
}

fn create_parent(path: &Path) -> Result<(), PeftError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| write_error(dir, source))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (`lora_io::atomic_write`: a temp file in the same
/// directory, flushed and synced, then renamed over `path`). Creates the directory if needed.
///
/// # Errors
/// [`PeftError::Write`] naming the directory or file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PeftError> {
    create_parent(path)?;
    lora_io::atomic_write(path, bytes).map_err(|source| write_error(path, source))
}

/// Writes `tensors` as the safetensors file `path` (metadata `{"format": "pt"}`, what PEFT and
/// transformers expect) atomically through `lora_io::write_safetensors`, creating the directory.
///
/// # Errors
/// [`PeftError::SafeTensors`] when a shape does not match its values; [`PeftError::Write`].
pub fn write_weights(path: &Path, tensors: &[(String, StTensor)]) -> Result<(), PeftError> {
    create_parent(path)?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    lora_io::write_safetensors(path, tensors, Some(meta)).map_err(|e| match e {
        IoError::Io(source) => write_error(path, source),
        IoError::SafeTensors { message, .. } => PeftError::SafeTensors {
            path: path.to_path_buf(),
            msg: message,
        },
    })
}

/// The text of an adapter config: `path` may be the file or the adapter directory (then
/// `path/adapter_config.json`). Returns the file's path and its text.
///
/// # Errors
/// [`PeftError::Io`] naming the file.
pub fn read_config_text(path: &Path) -> Result<(PathBuf, String), PeftError> {
    let mut path = path.to_path_buf();
    if path.is_dir() {
        path = path.join(CONFIG_NAME);
    }
    let text = lora_io::read_regular_to_string(&path).map_err(|source| PeftError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((path, text))
}

/// The values of `t` as f32, row-major; `what` (the key) names it in the error.
///
/// # Errors
/// [`PeftError::State`] when the backend cannot read the tensor back.
pub fn tensor_f32<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    what: &str,
) -> Result<Vec<f32>, PeftError> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| PeftError::State(format!("cannot read tensor {what}: {e:?}")))
}

/// PEFT saves keys without the adapter name; a key written with it
/// (`….{part}.default.weight` for each of the method's `parts`, e.g. `lora_A`, and
/// `….modules_to_save.default.weight`, DoRA's `….lora_magnitude_vector.default`) is read as the
/// key without it.
pub fn normalize_key(k: &str, parts: &[&str]) -> String {
    let mut k = k.to_string();
    for p in parts {
        k = k.replace(&format!(".{p}.{DEFAULT_ADAPTER}."), &format!(".{p}."));
    }
    // DoRA's magnitude has no `.weight` (PEFT `LoraModel._get_adapter_state_dict` drops it), so
    // with the adapter name the key ends in it.
    let dora = format!(".lora_magnitude_vector.{DEFAULT_ADAPTER}");
    if let Some(stem) = k.strip_suffix(&dora) {
        k = format!("{stem}.lora_magnitude_vector");
    }
    k.replace(&format!(".modules_to_save.{DEFAULT_ADAPTER}."), ".")
}

/// The bytes of `dir/adapter_model.safetensors` and the file's path.
///
/// # Errors
/// [`PeftError::State`] when only a pickle `adapter_model.bin` is there (not supported: re-save
/// with `safe_serialization=True`); [`PeftError::Io`] naming the missing file otherwise.
pub fn read_weights(dir: &Path) -> Result<(PathBuf, Vec<u8>), PeftError> {
    let st_path = dir.join(WEIGHTS_NAME);
    match lora_io::read_regular_file(&st_path) {
        Ok(b) => Ok((st_path, b)),
        Err(source) => {
            if dir.join("adapter_model.bin").exists() {
                return Err(PeftError::State(format!(
                    "{}: missing; only safetensors adapters are supported (found adapter_model.bin, \
                     a pickle file: re-save it with PEFT's safe_serialization=True)",
                    st_path.display()
                )));
            }
            Err(PeftError::Io {
                path: st_path,
                source,
            })
        }
    }
}

/// An adapter weights file being read: every tensor must be taken exactly once
/// ([`AdapterFile::take`], then [`AdapterFile::finish`] refuses the rest).
pub struct AdapterFile<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
    /// Normalised key → key in the file.
    keys: HashMap<String, String>,
    used: HashSet<String>,
}

impl<'a> AdapterFile<'a> {
    /// Parses the safetensors `bytes` of `path`, normalising keys with [`normalize_key`] and
    /// the method's adapter `parts`.
    ///
    /// # Errors
    /// [`PeftError::SafeTensors`] (truncated or corrupt file); [`PeftError::State`] when two keys
    /// stand for the same normalised key.
    pub fn parse(path: &'a Path, bytes: &'a [u8], parts: &[&str]) -> Result<Self, PeftError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| PeftError::SafeTensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut keys = HashMap::new();
        for k in st.names() {
            let n = normalize_key(k, parts);
            if let Some(prev) = keys.insert(n.clone(), k.to_string()) {
                return Err(PeftError::State(format!(
                    "{}: keys `{prev}` and `{k}` both stand for `{n}`",
                    path.display()
                )));
            }
        }
        Ok(Self {
            path,
            st,
            keys,
            used: HashSet::new(),
        })
    }

    /// Tensor `key` (normalised) as f32 with shape `expected` (PyTorch order).
    ///
    /// # Errors
    /// [`PeftError::MissingKey`], [`PeftError::SafeTensors`], [`PeftError::Shape`] (naming the
    /// key, expected and actual shape), [`PeftError::Dtype`] (not F32/F16/BF16).
    pub fn take<B: Backend, const D: usize>(
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
        let vals = lora_io::f32_values(&view).ok_or_else(|| PeftError::Dtype {
            path: self.path.to_path_buf(),
            key: orig.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        self.used.insert(key.to_string());
        Ok(Tensor::from_data(TensorData::new(vals, expected), device))
    }

    /// Checks that every tensor of the file was taken.
    ///
    /// # Errors
    /// [`PeftError::UnexpectedKey`] naming the first left-over key (sorted) and the count.
    pub fn finish(&self) -> Result<(), PeftError> {
        let mut unexpected: Vec<&String> = self
            .keys
            .iter()
            .filter(|(n, _)| !self.used.contains(*n))
            .map(|(_, orig)| orig)
            .collect();
        unexpected.sort();
        match unexpected.first() {
            Some(k) => Err(PeftError::UnexpectedKey {
                path: self.path.to_path_buf(),
                key: (*k).clone(),
                total: unexpected.len(),
            }),
            None => Ok(()),
        }
    }
}

/// Key of parameter `param` (`weight`, `bias`) of a `modules_to_save` layer.
pub fn module_key(layer: &str, param: &str) -> String {
    format!("{KEY_PREFIX}{layer}.{param}")
}

/// Appends the tensors of `modules_to_save` layer `name` in the Hugging Face layout:
/// `base_model.model.{name}.weight` `[d_out, d_in]` for `nn.Linear`, `[d_in, d_out]` for GPT-2
/// `Conv1D` (`fan_in_fan_out`), and `.bias` `[d_out]` when the layer has one. A quantized base
/// (not expected for a trainable module) is written dequantized.
///
/// # Errors
/// [`PeftError::State`] when a tensor cannot be read back.
pub fn push_module_to_save<B: Backend>(
    name: &str,
    l: &LoraLinear<B>,
    tensors: &mut Vec<(String, StTensor)>,
) -> Result<(), PeftError> {
    let (d_in, d_out) = l.dims();
    let key_w = module_key(name, "weight");
    let (w, shape) = if l.fan_in_fan_out() {
        (l.base_weight(), vec![d_in, d_out])
    } else {
        (l.base_weight().transpose(), vec![d_out, d_in])
    };
    let vals = tensor_f32(w, &key_w)?;
    tensors.push((key_w, StTensor::f32(shape, &vals)));
    if let Some(b) = l.bias() {
        let key_b = module_key(name, "bias");
        let vals = tensor_f32(b, &key_b)?;
        tensors.push((key_b, StTensor::f32(vec![d_out], &vals)));
    }
    Ok(())
}

/// What the reader needs to know of a layer: `(d_in, d_out)`, whether it has a bias, its
/// layout (`fan_in_fan_out`) and whether it is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// `(d_in, d_out)`.
    pub dims: (usize, usize),
    /// Whether the layer has a bias.
    pub has_bias: bool,
    /// GPT-2 `Conv1D` layout (`[d_in, d_out]` in files).
    pub fan_in_fan_out: bool,
    /// Whether an adapter is merged into the base.
    pub merged: bool,
}

impl LayerInfo {
    /// The info of `l`.
    pub fn of<B: Backend>(l: &LoraLinear<B>) -> Self {
        Self {
            dims: l.dims(),
            has_bias: l.bias().is_some(),
            fan_in_fan_out: l.fan_in_fan_out(),
            merged: l.is_merged(),
        }
    }
}

/// Takes the weight `[d_in, d_out]` (transposed back from the Hugging Face layout) and bias of
/// `modules_to_save` layer `name` from `file`.
///
/// # Errors
/// As [`AdapterFile::take`].
pub fn take_module_to_save<B: Backend>(
    file: &mut AdapterFile<'_>,
    name: &str,
    info: LayerInfo,
    device: &B::Device,
) -> Result<(Tensor<B, 2>, Option<Tensor<B, 1>>), PeftError> {
    let (d_in, d_out) = info.dims;
    let key_w = module_key(name, "weight");
    let w = if info.fan_in_fan_out {
        file.take::<B, 2>(&key_w, [d_in, d_out], device)?
    } else {
        file.take::<B, 2>(&key_w, [d_out, d_in], device)?
            .transpose()
    };
    let b = if info.has_bias {
        Some(file.take::<B, 1>(&module_key(name, "bias"), [d_out], device)?)
    } else {
        None
    };
    Ok((w, b))
}

/// Parses `adapter_config.json` text into a method's config struct (`path` names the file in
/// errors); the one parser every method's `from_json_str` uses.
///
/// # Errors
/// [`PeftError::Json`] naming `path` (serde names the missing or mistyped field).
pub fn parse_config<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, PeftError> {
    serde_json::from_str(text).map_err(|source| PeftError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the config text `json` to `dir/adapter_config.json` atomically, creating `dir`;
/// returns the file's path. The one writer every method's `save` uses.
///
/// # Errors
/// [`PeftError::Io`].
pub fn save_config_text(dir: &Path, json: &str) -> Result<PathBuf, PeftError> {
    let path = dir.join(CONFIG_NAME);
    write_atomic(&path, json.as_bytes())?;
    Ok(path)
}
