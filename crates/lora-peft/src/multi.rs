//! Several named adapters on one model, as PEFT's `PeftModel` holds them (`peft_model.py`
//! `load_adapter`, `save_pretrained`, `delete_adapter`; `tuners/tuners_utils.py`
//! `BaseTuner.set_adapter`, `delete_adapter`; `tuners/lora/model.py` `_enable_peft_forward_hooks`
//! for `adapter_names`).
//!
//! [`NamedAdapters`] owns the model and the adapters' configs by name. Adapter directories load
//! under a name with every method's own loader ([`crate::tuners::load`]), which attaches the
//! adapter named `"default"`: the loader runs with the layers' `"default"` adapters renamed
//! aside and its result is renamed to the wanted name, so no method needs to know about names.
//! Saving one adapter does the same in reverse. The forward of the model then adds the terms of
//! every active adapter (`lora_core::LoraLinear::forward`).
use crate::adapter_dir::CONFIG_NAME;
use crate::tuners::{self, AdapterConfig};
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::{NamedLinears, BASE_ROW, DEFAULT_ADAPTER};
use std::path::Path;

/// A temporary layer-level name for the `"default"` adapter while a loader or saver works on
/// another one; the `/` keeps it apart from every user name ([`check_adapter_name`]).
const ASIDE: &str = "default/aside";

/// A model with several named adapters (PEFT `PeftModel` with more than one adapter): their
/// configs by name, in the order they were added, and the active set, which every layer follows.
///
/// All adapters are of one method (PEFT: "Cannot combine adapters with different peft types").
/// Adapters with `modules_to_save` are refused: the copies of a whole module per adapter are not
/// modelled.
#[derive(Debug)]
pub struct NamedAdapters<M> {
    model: M,
    configs: Vec<(String, AdapterConfig)>,
    active: Vec<String>,
}

impl<M> NamedAdapters<M> {
    /// Wraps a model that carries no adapter yet.
    ///
    /// # Errors
    /// [`PeftError::State`] naming the first layer that already has an adapter (its config is
    /// unknown here: load adapters through [`NamedAdapters::load_adapter`]).
    pub fn new<B: Backend>(model: M) -> Result<Self, PeftError>
    where
        M: NamedLinears<B>,
    {
        let mut first = None;
        model.visit_linears(&mut |n, l| {
            if first.is_none() && l.has_adapter() {
                first = Some(n.to_string());
            }
        });
        if let Some(n) = first {
            return Err(PeftError::State(format!(
                "layer `{n}` already has an adapter: wrap the model before loading adapters"
            )));
        }
        Ok(Self {
            model,
            configs: Vec::new(),
            active: Vec::new(),
        })
    }

    /// The model (its forward uses the active adapters).
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably. Changing its adapters directly bypasses the bookkeeping here.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The model, unwrapped.
    pub fn into_model(self) -> M {
        self.model
    }

