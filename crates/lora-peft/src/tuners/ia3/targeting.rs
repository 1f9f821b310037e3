//! (IA)³'s side of target matching: [`IA3Config`]'s targeting fields for
//! [`crate::matching::resolve_targets`], which targeted layers are feed-forward (PEFT
//! `IA3Model._check_target_module_feedforward`), and PEFT's defaults per architecture
//! (`IA3Model._prepare_adapter_config`, `peft/utils/constants.py`
//! `TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING` and
//! `TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING`).
use super::IA3Config;
use crate::config_types::{LayersToTransform, StringOrList, TargetModules};
use crate::matching::{resolve, shown, TargetConfig};
use crate::patterns::fullmatch_regex;
use crate::PeftError;

/// What one targeted layer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ia3LayerConfig {
    /// `ia3_l` scales the layer's input (`[d_in]`) rather than its output (`[d_out]`).
    pub is_feedforward: bool,
    /// Start `ia3_l` at ones (else N(0, 1) draws).
    pub init_ia3_weights: bool,
}

/// PEFT's IA3 defaults `(target_modules, feedforward_modules)` for the model families of
/// `lora-models`, recognised by their layer names: GPT-2 (`model_type` `gpt2`, a `c_attn`
/// layer) `(["c_attn", "mlp.c_proj"], ["mlp.c_proj"])`; Llama (`llama`, `k_proj`, `v_proj`
/// and `down_proj` layers) `(["k_proj", "v_proj", "down_proj"], ["down_proj"])`. `None` for
/// any other model.
pub fn default_modules(names: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let ends = |s: &str| names.iter().any(|n| n.ends_with(&format!(".{s}")));
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if ends("c_attn") {
        Some((owned(&["c_attn", "mlp.c_proj"]), owned(&["mlp.c_proj"])))
    } else if ends("k_proj") && ends("v_proj") && ends("down_proj") {
        Some((
            owned(&["k_proj", "v_proj", "down_proj"]),
            owned(&["down_proj"]),
        ))
    } else {
        None
    }
}

fn no_default(field: &str, names: &[String]) -> PeftError {
    PeftError::Config {
        field: field.into(),
        value: "null".into(),
        msg: format!(
            "no PEFT (IA)³ default is known for a model with layers {:?}: set {field}",
            shown(names)
        ),
    }
}

impl IA3Config {
    /// Whether targeted layer `name` is feed-forward (`ia3_l` scales its input): a
    /// `feedforward_modules` string is a full-match regex, a list matches names that end with
    /// an entry (PEFT's plain `key.endswith(target_key)`, no `.` boundary).
    ///
    /// # Errors
    /// [`PeftError::Config`] when `feedforward_modules` is `null` (call
    /// [`IA3Config::prepare`] first); [`PeftError::Regex`].
    pub fn is_feedforward(&self, name: &str) -> Result<bool, PeftError> {
        match &self.feedforward_modules {
            None => Err(PeftError::Config {
                field: "feedforward_modules".into(),
                value: "null".into(),
                msg: "not filled in: IA3Config::prepare completes it with PEFT's default for \
                      the model"
                    .into(),
            }),
            Some(TargetModules::Pattern(p)) => {
                Ok(fullmatch_regex("feedforward_modules", p)?.is_match(name))
            }
            Some(TargetModules::List(l)) => Ok(l.iter().any(|e| name.ends_with(e.as_str()))),
        }
    }

    /// The config completed for a model with linear layers `names`, as PEFT's
    /// `IA3Model._prepare_adapter_config` does before injecting (and as it then saves it):
    /// a `null` `target_modules` or `feedforward_modules` becomes the architecture's default
    /// ([`default_modules`]). [`IA3Config::validate`] runs first, on the config as given.
    ///
    /// PEFT writes the completed config even when the default `feedforward_modules` is not a
    /// subset of the given `target_modules` (e.g. `target_modules = ["q_proj"]` on Llama gives
    /// `feedforward_modules = ["down_proj"]`), a file its own loader then refuses. Here the
    /// default list is cut to its entries in `target_modules` when that changes no targeted
    /// layer's role (so the saved file loads in PEFT with the same meaning), and refused
    /// otherwise.
    ///
    /// # Errors
    /// As [`IA3Config::validate`]; [`PeftError::Config`] when a default is needed and none is
    /// known for the model, or when the default feed-forward list cannot be written as a subset
    /// of `target_modules` (set `feedforward_modules` explicitly, a regex if need be).
    pub fn prepare(&self, names: &[String]) -> Result<IA3Config, PeftError> {
        self.validate()?;
        let mut c = self.clone();
        let defaults = default_modules(names);
        if c.target_modules.is_none() {
            let (t, _) = defaults
                .clone()
                .ok_or_else(|| no_default("target_modules", names))?;
            c.target_modules = Some(TargetModules::List(t));
        }
        if c.feedforward_modules.is_some() {
            return Ok(c);
        }
        let (_, ff) = defaults.ok_or_else(|| no_default("feedforward_modules", names))?;
        c.feedforward_modules = Some(TargetModules::List(ff.clone()));
        let Some(TargetModules::List(t)) = &c.target_modules else {
            return Ok(c);
        };
        if ff.iter().all(|f| t.contains(f)) {
            return Ok(c);
        }
        let mut cut = c.clone();
        cut.feedforward_modules = Some(TargetModules::List(
            ff.iter().filter(|f| t.contains(f)).cloned().collect(),
        ));
        let plan = resolve(names, &c, false)?;
        for (name, layer) in &plan.targets {
            if cut.is_feedforward(name)? != layer.is_feedforward {
                return Err(PeftError::Config {
                    field: "feedforward_modules".into(),
                    value: "null".into(),
                    msg: format!(
                        "PEFT's default {ff:?} for this model is not a subset of target_modules \
                         {t:?}, so PEFT could not load the saved config, and no subset keeps \
                         layer `{name}` feed-forward: set feedforward_modules explicitly"
                    ),
                });
            }
        }
        Ok(cut)
    }
}

impl TargetConfig for IA3Config {
    type Layer = Ia3LayerConfig;

    fn validate_config(&self) -> Result<(), PeftError> {
        self.validate_fields()
    }
    fn target_modules(&self) -> Option<&TargetModules> {
        self.target_modules.as_ref()
    }
    fn exclude_modules(&self) -> Option<&TargetModules> {
        self.exclude_modules.as_ref()
    }
    fn layers_to_transform(&self) -> Option<&LayersToTransform> {
        None
    }
    fn layers_pattern(&self) -> Option<&StringOrList> {
        None
    }
    fn is_seq_cls(&self) -> bool {
        IA3Config::is_seq_cls(self)
    }
    fn modules_to_save(&self) -> Vec<String> {
        self.effective_modules_to_save()
    }
    fn default_target_modules(&self, names: &[String]) -> Result<Vec<String>, PeftError> {
        default_modules(names)
            .map(|(t, _)| t)
            .ok_or_else(|| no_default("target_modules", names))
    }
    fn layer(&self, name: &str) -> Result<Ia3LayerConfig, PeftError> {
        Ok(Ia3LayerConfig {
            is_feedforward: self.is_feedforward(name)?,
            init_ia3_weights: self.init_ia3_weights,
        })
    }
}
