//! Which linear layers a method's config adapts (any [`TargetConfig`], LoRA's first), following
//! PEFT 0.21 (`peft/tuners/tuners_utils.py`: `check_target_module_exists`,
//! `_maybe_include_all_linear_layers`, `BaseTuner.inject_adapter`; `peft/utils/other.py`:
//! `_set_trainable`, `get_pattern_key`).
use crate::config_types::{LayersToTransform, StringOrList, TargetModules};
use crate::patterns::{fullmatch_regex, layer_index_regexes, modules_to_save_regex};
use crate::PeftError;
use lora_core::LoraLayerConfig;

/// PEFT `SEQ_CLS_HEAD_NAMES`: names of classification heads.
pub const SEQ_CLS_HEAD_NAMES: &[&str] = &["classifier", "score"];

/// The targeting fields of a method's config, as PEFT's generic tuner reads them
/// (`check_target_module_exists`: `target_modules`, `exclude_modules`, `layers_to_transform`,
/// `layers_pattern`; `_set_trainable`: `modules_to_save`). Every method's config implements it
/// (LoRA: `tuners/lora/targeting.rs`) and so gets [`resolve_targets`] for free.
pub trait TargetConfig {
    /// What each adapted layer gets (LoRA: its rank, alpha, dropout and init).
    type Layer: Clone + std::fmt::Debug + PartialEq;
    /// The method's checks of the whole config (run before matching).
    ///
    /// # Errors
    /// The method's config errors.
    fn validate_config(&self) -> Result<(), PeftError>;
    /// `target_modules` (`None`: the method's default for the architecture).
    fn target_modules(&self) -> Option<&TargetModules>;
    /// `exclude_modules`.
    fn exclude_modules(&self) -> Option<&TargetModules>;
    /// `layers_to_transform`.
    fn layers_to_transform(&self) -> Option<&LayersToTransform>;
    /// `layers_pattern`.
    fn layers_pattern(&self) -> Option<&StringOrList>;
    /// Whether `task_type` is `SEQ_CLS` (the head is saved whole and left out of `all-linear`).
    fn is_seq_cls(&self) -> bool;
    /// `modules_to_save` with what the task type adds (`classifier`/`score` for `SEQ_CLS`).
    fn modules_to_save(&self) -> Vec<String>;
    /// The method's default `target_modules` for a model with these linear layer `names`
    /// (PEFT `TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING`).
    ///
    /// # Errors
    /// [`PeftError::Config`] when no default is known for the model.
    fn default_target_modules(&self, names: &[String]) -> Result<Vec<String>, PeftError>;
    /// What layer `name` gets (per-layer overrides applied).
    ///
    /// # Errors
    /// The method's per-layer config errors.
    fn layer(&self, name: &str) -> Result<Self::Layer, PeftError>;
}

/// How many layer names an error message lists.
const SHOWN_NAMES: usize = 20;

/// The outcome of matching a config against a model's linear layer names. `L` is what each
/// adapted layer gets ([`TargetConfig::Layer`]; LoRA's [`LoraLayerConfig`] by default).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetPlan<L = LoraLayerConfig> {
    /// Layers that get an adapter, in model order, with their per-layer hyper-parameters
    /// (for LoRA: rank/alpha after `rank_pattern`/`alpha_pattern`).
    pub targets: Vec<(String, L)>,
    /// Layers trained in full and saved whole (`modules_to_save`), in model order.
    pub modules_to_save: Vec<String>,
}

impl<L> TargetPlan<L> {
    /// Names of the adapted layers, in model order.
    pub fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|(n, _)| n.clone()).collect()
    }
}

pub(crate) fn shown(names: &[String]) -> Vec<String> {
    names.iter().take(SHOWN_NAMES).cloned().collect()
}

