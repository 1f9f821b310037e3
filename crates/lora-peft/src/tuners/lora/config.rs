//! `LoraConfig`: Hugging Face PEFT's `adapter_config.json` for LoRA.
//!
//! Field names, defaults and checks follow PEFT 0.21 (`peft/tuners/lora/config.py`,
//! `LoraConfig` and its `__post_init__`). Files written by PEFT load here: fields this crate does
//! not model are kept in [`LoraConfig::extra`] and written back unchanged; the ones that would
//! change the adapter's meaning (DoRA, lora_bias, QALoRA, aLoRA, VeLoRA...) are refused by
//! [`LoraConfig::validate`] with [`PeftError::Unsupported`].
use crate::PeftError;
use lora_core::{LoraInit, LoraLayerConfig};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// File name of the config inside an adapter directory (PEFT `CONFIG_NAME`).
pub const CONFIG_NAME: &str = "adapter_config.json";

/// PEFT's `target_modules` / `exclude_modules`: a list of module names (a name matches when it
/// equals an entry or ends with `"." + entry`) or one string used as a full-match regular
/// expression (`re.fullmatch`). The string `"all-linear"` (any case) in `target_modules` means
/// every linear layer except the output layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Names or name suffixes.
    List(Vec<String>),
    /// A full-match regular expression (or `"all-linear"`).
    Pattern(String),
}

impl TargetModules {
    /// Whether this is PEFT's `"all-linear"` shorthand (a string, compared case-insensitively).
    pub fn is_all_linear(&self) -> bool {
        matches!(self, TargetModules::Pattern(s) if s.eq_ignore_ascii_case("all-linear"))
    }
}

impl From<&[&str]> for TargetModules {
    fn from(v: &[&str]) -> Self {
        TargetModules::List(v.iter().map(|s| s.to_string()).collect())
    }
}

/// PEFT's `layers_to_transform`: one layer index or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayersToTransform {
    /// A single layer index.
    One(usize),
    /// Several layer indices.
    List(Vec<usize>),
}

impl LayersToTransform {
    /// Whether layer `i` is selected.
    pub fn contains(&self, i: usize) -> bool {
        match self {
            LayersToTransform::One(j) => *j == i,
            LayersToTransform::List(v) => v.contains(&i),
        }
    }
    /// PEFT treats an empty list as "no filter".
    pub fn is_active(&self) -> bool {
        match self {
            LayersToTransform::One(_) => true,
            LayersToTransform::List(v) => !v.is_empty(),
        }
    }
}

/// A string or a list of strings (PEFT's `layers_pattern`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string.
    One(String),
    /// Several strings.
    List(Vec<String>),
}

impl StringOrList {
    /// The strings, in order.
    pub fn as_vec(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::List(v) => v.clone(),
        }
    }
}

/// PEFT's `init_lora_weights`: `true` (default), `false`, or a method name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLoraWeights {
    /// `true`: A kaiming-uniform, B zero; `false`: no zeroing (tests).
    Bool(bool),
    /// A method name: `"gaussian"` is supported; `"pissa"`, `"olora"`, `"loftq"`, `"eva"`,
    /// `"corda"`, `"orthogonal"`, `"mica"`, `"pissa_niter_N"`, `"lora_ga"` are refused.
    Name(String),
}

impl Default for InitLoraWeights {
    fn default() -> Self {
        InitLoraWeights::Bool(true)
    }
}

/// PEFT method names of `init_lora_weights` that this crate does not implement.
const KNOWN_UNSUPPORTED_INITS: &[&str] = &[
    "eva",
    "olora",
    "pissa",
    "corda",
    "loftq",
    "orthogonal",
    "mica",
    "lora_ga",
];

