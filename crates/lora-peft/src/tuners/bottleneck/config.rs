//! AdapterHub's bottleneck-adapter config (`adapters` 1.3,
//! `configuration/adapter_config.py`: `BnConfig`, `SeqBnConfig`, `DoubleSeqBnConfig`), with
//! every field AdapterHub writes, its defaults and the checks this crate makes before building
//! layers from it.
use crate::PeftError;
use lora_core::{BottleneckActivation, BottleneckConfig, BottleneckInit, BottleneckLocation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;

/// `reduction_factor`: one factor for every layer, or a map from layer index (as a string) to
/// factor with an optional `"default"` entry (AdapterHub `BottleneckLayer.add_adapter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReductionFactor {
    /// One factor for all layers (`16`, `12.5`).
    Scalar(Number),
    /// `{"1": 8, "default": 16}`.
    PerLayer(BTreeMap<String, Number>),
}

/// A field that is a boolean or a string (`residual_before_ln`: `true`/`false`/`"post_add"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BoolOrString {
    /// A boolean.
    Bool(bool),
    /// A string.
    Text(String),
}

/// `scaling`: a constant factor, or `"learned"` / `"channel"` (trainable scalings, refused
/// here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BnScaling {
    /// A constant factor.
    Value(f64),
    /// `"learned"` or `"channel"`.
    Mode(String),
}

fn is_none<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// AdapterHub's `BnConfig` as stored under `"config"` in `adapter_config.json`.
///
/// The four fields without a default in AdapterHub (`mh_adapter`, `output_adapter`,
/// `reduction_factor`, `non_linearity`) are required; the others take `BnConfig`'s defaults.
/// Unknown fields are kept in [`BnConfig::extra`] and written back. Presets:
/// [`BnConfig::seq_bn`], [`BnConfig::double_seq_bn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // the PHM fields are kept for round trips only; validate() refuses phm_layer
pub struct BnConfig {
    /// Adapter after self-attention in every layer (`attention_adapters`).
    pub mh_adapter: bool,
    /// Adapter after the MLP in every layer (`output_adapters`).
    pub output_adapter: bool,
    /// Bottleneck width = `int(hidden_size // reduction_factor)`, at least 1.
    pub reduction_factor: ReductionFactor,
    /// Activation name (see [`BottleneckActivation::from_name`]).
    pub non_linearity: String,
    /// Add the sub-block residual before the adapter (the layer norm given is `None` here).
    #[serde(default)]
    pub original_ln_before: bool,
    /// Add the sub-block residual after the adapter.
    #[serde(default = "yes")]
    pub original_ln_after: bool,
    /// A new LayerNorm before the bottleneck (refused: not implemented).
    #[serde(default)]
    pub ln_before: bool,
    /// A new LayerNorm after the bottleneck (refused: not implemented).
    #[serde(default)]
    pub ln_after: bool,
    /// `"bert"`, `"mam_adapter"` or `"houlsby"` (fresh adapters: `bert`, `mam_adapter` only).
    #[serde(default = "bert")]
    pub init_weights: String,
    /// Seed AdapterHub resets before each adapter's init (informational here).
    #[serde(default)]
    pub init_weights_seed: Option<u64>,
    /// Parallel adapters (refused).
    #[serde(default)]
    pub is_parallel: bool,
    /// Constant factor on the bottleneck output.
    #[serde(default = "one")]
    pub scaling: BnScaling,
    /// Gating module (refused).
    #[serde(default)]
    pub use_gating: bool,
    /// The adapter's residual is the sub-block output (`true`) or the adapter input (`false`);
    /// `"post_add"` is refused.
    #[serde(default = "yes_bs")]
    pub residual_before_ln: BoolOrString,
    /// Residual before the adapter's own `ln_after` (no effect without `ln_after`).
    #[serde(default)]
    pub adapter_residual_before_ln: bool,
    /// Invertible adapter after the embeddings (refused).
    #[serde(default)]
    pub inv_adapter: Option<String>,
    #[serde(default)]
    pub inv_adapter_reduction_factor: Option<f64>,
    /// Adapters after cross-attention: no effect on the decoder-only models here, as in
    /// AdapterHub.
    #[serde(default)]
    pub cross_adapter: bool,
    /// Layer indices without adapters.
    #[serde(default)]
    pub leave_out: Vec<usize>,
    /// Dropout on the scaled bottleneck output, in `[0, 1)`.
    #[serde(default)]
    pub dropout: f64,
    /// PHM (Compacter) projections (refused).
    #[serde(default)]
    pub phm_layer: bool,
    #[serde(default = "four")]
    pub phm_dim: usize,
    #[serde(rename = "factorized_phm_W", default = "some_true")]
    pub factorized_phm_w: Option<bool>,
    #[serde(rename = "shared_W_phm", default = "some_false")]
    pub shared_w_phm: Option<bool>,
    #[serde(default = "some_true")]
    pub shared_phm_rule: Option<bool>,
    #[serde(default = "some_false")]
    pub factorized_phm_rule: Option<bool>,
    #[serde(default = "normal")]
    pub phm_c_init: Option<String>,
    #[serde(default = "phm_range")]
    pub phm_init_range: Option<f64>,
    #[serde(default = "some_true")]
    pub learn_phm: Option<bool>,
    #[serde(default = "glorot")]
    pub hypercomplex_nonlinearity: Option<String>,
    #[serde(default = "some_one")]
    pub phm_rank: Option<usize>,
    #[serde(default = "some_true")]
    pub phm_bias: Option<bool>,
    /// Stochastic depth probability (refused when > 0).
    #[serde(default = "some_zero")]
    pub stochastic_depth: Option<f64>,
    /// AdapterHub's `architecture` (absent for bottleneck configs; another value is refused).
    #[serde(default, skip_serializing_if = "is_none")]
    pub architecture: Option<String>,
    /// Fields this crate does not model, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn yes() -> bool {
    true
}
fn yes_bs() -> BoolOrString {
    BoolOrString::Bool(true)
}
fn bert() -> String {
    "bert".into()
}
fn one() -> BnScaling {
    BnScaling::Value(1.0)
}
fn four() -> usize {
    4
}
fn some_true() -> Option<bool> {
    Some(true)
}
fn some_false() -> Option<bool> {
    Some(false)
}
fn normal() -> Option<String> {
    Some("normal".into())
}
fn phm_range() -> Option<f64> {
    Some(0.0001)
}
fn glorot() -> Option<String> {
    Some("glorot-uniform".into())
}
fn some_one() -> Option<usize> {
    Some(1)
}
fn some_zero() -> Option<f64> {
    Some(0.0)
}