/// PEFT `"all-linear"`: every linear layer except the output layer (`lm_head`) and, for
/// `SEQ_CLS`, the classification head (`score` or `classifier`, the first present).
fn all_linear<C: TargetConfig>(names: &[String], config: &C) -> Vec<String> {
    let mut excluded: Vec<&str> = Vec::new();
    if config.is_seq_cls() {
        if let Some(h) = SEQ_CLS_HEAD_NAMES
            .iter()
            .find(|h| names.iter().any(|n| n == *h))
        {
            excluded.push(h);
        }
    }
    names
        .iter()
        .filter(|n| n.rsplit('.').next() != Some("lm_head") && !excluded.contains(&n.as_str()))
        .cloned()
        .collect()
}

enum Matcher {
    /// Names/suffixes; `from_all_linear` disables the per-entry check.
    List(Vec<String>),
    Regex(regex::Regex),
}

/// Matches `config` against the model's linear layer `names` (in model order), as PEFT does:
///
/// 1. a name excluded by `exclude_modules` (list: equal or ends with `"." + entry`; string:
///    full-match regex) or belonging to `modules_to_save` (regex `(^|.*\.){m}($|\..*)`) is
///    never adapted;
/// 2. `target_modules` string: full-match regex (`re.fullmatch`); `"all-linear"`: every linear
///    layer except `lm_head` (and the `SEQ_CLS` head); list: the name equals an entry, or ends
///    with `"." + entry` and — when `layers_to_transform` is set — its layer index (first
///    numbered segment, or the one after `layers_pattern`) is selected;
/// 3. `modules_to_save`: every layer whose name ends with an entry.
///
/// Stricter than PEFT (which ignores a list entry that matches nothing): every
/// `target_modules` list entry and every `modules_to_save` entry must match a linear layer
/// (for `SEQ_CLS`, one of `classifier`/`score` must), so a typo or a non-linear target (e.g. an
/// embedding, unsupported here) is never skipped silently.
///
/// # Errors
/// [`PeftError::NoMatch`] (listing the first 20 layer names and the count) when nothing or an
/// entry matches nothing; [`PeftError::ModulesToSaveNoMatch`]; the errors of
/// [`TargetConfig::validate_config`] (for LoRA, [`crate::LoraConfig::validate`]).
pub fn resolve_targets<C: TargetConfig>(
    names: &[String],
    config: &C,
) -> Result<TargetPlan<C::Layer>, PeftError> {
    resolve(names, config, true)
}

