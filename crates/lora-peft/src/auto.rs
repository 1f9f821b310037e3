//! Loading adapter directories of any method onto a model, all active at once: PEFT's
//! `PeftModel.from_pretrained` (LoRA, DoRA, IA3, prefix and prompt tuning), `load_adapter` +
//! `base_model.set_adapter([...])` for several LoRA adapters (their deltas add), and
//! AdapterHub's `load_adapter` for a bottleneck directory.

use crate::adapter_dir::{read_config_text, CONFIG_NAME};
use crate::tuners::bottleneck::is_adapterhub_config;
use crate::tuners::{peft_type_of, PeftType};
use crate::{load_bottleneck, merge_and_unload, NamedAdapters, PeftError, PeftModel};
use burn::module::ModuleDisplay;
use burn::tensor::backend::Backend;
use lora_core::BottleneckLayers;
use lora_models::LanguageModel;
use std::fmt;
use std::path::{Path, PathBuf};

/// What an adapter directory holds, read from its `adapter_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// A PEFT adapter of the given `peft_type`.
    Peft(PeftType),
    /// An AdapterHub bottleneck adapter (`adapters` 1.x `BnConfig`).
    Bottleneck,
}

impl AdapterKind {
    /// Whether the method folds into the base weights (PEFT `merge_and_unload`: LoRA, DoRA,
    /// IA3).
    pub fn mergeable(self) -> bool {
        matches!(self, AdapterKind::Peft(PeftType::Lora | PeftType::Ia3))
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterKind::Peft(t) => write!(f, "{t}"),
            AdapterKind::Bottleneck => f.write_str("AdapterHub bottleneck"),
        }
    }
}

/// The kind of the adapter directory `dir`.
///
/// # Errors
/// [`PeftError::Io`] / [`PeftError::Json`] naming `dir/adapter_config.json`;
/// [`PeftError::UnsupportedPeftType`] for a `peft_type` not implemented here.
pub fn adapter_kind(dir: &Path) -> Result<AdapterKind, PeftError> {
    let (path, text) = read_config_text(&dir.join(CONFIG_NAME))?;
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|source| PeftError::Json {
            path: path.clone(),
            source,
        })?;
    if is_adapterhub_config(&v) {
        return Ok(AdapterKind::Bottleneck);
    }
    Ok(AdapterKind::Peft(peft_type_of(&text, &path)?))
}

/// Loads the adapter directories `dirs` onto `model`, all active at once; no directory gives
/// the bare model. One directory of any kind loads as PEFT's `PeftModel.from_pretrained` (or
/// AdapterHub's `load_adapter`); several must all be LoRA adapters (PEFT
/// `load_adapter(dir, name)` each, then `base_model.set_adapter([...])`: their deltas add),
/// named `default`, `adapter_1`, `adapter_2`, ... With `merge`, the adapters are folded into the
/// weights afterwards (PEFT `merge_and_unload`).
///
/// # Errors
/// [`PeftError::State`] naming the directory and its method when several directories are not
/// all LoRA (prompt learning, bottleneck and IA3 adapters cannot be active together with
/// others here), or when `merge` is asked of a method that does not fold into the weights
/// (prefix / prompt tuning, bottleneck); otherwise the loaders' errors (config, key, shape,
/// and a prefix or hidden size that does not fit the model), each naming the file.
pub fn load_adapters<B, M>(
    model: M,
    dirs: &[PathBuf],
    merge: bool,
    device: &B::Device,
) -> Result<PeftModel<B, M>, PeftError>
where
    B: Backend,
    M: LanguageModel<B> + ModuleDisplay + BottleneckLayers<B>,
{
    let kinds = dirs
        .iter()
        .map(|d| adapter_kind(d))
        .collect::<Result<Vec<_>, _>>()?;
    if merge {
        if let Some((d, k)) = dirs.iter().zip(&kinds).find(|(_, k)| !k.mergeable()) {
            return Err(PeftError::State(format!(
                "--merge: {} holds an adapter of method {k}, which does not fold into the weights (only \
                 LoRA, DoRA and IA3 merge); run it unmerged",
                d.display()
            )));
        }
    }
    let mut pm = match (dirs, kinds.as_slice()) {
        ([], _) => PeftModel::new(model),
        ([d], [AdapterKind::Bottleneck]) => {
            let mut m = model;
            load_bottleneck(&mut m, d, device)?;
            PeftModel::new(m)
        }
        ([d], [AdapterKind::Peft(_)]) => PeftModel::from_pretrained(model, d, device)?,
        _ => {
            if let Some((d, k)) = dirs
                .iter()
                .zip(&kinds)
                .find(|(_, k)| **k != AdapterKind::Peft(PeftType::Lora))
            {
                return Err(PeftError::State(format!(
                    "{} adapters were given; several are active at once only when all are LoRA \
                     adapters (their deltas add), but {} holds an adapter of method {k}",
                    dirs.len(),
                    d.display()
                )));
            }
            let mut na = NamedAdapters::new::<B>(model)?;
            let names: Vec<String> = (0..dirs.len())
                .map(|i| match i {
                    0 => lora_core::DEFAULT_ADAPTER.to_string(),
                    i => format!("adapter_{i}"),
                })
                .collect();
            for (d, n) in dirs.iter().zip(&names) {
                na.load_adapter(d, n, device)?;
            }
            let active: Vec<&str> = names.iter().map(String::as_str).collect();
            na.set_adapter::<B>(&active)?;
            PeftModel::new(na.into_model())
        }
    };
    if merge {
        merge_and_unload(&mut pm.base_model)?;
    }
    Ok(pm)
}
