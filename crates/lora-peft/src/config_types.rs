//! Field types shared by PEFT's configs: `target_modules` / `exclude_modules`,
//! `layers_to_transform`, `layers_pattern`, `rank_pattern` / `alpha_pattern`, and the serde
//! helpers that read and write them as PEFT does (`peft/tuners/tuners_utils.py`
//! `BaseTunerConfig`-style fields, `peft/tuners/lora/config.py`). Every method's config
//! (`tuners::<method>::config`) uses these for its targeting fields.
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

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

pub(crate) fn num_json(x: f64) -> Value {
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

/// Serialises an `f64` as PEFT writes numbers (integral values as integers).
pub(crate) fn ser_number<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    num_json(*x).serialize(s)
}

/// Reads `null` as the type's default (PEFT writes `null` for unset fields).
pub(crate) fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