impl InitLoraWeights {
    /// The layer initialisation this value stands for.
    ///
    /// # Errors
    /// [`PeftError::Unsupported`] for PEFT methods not implemented here (PiSSA, OLoRA, LoftQ,
    /// EVA, CorDA, orthogonal, MiCA, LoRA-GA); [`PeftError::Config`] for strings PEFT does not
    /// know either.
    pub fn to_lora_init(&self) -> Result<LoraInit, PeftError> {
        match self {
            InitLoraWeights::Bool(true) => Ok(LoraInit::Default),
            InitLoraWeights::Bool(false) => Ok(LoraInit::NoZero),
            InitLoraWeights::Name(s) if s == "gaussian" => Ok(LoraInit::Gaussian),
            InitLoraWeights::Name(s)
                if KNOWN_UNSUPPORTED_INITS.contains(&s.as_str())
                    || s.starts_with("pissa_niter_") =>
            {
                Err(PeftError::Unsupported {
                    field: "init_lora_weights".into(),
                    value: format!("{s:?}"),
                    msg: "supported: true, false, \"gaussian\"".into(),
                })
            }
            InitLoraWeights::Name(s) => Err(PeftError::Config {
                field: "init_lora_weights".into(),
                value: format!("{s:?}"),
                msg: "expected true, false or one of PEFT's method names (\"gaussian\", ...)"
                    .into(),
            }),
        }
    }
}

/// A value of `rank_pattern` / `alpha_pattern`, written as a JSON number (integral floats as
/// integers, as PEFT writes them).
pub trait PatternValue: Clone + fmt::Debug + PartialEq {
    /// The JSON form.
    fn to_json(&self) -> Value;
    /// From JSON.
    fn from_json(v: &Value) -> Option<Self>;
}

impl PatternValue for usize {
    fn to_json(&self) -> Value {
        Value::from(*self as u64)
    }
    fn from_json(v: &Value) -> Option<Self> {
        v.as_u64().map(|x| x as usize)
    }
}

impl PatternValue for f64 {
    fn to_json(&self) -> Value {
        num_json(*self)
    }
    fn from_json(v: &Value) -> Option<Self> {
        v.as_f64()
    }
}

fn num_json(x: f64) -> Value {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// An ordered map from a module-name pattern to a value (PEFT's `rank_pattern` and
/// `alpha_pattern`). Order matters: PEFT uses the first key (in file order) whose regex
/// `(.*\.)?(key)$` matches the module name (`peft.utils.other.get_pattern_key`). `null` reads as
/// empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatternMap<T>(pub Vec<(String, T)>);

impl<T> PatternMap<T> {
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, T)> {
        self.0.iter()
    }
}

impl<T: PatternValue> Serialize for PatternMap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, &v.to_json())?;
        }
        m.end()
    }
}

impl<'de, T: PatternValue> Deserialize<'de> for PatternMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: PatternValue> Visitor<'de> for V<T> {
            type Value = PatternMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from module-name pattern to a number, or null")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(PatternMap(Vec::new()))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(PatternMap(Vec::new()))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = a.next_entry::<String, Value>()? {
                    let parsed = T::from_json(&val).ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "pattern `{k}`: value {val} is not a valid number of the expected kind"
                        ))
                    })?;
                    v.push((k, parsed));
                }
                Ok(PatternMap(v))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

fn ser_alpha<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    num_json(*x).serialize(s)
}

fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_bias() -> String {
    "none".into()
}