    /// The adapter names, in the order they were added.
    pub fn adapter_names(&self) -> Vec<&str> {
        self.configs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The active adapter names (PEFT `active_adapters`).
    pub fn active_adapters(&self) -> &[String] {
        &self.active
    }

    /// The config of adapter `name`.
    pub fn config(&self, name: &str) -> Option<&AdapterConfig> {
        self.configs.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// The config of adapter `name`, or [`PeftError::UnknownAdapter`].
    pub(crate) fn require(&self, name: &str) -> Result<&AdapterConfig, PeftError> {
        self.config(name).ok_or_else(|| PeftError::UnknownAdapter {
            name: name.to_string(),
            known: self.adapter_names().iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Records a new adapter's config (its layers are already attached); the first adapter
    /// becomes active.
    pub(crate) fn push_config(&mut self, name: &str, config: AdapterConfig) {
        if self.configs.is_empty() {
            self.active = vec![name.to_string()];
        }
        self.configs.push((name.to_string(), config));
    }
}

impl<M> NamedAdapters<M> {
    /// Loads the PEFT adapter directory `dir` under `name` (PEFT `PeftModel.load_adapter`), with
    /// the loader of the method its `peft_type` names. The first adapter becomes active; later
    /// ones are added inactive, as in PEFT. Returns its config.
    ///
    /// # Errors
    /// [`PeftError::State`] for a bad or taken name (see [`check_adapter_name`]), a method other
    /// than the adapters' already loaded, or a config with `modules_to_save`; otherwise as the
    /// method's loader ([`tuners::load`]). The model is unchanged on error.
    pub fn load_adapter<B: Backend>(
        &mut self,
        dir: &Path,
        name: &str,
        device: &B::Device,
    ) -> Result<&AdapterConfig, PeftError>
    where
        M: NamedLinears<B>,
    {
        self.check_new_name(name)?;
        let config = AdapterConfig::from_file(dir.join(CONFIG_NAME))?;
        self.check_compatible(&config, &dir.join(CONFIG_NAME).display().to_string())?;
        let loaded = match with_default_aside(&mut self.model, |m| tuners::load(m, dir, device)) {
            Ok(c) => c,
            Err(e) => {
                // Layers may have re-chosen their active adapter while the loader ran.
                let _ = self.apply_active();
                return Err(e);
            }
        };
        rename_all(&mut self.model, DEFAULT_ADAPTER, name)?;
        restore_default(&mut self.model)?;
        self.push_config(name, loaded);
        self.apply_active()?;
        self.require(name)
    }

    /// Refuses a config whose method differs from the loaded adapters' or that has
    /// `modules_to_save`; `what` names its source.
    pub(crate) fn check_compatible(
        &self,
        config: &AdapterConfig,
        what: &str,
    ) -> Result<(), PeftError> {
        if let Some((n, c)) = self.configs.first() {
            if c.peft_type() != config.peft_type() {
                return Err(PeftError::State(format!(
                    "{what}: peft_type {} differs from adapter {n:?}'s {}; one model holds \
                     adapters of one method (PEFT: \"Cannot combine adapters with different \
                     peft types\")",
                    config.peft_type(),
                    c.peft_type()
                )));
            }
        }
        let mts = modules_to_save(config);
        if !mts.is_empty() {
            return Err(PeftError::Unsupported {
                field: "modules_to_save".into(),
                value: format!("{mts:?}"),
                msg: format!("{what}: several named adapters with modules_to_save"),
            });
        }
        Ok(())
    }

    /// Refuses a bad or taken adapter name.
    pub(crate) fn check_new_name(&self, name: &str) -> Result<(), PeftError> {
        check_adapter_name(name)?;
        if self.config(name).is_some() {
            return Err(PeftError::State(format!(
                "adapter {name:?} already exists (adapters {:?})",
                self.adapter_names()
            )));
        }
        Ok(())
    }

    /// Sets the active adapters on every layer (PEFT `model.base_model.set_adapter([a, b])`):
    /// the forward then adds the terms of all of them (for LoRA, the deltas add). Each layer
    /// activates the listed adapters it holds.
    ///
    /// # Errors
    /// [`PeftError::UnknownAdapter`]; [`PeftError::State`] for an empty list or a name listed
    /// twice; [`PeftError::Lora`] naming the layer that refuses (merged; several adapters of
    /// which one is not LoRA, e.g. DoRA). Layers before a refusing one are switched already.
    pub fn set_adapter<B: Backend>(&mut self, names: &[&str]) -> Result<(), PeftError>
    where
        M: NamedLinears<B>,
    {
        if names.is_empty() {
            return Err(PeftError::State(
                "set_adapter: expected at least one adapter name".into(),
            ));
        }
        for (k, n) in names.iter().enumerate() {
            self.require(n)?;
            if names[..k].contains(n) {
                return Err(PeftError::State(format!(
                    "set_adapter: adapter {n:?} listed twice"
                )));
            }
        }
        self.active = names.iter().map(|s| s.to_string()).collect();
        self.apply_active()
    }

    /// Makes each layer's active set the model's, restricted to the adapters it holds.
    fn apply_active<B: Backend>(&mut self) -> Result<(), PeftError>
    where
        M: NamedLinears<B>,
    {
        let active = &self.active;
        each_layer(&mut self.model, |l| {
            let held: Vec<&str> = active
                .iter()
                .map(String::as_str)
                .filter(|n| l.adapter_named(n).is_some())
                .collect();
            l.set_active_adapters(&held)
        })
    }

    /// Deletes adapter `name` from every layer and forgets its config (PEFT `delete_adapter`).
    /// When it was active it leaves the active set; should the set become empty, the first
    /// remaining name in sorted order becomes active, as PEFT does.
    ///
    /// # Errors
    /// [`PeftError::UnknownAdapter`]; [`PeftError::Lora`] when a layer has it merged.
    pub fn delete_adapter<B: Backend>(&mut self, name: &str) -> Result<(), PeftError>
    where
        M: NamedLinears<B>,
    {
        self.require(name)?;
        let mut merged = None;
        self.model.visit_linears(&mut |n, l| {
            if merged.is_none() && l.is_merged() && l.adapter_named(name).is_some() {
                merged = Some(n.to_string());
            }
        });
        if let Some(n) = merged {
            return Err(PeftError::State(format!(
                "cannot delete adapter {name:?}: layer `{n}` is merged; unmerge first"
            )));
        }
        each_layer(&mut self.model, |l| {
            if l.adapter_named(name).is_some() {
                l.delete_adapter(name)?;
            }
            Ok(())
        })?;
        self.configs.retain(|(n, _)| n != name);
        let was_active = self.active.iter().any(|n| n == name);
        self.active.retain(|n| n != name);
        if was_active && self.active.is_empty() {
            if let Some(first) = self.configs.iter().map(|(n, _)| n).min() {
                self.active.push(first.clone());
            }
        }
        self.apply_active()
    }

    /// Saves adapter `name` alone as a PEFT adapter directory `dir` (config and tensors, keys
    /// without the adapter name) with its method's saver ([`tuners::save`]).
    ///
    /// # Errors
    /// [`PeftError::UnknownAdapter`]; as [`tuners::save`].
    pub fn save_adapter<B: Backend>(&mut self, name: &str, dir: &Path) -> Result<(), PeftError>
    where
        M: NamedLinears<B>,
    {
        let config = self.require(name)?.clone();
        if name == DEFAULT_ADAPTER {
            return tuners::save(&self.model, &config, dir);
        }
        with_default_aside(&mut self.model, |m| {
            rename_all(m, name, DEFAULT_ADAPTER)?;
            let saved = tuners::save(m, &config, dir);
            rename_all(m, DEFAULT_ADAPTER, name)?;
            saved
        })?;
        restore_default(&mut self.model)
    }

    /// Saves every adapter as PEFT's `save_pretrained` does: `"default"` to `dir/`, each other
    /// adapter `n` to `dir/n/`.
    ///
    /// # Errors
    /// As [`NamedAdapters::save_adapter`].
    pub fn save_pretrained<B: Backend>(&mut self, dir: &Path) -> Result<(), PeftError>
    where
        M: NamedLinears<B>,
    {
        let names: Vec<String> = self.configs.iter().map(|(n, _)| n.clone()).collect();
        for n in names {
            let out = if n == DEFAULT_ADAPTER {
                dir.to_path_buf()
            } else {
                dir.join(&n)
            };
            self.save_adapter(&n, &out)?;
        }
        Ok(())
    }

    /// Runs `f` on the model with one adapter per batch row (PEFT's `adapter_names` forward
    /// argument): row `i` goes through adapter `names[i]` alone, or through the base only for
    /// `"__base__"` ([`BASE_ROW`]); a layer that lacks the adapter of a row runs that row
    /// through its base, as PEFT's layers do. The active set plays no part. The per-row choice
    /// is cleared again before returning.
    ///
    /// # Errors
    /// [`PeftError::UnknownAdapter`] for a name that is neither an adapter nor `"__base__"`
    /// (PEFT: "Trying to infer with non-existing adapter(s)"); [`PeftError::Lora`] when a layer
    /// is merged.
    ///
    /// # Panics
    /// When the batch that reaches a layer does not have `names.len()` rows (the model's
    /// `input_ids` must be `[names.len(), seq]`).
    pub fn with_adapter_names<B: Backend, R>(
        &mut self,
        names: &[&str],
        f: impl FnOnce(&M) -> R,
    ) -> Result<R, PeftError>
    where
        M: NamedLinears<B>,
    {
        for n in names {
            if *n != BASE_ROW {
                self.require(n)?;
            }
        }
        let set = each_layer(&mut self.model, |l| {
            let rows = names
                .iter()
                .map(|n| match l.adapter_named(n) {
                    Some(_) => n.to_string(),
                    None => BASE_ROW.to_string(),
                })
                .collect();
            l.set_adapter_names(Some(rows))
        });
        let out = set.map(|()| f(&self.model));
        each_layer(&mut self.model, |l| l.set_adapter_names(None))?;
        out
    }
}

/// The `modules_to_save` a config implies (with the task type's additions).
fn modules_to_save(config: &AdapterConfig) -> Vec<String> {
    match config {
        AdapterConfig::Lora(c) => c.effective_modules_to_save(),
        AdapterConfig::Ia3(c) => c.effective_modules_to_save(),
        AdapterConfig::PrefixTuning(_) | AdapterConfig::PromptTuning(_) => Vec::new(),
    }
}

/// Checks a name for an adapter: non-empty, not `"__base__"` (the per-row "no adapter"), and
/// usable as the folder `save_pretrained` writes it to (no `/` or `\`, not `.` or `..`).
///
/// # Errors
/// [`PeftError::State`] naming the name and the rule.
pub fn check_adapter_name(name: &str) -> Result<(), PeftError> {
    let bad = name.is_empty()
        || name == BASE_ROW
        || name == "."
        || name == ".."
        || name.contains(['/', '\\']);
    if bad {
        return Err(PeftError::State(format!(
            "invalid adapter name {name:?}: expected a non-empty folder name (no '/', '\\', not \
             '.' or '..') other than {BASE_ROW:?}"
        )));
    }
    Ok(())
}

/// Runs `op` on every layer, stopping at the first error (named by its layer).
pub(crate) fn each_layer<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    mut op: impl FnMut(&mut lora_core::LoraLinear<B>) -> Result<(), lora_core::LoraError>,
) -> Result<(), PeftError> {
    let mut err = None;
    model.visit_linears_mut(&mut |name, l| {
        if err.is_none() {
            if let Err(source) = op(l) {
                err = Some(PeftError::Lora {
                    name: name.to_string(),
                    source,
                });
            }
        }
    });
    err.map_or(Ok(()), Err)
}

/// Renames adapter `from` to `to` on every layer that holds it.
fn rename_all<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    from: &str,
    to: &str,
) -> Result<(), PeftError> {
    each_layer(model, |l| {
        if l.adapter_named(from).is_some() {
            l.rename_adapter(from, to)?;
        }
        Ok(())
    })
}

/// Runs `op` with every layer's `"default"` adapter renamed aside; on error, drops whatever
/// `"default"` adapters `op` left and puts the aside ones back. On success the caller renames
/// the new `"default"` adapters and then calls [`restore_default`].
fn with_default_aside<B: Backend, M: NamedLinears<B>, T>(
    model: &mut M,
    op: impl FnOnce(&mut M) -> Result<T, PeftError>,
) -> Result<T, PeftError> {
    rename_all(model, DEFAULT_ADAPTER, ASIDE)?;
    match op(model) {
        Ok(t) => Ok(t),
        Err(e) => {
            let _ = each_layer(model, |l| {
                if l.adapter_named(DEFAULT_ADAPTER).is_some() {
                    l.delete_adapter(DEFAULT_ADAPTER)?;
                }
                Ok(())
            });
            restore_default(model)?;
            Err(e)
        }
    }
}

/// Renames the adapters put aside by [`with_default_aside`] back to `"default"`.
fn restore_default<B: Backend, M: NamedLinears<B>>(model: &mut M) -> Result<(), PeftError> {
    rename_all(model, ASIDE, DEFAULT_ADAPTER)
}