/// As [`resolve_targets`]; `strict = false` skips the per-entry checks (used when loading a
/// PEFT file, whose tensor keys are checked one by one instead).
pub(crate) fn resolve<C: TargetConfig>(
    names: &[String],
    config: &C,
    strict: bool,
) -> Result<TargetPlan<C::Layer>, PeftError> {
    config.validate_config()?;
    let no_match = |target: String, detail: String| PeftError::NoMatch {
        target,
        detail,
        shown: shown(names),
        count: names.len(),
    };

    let (matcher, check_entries) = match config.target_modules() {
        Some(t) if t.is_all_linear() => (Matcher::List(all_linear(names, config)), false),
        Some(TargetModules::Pattern(p)) => {
            (Matcher::Regex(fullmatch_regex("target_modules", p)?), false)
        }
        Some(TargetModules::List(l)) => (Matcher::List(l.clone()), strict),
        None => (Matcher::List(config.default_target_modules(names)?), false),
    };
    let exclude = match config.exclude_modules() {
        Some(TargetModules::Pattern(p)) => Some(Err(fullmatch_regex("exclude_modules", p)?)),
        Some(TargetModules::List(l)) => Some(Ok(l.clone())),
        None => None,
    };
    let mts = config.modules_to_save();
    let mts_regex = mts
        .iter()
        .map(|m| modules_to_save_regex(m))
        .collect::<Result<Vec<_>, _>>()?;
    let layer_filter = config.layers_to_transform().filter(|l| l.is_active());
    let idx_regexes = layer_index_regexes(config.layers_pattern())?;

    let mut entry_hit = match &matcher {
        Matcher::List(l) => vec![false; l.len()],
        Matcher::Regex(_) => vec![],
    };
    let mut targets = Vec::new();
    let mut n_excluded = 0usize;
    let mut n_filtered = 0usize;
    for name in names {
        // Which list entries this name answers to (before exclusions and the layer filter).
        let (exact, suffix) = match &matcher {
            Matcher::List(l) => {
                let mut exact = false;
                let mut suffix = false;
                for (i, e) in l.iter().enumerate() {
                    if name == e {
                        exact = true;
                        entry_hit[i] = true;
                    } else if name.ends_with(&format!(".{e}")) {
                        suffix = true;
                        entry_hit[i] = true;
                    }
                }
                (exact, suffix)
            }
            Matcher::Regex(re) => (re.is_match(name), false),
        };
        if !(exact || suffix) {
            continue;
        }
        let excluded = match &exclude {
            Some(Err(re)) => re.is_match(name),
            Some(Ok(l)) => l
                .iter()
                .any(|e| name == e || name.ends_with(&format!(".{e}"))),
            None => false,
        } || mts_regex.iter().any(|re| re.is_match(name));
        if excluded {
            n_excluded += 1;
            continue;
        }
        // PEFT applies layers_to_transform only to suffix matches of a list (an exact name in
        // the list is taken as is).
        let selected = if exact {
            true
        } else if let Some(filter) = layer_filter {
            let idx = idx_regexes
                .iter()
                .find_map(|re| re.captures(name))
                .and_then(|c| c.name("idx"))
                .and_then(|m| m.as_str().parse::<usize>().ok());
            idx.is_some_and(|i| filter.contains(i))
        } else {
            true
        };
        if !selected {
            n_filtered += 1;
            continue;
        }
        targets.push((name.clone(), config.layer(name)?));
    }

    let target_json = serde_json::to_string(&config.target_modules()).unwrap_or_default();
    if targets.is_empty() {
        let mut detail = String::new();
        if n_excluded > 0 {
            detail.push_str(&format!(
                " ({n_excluded} matching layers excluded by exclude_modules/modules_to_save)"
            ));
        }
        if n_filtered > 0 || layer_filter.is_some() {
            detail.push_str(&format!(
                " (layers_to_transform = {}, layers_pattern = {}: {n_filtered} matching layers filtered out)",
                serde_json::to_string(&config.layers_to_transform()).unwrap_or_default(),
                serde_json::to_string(&config.layers_pattern()).unwrap_or_default(),
            ));
        }
        return Err(no_match(target_json, detail));
    }
    if check_entries {
        if let Matcher::List(l) = &matcher {
            if let Some((e, _)) = l.iter().zip(&entry_hit).find(|(_, hit)| !**hit) {
                return Err(no_match(
                    format!("entry {e:?}"),
                    format!(" (of target_modules {target_json})"),
                ));
            }
        }
    }

    let mut modules_to_save = Vec::new();
    let mut mts_hit = vec![false; mts.len()];
    for name in names {
        let mut hit = false;
        for (i, m) in mts.iter().enumerate() {
            if name.ends_with(m.as_str()) {
                mts_hit[i] = true;
                hit = true;
            }
        }
        if hit {
            modules_to_save.push(name.clone());
        }
    }
    if strict {
        let is_head = |m: &str| config.is_seq_cls() && SEQ_CLS_HEAD_NAMES.contains(&m);
        if let Some((m, _)) = mts
            .iter()
            .zip(&mts_hit)
            .find(|(m, hit)| !**hit && !is_head(m))
        {
            return Err(PeftError::ModulesToSaveNoMatch {
                entry: m.clone(),
                shown: shown(names),
                count: names.len(),
            });
        }
        if config.is_seq_cls() && !mts.iter().zip(&mts_hit).any(|(m, hit)| *hit && is_head(m)) {
            return Err(PeftError::ModulesToSaveNoMatch {
                entry: "score/classifier (task_type SEQ_CLS)".into(),
                shown: shown(names),
                count: names.len(),
            });
        }
    }
    Ok(TargetPlan {
        targets,
        modules_to_save,
    })
}