/// PEFT's `LoraConfig` as stored in `adapter_config.json`.
///
/// Defaults are PEFT's: `r = 8`, `lora_alpha = 8`, `lora_dropout = 0.0`, `bias = "none"`,
/// `init_lora_weights = true`, everything else off/empty. Source: PEFT 0.21
/// `peft/tuners/lora/config.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always `"LORA"`.
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    /// `"CAUSAL_LM"`, `"SEQ_CLS"`, ... (PEFT `TaskType`); `SEQ_CLS` adds `classifier` and
    /// `score` to `modules_to_save` (PEFT `PeftModelForSequenceClassification`).
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model's hub id or path (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision (informational).
    #[serde(default)]
    pub revision: Option<String>,
    /// Whether the adapter was saved for inference (informational here).
    #[serde(default, deserialize_with = "de_null_default")]
    pub inference_mode: bool,
    /// Rank of the update. Must be ≥ 1.
    #[serde(default = "default_r")]
    pub r: usize,
    /// `lora_alpha`; scaling is `lora_alpha / r` (or `/ sqrt(r)` with `use_rslora`).
    #[serde(default = "default_alpha", serialize_with = "ser_alpha")]
    pub lora_alpha: f64,
    /// Dropout probability on the LoRA path, in `[0, 1)`.
    #[serde(default, deserialize_with = "de_null_default")]
    pub lora_dropout: f64,
    /// Which linear layers get adapters (see [`TargetModules`]). `None`: PEFT's default for the
    /// architecture (`["c_attn"]` for GPT-2, `["q_proj", "v_proj"]` for Llama-family models).
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Layers excluded from `target_modules` (same list/regex rules).
    #[serde(default)]
    pub exclude_modules: Option<TargetModules>,
    /// `"none"` only (`"all"` and `"lora_only"` are refused as not supported).
    #[serde(default = "default_bias")]
    pub bias: String,
    /// rsLoRA scaling `lora_alpha / sqrt(r)`.
    #[serde(default, deserialize_with = "de_null_default")]
    pub use_rslora: bool,
    /// Initialisation (see [`InitLoraWeights`]).
    #[serde(default, deserialize_with = "de_null_default")]
    pub init_lora_weights: InitLoraWeights,
    /// `true` when the target layers store weights `[d_in, d_out]` (GPT-2 `Conv1D`). Layers in
    /// this workspace record their own layout; when they differ from this flag, PEFT warns and
    /// uses the layer's layout, and so does this crate.
    #[serde(default, deserialize_with = "de_null_default")]
    pub fan_in_fan_out: bool,
    /// Only layers with these indices get adapters (list targets only).
    #[serde(default)]
    pub layers_to_transform: Option<LayersToTransform>,
    /// Name(s) of the layer container used to find the layer index (`"h"`, `"layers"`...).
    #[serde(default)]
    pub layers_pattern: Option<StringOrList>,
    /// Layers trained in full and saved whole (e.g. a classifier head `score`). A module name
    /// matches when it ends with an entry (PEFT `_set_trainable`).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Per-module rank overrides (`{pattern: r}`), first match in order.
    #[serde(default)]
    pub rank_pattern: PatternMap<usize>,
    /// Per-module `lora_alpha` overrides (`{pattern: alpha}`), first match in order.
    #[serde(default)]
    pub alpha_pattern: PatternMap<f64>,
    /// DoRA; `true` is refused ("DoRA not supported").
    #[serde(default, deserialize_with = "de_null_default")]
    pub use_dora: bool,
    /// A bias on `lora_B`; `true` is refused.
    #[serde(default, deserialize_with = "de_null_default")]
    pub lora_bias: bool,
    /// Every other field of the file (PEFT writes ~20 more, e.g. `peft_version`,
    /// `megatron_core`, `loftq_config`), kept and written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            peft_type: default_peft_type(),
            task_type: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
            r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            target_modules: None,
            exclude_modules: None,
            bias: default_bias(),
            use_rslora: false,
            init_lora_weights: InitLoraWeights::default(),
            fan_in_fan_out: false,
            layers_to_transform: None,
            layers_pattern: None,
            modules_to_save: None,
            rank_pattern: PatternMap::default(),
            alpha_pattern: PatternMap::default(),
            use_dora: false,
            lora_bias: false,
            extra: Map::new(),
        }
    }
}