fn unsupported(field: &str, value: impl ToString, msg: &str) -> PeftError {
    PeftError::Unsupported {
        field: field.into(),
        value: value.to_string(),
        msg: msg.into(),
    }
}

fn bad(field: &str, value: impl ToString, msg: &str) -> PeftError {
    PeftError::Config {
        field: field.into(),
        value: value.to_string(),
        msg: msg.into(),
    }
}

impl BnConfig {
    /// AdapterHub's `SeqBnConfig` (`"seq_bn"`, Pfeiffer et al. 2021): output adapters only,
    /// reduction factor 16, relu, `original_ln_before` and `original_ln_after`.
    pub fn seq_bn() -> Self {
        let v = serde_json::json!({
            "mh_adapter": false, "output_adapter": true, "reduction_factor": 16,
            "non_linearity": "relu", "original_ln_before": true,
        });
        serde_json::from_value(v).expect("the preset is a valid BnConfig")
    }

    /// AdapterHub's `DoubleSeqBnConfig` (`"double_seq_bn"`, Houlsby et al. 2019): attention and
    /// output adapters, reduction factor 16, swish, `original_ln_before = false`.
    pub fn double_seq_bn() -> Self {
        let v = serde_json::json!({
            "mh_adapter": true, "output_adapter": true, "reduction_factor": 16,
            "non_linearity": "swish", "original_ln_before": false,
        });
        serde_json::from_value(v).expect("the preset is a valid BnConfig")
    }

