//! Errors of config handling, target matching and adapter files.
use std::path::PathBuf;

/// Everything that can go wrong in `lora-peft`. Each variant names the file, key, field or value
/// concerned and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    /// A file could not be read (or a directory listed).
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file or directory could not be written (or created).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error (without the path).
        source: std::io::Error,
    },
    /// `adapter_config.json` is not valid JSON or has a field of the wrong type.
    #[error("{path}: invalid adapter config: {source}")]
    Json {
        /// The file (or `<memory>` for a string).
        path: PathBuf,
        /// serde_json's message (it names the line, column and usually the field).
        source: serde_json::Error,
    },
    /// A config field has a value PEFT itself rejects (e.g. `r = 0`, `lora_dropout = 1.5`).
    #[error("invalid config value {field} = {value}: {msg}")]
    Config {
        /// The field (PEFT's name).
        field: String,
        /// The offending value, as JSON.
        value: String,
        /// What was expected.
        msg: String,
    },
    /// `adapter_config.json`'s `peft_type` names no method this crate implements (a PEFT method
    /// not added yet, a name PEFT does not know, or not a string).
    #[error("{path}: peft_type = {value}: {msg}; accepted values: {accepted}")]
    UnsupportedPeftType {
        /// The config file.
        path: PathBuf,
        /// The value of `peft_type`, as JSON.
        value: String,
        /// Why it is refused.
        msg: String,
        /// The accepted values, as JSON strings joined by `, `.
        accepted: String,
    },
    /// A prompt-learning adapter's config (or tensor) does not fit the model it is put on: a
    /// prefix for another number of layers or key/value heads, a prompt for another hidden size.
    #[error("{path}: {field} = {value} does not fit the model: {msg}")]
    ModelMismatch {
        /// The config file (`<config>` for an in-memory config).
        path: PathBuf,
        /// The field (PEFT's name).
        field: String,
        /// The field's value, as JSON.
        value: String,
        /// The model's value and what was expected.
        msg: String,
    },
    /// A config field has a value PEFT accepts but this crate does not implement.
    #[error("{field} = {value} is not supported yet by lora-peft{}", if .msg.is_empty() { String::new() } else { format!(" ({})", .msg) })]
    Unsupported {
        /// The field (PEFT's name).
        field: String,
        /// The value, as JSON.
        value: String,
        /// Extra detail (may be empty).
        msg: String,
    },
    /// A pattern in the config is not a valid regular expression (Rust `regex` syntax, which
    /// covers Python `re` except look-around and back-references).
    #[error("{field}: invalid regular expression `{pattern}`: {msg}")]
    Regex {
        /// The field holding the pattern.
        field: String,
        /// The pattern.
        pattern: String,
        /// The regex crate's message.
        msg: String,
    },
    /// `target_modules` (or one of its entries) matched no linear layer of the model.
    #[error(
        "target_modules {target} matched no linear layer{detail}. The model has {count} linear layers: {shown:?}{more}",
        more = if *.count > .shown.len() { format!(" and {} more", .count - .shown.len()) } else { String::new() }
    )]
    NoMatch {
        /// The target (whole `target_modules` or the single entry that matched nothing), as JSON.
        target: String,
        /// Extra explanation (layers_to_transform, exclusions), may be empty.
        detail: String,
        /// The first (up to 20) linear layer names.
        shown: Vec<String>,
        /// How many linear layers there are.
        count: usize,
    },
    /// A `modules_to_save` entry matched no linear layer (only linear layers can be saved here).
    #[error(
        "modules_to_save entry `{entry}` matched no linear layer (only linear layers are supported). The model has {count} linear layers: {shown:?}"
    )]
    ModulesToSaveNoMatch {
        /// The entry.
        entry: String,
        /// The first (up to 20) linear layer names.
        shown: Vec<String>,
        /// How many linear layers there are.
        count: usize,
    },
    /// A `.safetensors` file does not parse (truncated, bad header...).
    #[error("{path}: not a valid safetensors file: {msg}")]
    SafeTensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        msg: String,
    },
    /// A tensor the config implies is absent from the adapter file.
    #[error("{path}: missing key `{key}` (expected by the adapter config)")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// The adapter file holds a tensor nothing in the config/model accounts for.
    #[error("{path}: unexpected key `{key}` ({total} unexpected in all): it matches no adapter or modules_to_save layer of the config on this model")]
    UnexpectedKey {
        /// The file.
        path: PathBuf,
        /// The first unexpected key (sorted order).
        key: String,
        /// How many keys were unexpected.
        total: usize,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{key}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Expected shape (PyTorch order).
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// A tensor has a dtype other than F32/F16/BF16.
    #[error("{path}: tensor `{key}` has dtype {dtype}, expected F32, F16 or BF16")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// The model's state does not allow the operation (merged layer, adapters inconsistent with
    /// the config when saving, no adapters...).
    #[error("{0}")]
    State(String),
    /// An adapter name the model does not hold (PEFT: "Adapter … does not exist").
    #[error("unknown adapter {name:?}: the model has adapters {known:?}")]
    UnknownAdapter {
        /// The name asked for.
        name: String,
        /// The names the model holds, in the order they were added.
        known: Vec<String>,
    },
    /// The LoRA layer refused an operation.
    #[error("layer `{name}`: {source}")]
    Lora {
        /// The layer name.
        name: String,
        /// The layer's error.
        source: lora_core::LoraError,
    },
}