/// Fields PEFT writes that switch on a LoRA variant or feature this crate does not implement:
/// any value other than `null`, `false`, `{}` or `[]` is refused by [`LoraConfig::validate`].
const UNSUPPORTED_EXTRA: &[(&str, &str)] = &[
    ("use_qalora", "QA-LoRA"),
    ("target_parameters", "LoRA on nn.Parameter targets"),
    ("trainable_token_indices", "trainable tokens"),
    ("layer_replication", "layer replication"),
    ("alora_invocation_tokens", "aLoRA"),
    ("arrow_config", "Arrow routing"),
    ("use_bdlora", "block-diagonal LoRA"),
    ("velora_config", "VeLoRA"),
    ("monteclora_config", "MonteCLoRA"),
    ("kasa_config", "KaSA"),
    ("megatron_config", "Megatron-LM parallel layers"),
];

fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Compiles `pattern` anchored as Python's `re.fullmatch` (`^(?:pattern)$`).
pub(crate) fn compile(
    field: &str,
    pattern: &str,
    anchored: String,
) -> Result<regex::Regex, PeftError> {
    regex::Regex::new(&anchored).map_err(|e| PeftError::Regex {
        field: field.into(),
        pattern: pattern.into(),
        msg: e.to_string(),
    })
}

/// `^(?:p)$`: Python `re.fullmatch(p, s)`.
pub(crate) fn fullmatch_regex(field: &str, p: &str) -> Result<regex::Regex, PeftError> {
    compile(field, p, format!("^(?:{p})$"))
}

/// `^(.*\.)?(key)$`: PEFT `get_pattern_key` (`re.match(rf"(.*\.)?({key})$", name)`).
pub(crate) fn pattern_key_regex(field: &str, key: &str) -> Result<regex::Regex, PeftError> {
    compile(field, key, format!(r"^(.*\.)?({key})$"))
}

/// PEFT's modules_to_save exclusion from LoRA targets:
/// `re.match(rf"(^|.*\.){m}($|\..*)", name)`.
pub(crate) fn modules_to_save_regex(m: &str) -> Result<regex::Regex, PeftError> {
    compile("modules_to_save", m, format!(r"^(^|.*\.){m}($|\..*)"))
}

/// Layer-index regex: with no `layers_pattern`, PEFT's `.*?\.[^.]*\.(?P<idx>\d+)\.` (the first
/// numbered segment); with one, `(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.`, both with `re.match`.
pub(crate) fn layer_index_regexes(
    layers_pattern: Option<&StringOrList>,
) -> Result<Vec<regex::Regex>, PeftError> {
    let pats: Vec<String> = layers_pattern.map(|p| p.as_vec()).unwrap_or_default();
    if pats.is_empty() || pats.iter().all(|p| p.is_empty()) {
        return Ok(vec![compile(
            "layers_pattern",
            "",
            r"^.*?\.[^.]*\.(?P<idx>\d+)\.".to_string(),
        )?]);
    }
    pats.iter()
        .map(|p| {
            compile(
                "layers_pattern",
                p,
                format!(r"^(?:^|.*?\.){p}\.(?P<idx>\d+)\."),
            )
        })
        .collect()
}

impl LoraConfig {
    /// A config with PEFT's defaults and the given rank, alpha and list of target names.
    pub fn new(r: usize, lora_alpha: f64, target_modules: &[&str]) -> Self {
        Self {
            r,
            lora_alpha,
            target_modules: Some(TargetModules::from(target_modules)),
            ..Self::default()
        }
    }

    /// Parses `adapter_config.json` text (PEFT's format; unknown fields are kept in `extra`).
    /// Does not [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`PeftError::Json`] naming `path` (used only for the message).
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, PeftError> {
        serde_json::from_str(text).map_err(|source| PeftError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads `adapter_config.json`. `path` may be the file or the adapter directory. Does not
    /// [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`PeftError::Io`] if unreadable, [`PeftError::Json`] if not a valid config.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PeftError> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join(CONFIG_NAME);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| PeftError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_json_str(&text, &path)
    }

    /// The config as pretty JSON (PEFT field names; `extra` fields included).
    pub fn to_json_string(&self) -> String {
        // Serialising plain data to a String cannot fail (all map keys are strings).
        serde_json::to_string_pretty(self).expect("LoraConfig serialises")
    }

    /// Writes `dir/adapter_config.json` atomically (temp file + rename), creating `dir`.
    /// Returns the file's path.
    ///
    /// # Errors
    /// [`PeftError::Io`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf, PeftError> {
        let path = dir.as_ref().join(CONFIG_NAME);
        crate::io::write_atomic(&path, self.to_json_string().as_bytes())?;
        Ok(path)
    }