    /// Whether layer `layer` has an adapter at `location` (`mh_adapter` / `output_adapter`,
    /// minus `leave_out`).
    pub fn has_adapter(&self, layer: usize, location: BottleneckLocation) -> bool {
        let on = match location {
            BottleneckLocation::Attention => self.mh_adapter,
            BottleneckLocation::Output => self.output_adapter,
        };
        on && !self.leave_out.contains(&layer)
    }

    /// The reduction factor of layer `layer`: the scalar, or the map's entry for the layer,
    /// else its `"default"`.
    ///
    /// # Errors
    /// [`PeftError::Config`] when the map has neither (AdapterHub raises `KeyError`) or the
    /// factor is not a number > 0.
    pub fn reduction_factor_for(&self, layer: usize) -> Result<f64, PeftError> {
        let n = match &self.reduction_factor {
            ReductionFactor::Scalar(n) => n,
            ReductionFactor::PerLayer(m) => {
                m.get(&layer.to_string()).or_else(|| m.get("default")).ok_or_else(|| {
                    bad(
                        "reduction_factor",
                        serde_json::to_string(m).unwrap_or_default(),
                        &format!(
                            "no entry for layer {layer} and no \"default\" entry, e.g. {{\"1\": 16, \"default\": 16}}"
                        ),
                    )
                })?
            }
        };
        match n.as_f64() {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f),
            _ => Err(bad("reduction_factor", n, "expected a number > 0")),
        }
    }

    /// Checks that this crate can build the adapter the config describes; `fresh` also checks
    /// `init_weights` (which matters only for new adapters).
    ///
    /// # Errors
    /// [`PeftError::Unsupported`] for `ln_before`, `ln_after`, `use_gating`, `is_parallel`,
    /// `phm_layer`, `inv_adapter`, `stochastic_depth > 0`, `scaling = "learned"`/`"channel"`,
    /// `residual_before_ln = "post_add"`, an activation not implemented, `init_weights =
    /// "houlsby"` for a fresh adapter; [`PeftError::Config`] for values AdapterHub rejects too
    /// (unknown `scaling`, `init_weights` or `residual_before_ln` strings, `dropout` outside
    /// `[0, 1)`, a bad `reduction_factor`, another `architecture`).
    pub fn validate(&self, fresh: bool) -> Result<(), PeftError> {
        if let Some(a) = &self.architecture {
            if a != "bottleneck" {
                return Err(bad(
                    "architecture",
                    format!("{a:?}"),
                    "not a bottleneck adapter config",
                ));
            }
        }
        let flags = [
            ("ln_before", self.ln_before),
            ("ln_after", self.ln_after),
            ("use_gating", self.use_gating),
            ("is_parallel", self.is_parallel),
            ("phm_layer", self.phm_layer),
        ];
        for (field, on) in flags {
            if on {
                return Err(unsupported(field, true, "only false is implemented"));
            }
        }
        if let Some(inv) = &self.inv_adapter {
            return Err(unsupported(
                "inv_adapter",
                format!("{inv:?}"),
                "invertible adapters are not implemented",
            ));
        }
        if let Some(p) = self.stochastic_depth.filter(|&p| p != 0.0) {
            return Err(unsupported(
                "stochastic_depth",
                p,
                "only 0.0 is implemented",
            ));
        }
        if BottleneckActivation::from_name(&self.non_linearity).is_none() {
            return Err(unsupported(
                "non_linearity",
                format!("{:?}", self.non_linearity),
                &format!("implemented: {}", BottleneckActivation::NAMES.join(", ")),
            ));
        }
        match &self.scaling {
            BnScaling::Value(v) if !v.is_finite() => {
                return Err(bad("scaling", v, "expected a finite number"))
            }
            BnScaling::Value(_) => {}
            BnScaling::Mode(m) if m == "learned" || m == "channel" => {
                return Err(unsupported(
                    "scaling",
                    format!("{m:?}"),
                    "only a constant (float) scaling is implemented",
                ))
            }
            BnScaling::Mode(m) => {
                return Err(bad(
                    "scaling",
                    format!("{m:?}"),
                    "expected a float, \"learned\" or \"channel\"",
                ))
            }
        }
        match &self.residual_before_ln {
            BoolOrString::Bool(_) => {}
            BoolOrString::Text(s) if s == "post_add" => {
                return Err(unsupported(
                    "residual_before_ln",
                    "\"post_add\"",
                    "needs the transformer layer norm, which AdapterHub does not pass for GPT-2 and Llama",
                ))
            }
            BoolOrString::Text(s) => {
                return Err(bad("residual_before_ln", format!("{s:?}"), "expected true, false or \"post_add\""))
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(
                "dropout",
                self.dropout,
                "expected a probability in [0, 1)",
            ));
        }
        match (self.init_weights.as_str(), fresh) {
            ("bert" | "mam_adapter", _) | ("houlsby", false) => {}
            ("houlsby", true) => {
                return Err(unsupported(
                    "init_weights",
                    "\"houlsby\"",
                    "fresh adapters: \"bert\" or \"mam_adapter\"",
                ))
            }
            (other, _) => {
                return Err(bad(
                    "init_weights",
                    format!("{other:?}"),
                    "expected \"bert\", \"mam_adapter\" or \"houlsby\"",
                ))
            }
        }
        match &self.reduction_factor {
            ReductionFactor::Scalar(_) => self.reduction_factor_for(0).map(|_| ()),
            ReductionFactor::PerLayer(m) => {
                for (k, n) in m {
                    if k != "default" && k.parse::<usize>().is_err() {
                        return Err(bad(
                            "reduction_factor",
                            format!("{k:?}"),
                            "keys are layer indices or \"default\"",
                        ));
                    }
                    if !n.as_f64().is_some_and(|f| f.is_finite() && f > 0.0) {
                        return Err(bad("reduction_factor", n, "expected a number > 0"));
                    }
                }
                Ok(())
            }
        }
    }

    /// The layer config of layer `layer` for a model of hidden size `hidden_size`, or `None`
    /// when the layer has no adapter at `location`. Validates (`fresh` as in
    /// [`BnConfig::validate`]).
    ///
    /// # Errors
    /// As [`BnConfig::validate`] and [`BnConfig::reduction_factor_for`].
    pub fn layer_config(
        &self,
        hidden_size: usize,
        layer: usize,
        location: BottleneckLocation,
        fresh: bool,
    ) -> Result<Option<BottleneckConfig>, PeftError> {
        self.validate(fresh)?;
        if !self.has_adapter(layer, location) {
            return Ok(None);
        }
        let rf = self.reduction_factor_for(layer)?;
        let bottleneck_size = BottleneckConfig::bottleneck_size_for(hidden_size, rf)
            .map_err(|e| bad("reduction_factor", rf, &e.to_string()))?;
        let scaling = match &self.scaling {
            BnScaling::Value(v) => *v,
            BnScaling::Mode(m) => return Err(unsupported("scaling", format!("{m:?}"), "")),
        };
        let residual_before_ln = match &self.residual_before_ln {
            BoolOrString::Bool(b) => *b,
            BoolOrString::Text(t) => {
                return Err(unsupported("residual_before_ln", format!("{t:?}"), ""))
            }
        };
        let non_linearity = BottleneckActivation::from_name(&self.non_linearity)
            .ok_or_else(|| unsupported("non_linearity", format!("{:?}", self.non_linearity), ""))?;
        Ok(Some(BottleneckConfig {
            hidden_size,
            bottleneck_size,
            non_linearity,
            original_ln_before: self.original_ln_before,
            original_ln_after: self.original_ln_after,
            residual_before_ln,
            scaling,
            adapter_dropout: self.dropout,
            init_weights: if self.init_weights == "mam_adapter" {
                BottleneckInit::MamAdapter
            } else {
                BottleneckInit::Bert
            },
        }))
    }
}
