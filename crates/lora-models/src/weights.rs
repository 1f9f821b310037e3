//! The weights of a Hugging Face checkpoint directory, one file or sharded: `model.safetensors`,
//! else the shards that `model.safetensors.index.json` lists. The loaders of every family read
//! through [`Weights`], so a sharded checkpoint loads as a single file does.
//!
//! Source: transformers `modeling_utils.py` (`SAFE_WEIGHTS_NAME`, `SAFE_WEIGHTS_INDEX_NAME`,
//! `get_checkpoint_shard_files`): the index is `{"metadata": {...}, "weight_map": {tensor:
//! shard file}}`, shard files sit beside it, and `save_pretrained(max_shard_size=...)` writes
//! them as `model-00001-of-00002.safetensors`.
use crate::st::StFile;
use crate::ModelError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The single-file checkpoint's name.
pub const SAFE_WEIGHTS_NAME: &str = "model.safetensors";
/// The shard index's name.
pub const SAFE_WEIGHTS_INDEX_NAME: &str = "model.safetensors.index.json";

/// A checkpoint's tensors by name, from one safetensors file or from its shards.
pub struct Weights {
    files: Vec<StFile>,
    /// Sharded: the index file and, for each tensor, its shard in `files`.
    index: Option<(PathBuf, HashMap<String, usize>)>,
}

impl Weights {
    /// One safetensors file.
    pub fn single(st: StFile) -> Self {
        Self {
            files: vec![st],
            index: None,
        }
    }

    /// Opens `dir/model.safetensors`, else the shards of `dir/model.safetensors.index.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`] naming `model.safetensors` when neither file exists or it is
    /// unreadable; [`ModelError::Format`] naming the index for bad JSON, a `weight_map` that is
    /// not an object of file names, a shard that cannot be read (naming the shard and a tensor
    /// listed for it), a tensor the index lists that its shard lacks, or a tensor in a shard
    /// that the index does not list (naming the shard and the tensor); the shards' own errors.
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join(SAFE_WEIGHTS_NAME);
        let index = dir.join(SAFE_WEIGHTS_INDEX_NAME);
        if single.exists() || !index.exists() {
            return Ok(Self::single(StFile::open(single)?));
        }
        Self::open_index(&index)
    }

    /// Opens the shards listed by the index file `index` (they sit beside it).
    ///
    /// # Errors
    /// As [`Weights::open_dir`] for a sharded checkpoint.
    pub fn open_index(index: &Path) -> Result<Self, ModelError> {
        let v = crate::config_json::read_json(index)?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| {
                ModelError::format(
                    index,
                    "expected an object `weight_map` (tensor → shard file)",
                )
            })?;
        // Shards in file order, so errors and reads are deterministic.
        let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, file) in map {
            let file = file.as_str().filter(|f| is_plain_file_name(f)).ok_or_else(|| {
                ModelError::format(
                    index,
                    format!("weight_map[`{key}`] is {file}, expected a shard file name beside the index"),
                )
            })?;
            by_shard.entry(file).or_default().push(key);
        }
        if by_shard.is_empty() {
            return Err(ModelError::format(index, "weight_map lists no tensor"));
        }
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files = Vec::with_capacity(by_shard.len());
        let mut of_key = HashMap::with_capacity(map.len());
        for (file, keys) in by_shard {
            let st = StFile::open(dir.join(file)).map_err(|e| {
                ModelError::format(
                    index,
                    format!(
                        "shard `{file}` (listed for tensor `{}`) cannot be used: {e}",
                        keys[0]
                    ),
                )
            })?;
            for key in &keys {
                if !st.contains(key) {
                    return Err(ModelError::format(
                        &st.path,
                        format!(
                            "has no tensor `{key}`, which {SAFE_WEIGHTS_INDEX_NAME} lists in it"
                        ),
                    ));
                }
                of_key.insert(key.to_string(), files.len());
            }
            for name in st.names() {
                if of_key.get(&name) != Some(&files.len()) {
                    return Err(ModelError::format(
                        &st.path,
                        format!("holds tensor `{name}`, which {SAFE_WEIGHTS_INDEX_NAME} does not list in this shard"),
                    ));
                }
            }
            files.push(st);
        }
        Ok(Self {
            files,
            index: Some((index.to_path_buf(), of_key)),
        })
    }

    /// The file that names the checkpoint in messages: `model.safetensors` or the index.
    pub fn path(&self) -> &Path {
        match &self.index {
            Some((p, _)) => p,
            None => &self.files[0].path,
        }
    }

    /// Whether the checkpoint is sharded.
    pub fn is_sharded(&self) -> bool {
        self.index.is_some()
    }

    /// The file holding `key` (the index's path when no file does).
    pub fn path_of(&self, key: &str) -> &Path {
        match self.file_of(key) {
            Some(f) => &f.path,
            None => self.path(),
        }
    }

    fn file_of(&self, key: &str) -> Option<&StFile> {
        match &self.index {
            Some((_, map)) => map.get(key).map(|&i| &self.files[i]),
            None => Some(&self.files[0]),
        }
    }

    /// Names of all tensors, in no particular order.
    pub fn names(&self) -> Vec<String> {
        match &self.index {
            Some((_, map)) => map.keys().cloned().collect(),
            None => self.files[0].names(),
        }
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.file_of(key).is_some_and(|f| f.contains(key))
    }

    /// Tensor `key` as f32 values (F32, F16 and BF16 widened) with its shape.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] naming the checkpoint file; [`ModelError::Dtype`].
    pub fn f32(&self, key: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        match self.file_of(key) {
            Some(f) => f.f32(key),
            None => Err(self.missing(key)),
        }
    }

    /// Tensor `key` as a burn f32 tensor of rank `D`, checking that its shape is `expected`.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`], [`ModelError::Dtype`], [`ModelError::Shape`].
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        key: &str,
        expected: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        match self.file_of(key) {
            Some(f) => f.tensor(key, expected, device),
            None => Err(self.missing(key)),
        }
    }

    fn missing(&self, key: &str) -> ModelError {
        ModelError::MissingKey {
            path: self.path().to_path_buf(),
            key: key.into(),
        }
    }
}

/// One path component naming a file (no separator, not `.` or `..`).
fn is_plain_file_name(f: &str) -> bool {
    !f.is_empty() && f != "." && f != ".." && !f.contains(['/', '\\'])
}