    /// Checks every field as PEFT does and refuses what this crate does not implement.
    ///
    /// # Errors
    /// [`PeftError::Config`] naming the field and value: `peft_type` not `"LORA"`, `r = 0`,
    /// non-finite `lora_alpha`, `lora_dropout` outside `[0, 1)`, unknown `bias`, a regex
    /// `target_modules` together with `layers_to_transform`/`layers_pattern`, `layers_pattern`
    /// without `layers_to_transform`, `"all-linear"` with `layers_to_transform`, zero ranks in
    /// `rank_pattern`. [`PeftError::Unsupported`]: `bias` `"all"`/`"lora_only"`,
    /// `use_dora = true` (DoRA), `lora_bias = true`, `init_lora_weights` `"pissa"`/`"olora"`/
    /// `"loftq"`/..., and the variant fields listed in `UNSUPPORTED_EXTRA`.
    /// [`PeftError::Regex`]: a pattern that does not compile.
    pub fn validate(&self) -> Result<(), PeftError> {
        let cfg = |field: &str, value: String, msg: &str| PeftError::Config {
            field: field.into(),
            value,
            msg: msg.into(),
        };
        if self.peft_type != "LORA" {
            return Err(cfg(
                "peft_type",
                format!("{:?}", self.peft_type),
                "expected \"LORA\" (only LoRA adapters are handled by lora-peft)",
            ));
        }
        if self.r == 0 {
            return Err(cfg("r", "0".into(), "r must be a positive integer"));
        }
        if !self.lora_alpha.is_finite() {
            return Err(cfg(
                "lora_alpha",
                self.lora_alpha.to_string(),
                "expected a finite number",
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(cfg(
                "lora_dropout",
                self.lora_dropout.to_string(),
                "expected a probability in [0, 1)",
            ));
        }
        match self.bias.as_str() {
            "none" => {}
            "all" | "lora_only" => {
                return Err(PeftError::Unsupported {
                    field: "bias".into(),
                    value: format!("{:?}", self.bias),
                    msg: "only \"none\" is implemented".into(),
                })
            }
            other => {
                return Err(cfg(
                    "bias",
                    format!("{other:?}"),
                    "expected \"none\", \"all\" or \"lora_only\"",
                ))
            }
        }
        if self.use_dora {
            return Err(PeftError::Unsupported {
                field: "use_dora".into(),
                value: "true".into(),
                msg: "DoRA not supported".into(),
            });
        }
        if self.lora_bias {
            return Err(PeftError::Unsupported {
                field: "lora_bias".into(),
                value: "true".into(),
                msg: String::new(),
            });
        }
        self.init_lora_weights.to_lora_init()?;
        for (key, what) in UNSUPPORTED_EXTRA {
            if let Some(v) = self.extra.get(*key) {
                if !is_off(v) {
                    return Err(PeftError::Unsupported {
                        field: (*key).into(),
                        value: v.to_string(),
                        msg: (*what).into(),
                    });
                }
            }
        }
        // PEFT LoraConfig.__post_init__ consistency rules.
        if let Some(TargetModules::Pattern(p)) = &self.target_modules {
            if let Some(l) = &self.layers_to_transform {
                return Err(cfg(
                    "layers_to_transform",
                    serde_json::to_string(l).unwrap_or_default(),
                    &format!("cannot be used when target_modules is a string ({p:?})"),
                ));
            }
            if let Some(l) = &self.layers_pattern {
                return Err(cfg(
                    "layers_pattern",
                    serde_json::to_string(l).unwrap_or_default(),
                    &format!("cannot be used when target_modules is a string ({p:?})"),
                ));
            }
        }
        if let Some(lp) = &self.layers_pattern {
            let nonempty = !lp.as_vec().iter().all(|s| s.is_empty());
            if nonempty && self.layers_to_transform.is_none() {
                return Err(cfg(
                    "layers_pattern",
                    serde_json::to_string(lp).unwrap_or_default(),
                    "layers_to_transform must also be specified",
                ));
            }
        }
        for (k, r) in self.rank_pattern.iter() {
            if *r == 0 {
                return Err(cfg(
                    "rank_pattern",
                    format!("{{{k:?}: 0}}"),
                    "ranks must be positive integers",
                ));
            }
            pattern_key_regex("rank_pattern", k)?;
        }
        for (k, a) in self.alpha_pattern.iter() {
            if !a.is_finite() {
                return Err(cfg(
                    "alpha_pattern",
                    format!("{{{k:?}: {a}}}"),
                    "expected a finite number",
                ));
            }
            pattern_key_regex("alpha_pattern", k)?;
        }
        for (field, t) in [
            ("target_modules", &self.target_modules),
            ("exclude_modules", &self.exclude_modules),
        ] {
            if let Some(TargetModules::Pattern(p)) = t {
                if !(field == "target_modules" && t.as_ref().is_some_and(|t| t.is_all_linear())) {
                    fullmatch_regex(field, p)?;
                }
            }
        }
        for m in self.modules_to_save.iter().flatten() {
            modules_to_save_regex(m)?;
        }
        layer_index_regexes(self.layers_pattern.as_ref())?;
        Ok(())
    }

    /// Whether this is a sequence-classification adapter (`task_type = "SEQ_CLS"`).
    pub fn is_seq_cls(&self) -> bool {
        self.task_type.as_deref() == Some("SEQ_CLS")
    }

    /// `modules_to_save` as PEFT uses it: the config's entries, plus `classifier` and `score`
    /// for `SEQ_CLS` (PEFT `PeftModelForSequenceClassification.__init__`).
    pub fn effective_modules_to_save(&self) -> Vec<String> {
        let mut v = self.modules_to_save.clone().unwrap_or_default();
        if self.is_seq_cls() {
            for d in SEQ_CLS_HEAD_NAMES {
                if !v.iter().any(|x| x == d) {
                    v.push((*d).to_string());
                }
            }
        }
        v
    }

    /// The per-layer hyper-parameters for module `name`: rank and alpha from the first matching
    /// `rank_pattern` / `alpha_pattern` key (regex `(.*\.)?(key)$`, PEFT `get_pattern_key`),
    /// else `r` / `lora_alpha`.
    ///
    /// # Errors
    /// [`PeftError::Regex`] for a bad pattern key, [`PeftError::Unsupported`]/
    /// [`PeftError::Config`] for `init_lora_weights`.
    pub fn layer_config(&self, name: &str) -> Result<LoraLayerConfig, PeftError> {
        let mut r = self.r;
        for (k, v) in self.rank_pattern.iter() {
            if pattern_key_regex("rank_pattern", k)?.is_match(name) {
                r = *v;
                break;
            }
        }
        let mut alpha = self.lora_alpha;
        for (k, v) in self.alpha_pattern.iter() {
            if pattern_key_regex("alpha_pattern", k)?.is_match(name) {
                alpha = *v;
                break;
            }
        }
        Ok(LoraLayerConfig {
            r,
            lora_alpha: alpha,
            lora_dropout: self.lora_dropout,
            use_rslora: self.use_rslora,
            init: self.init_lora_weights.to_lora_init()?,
        })
    }
}

/// PEFT `SEQ_CLS_HEAD_NAMES`: names of classification heads.
pub const SEQ_CLS_HEAD_NAMES: &[&str] = &["classifier", "score"];
