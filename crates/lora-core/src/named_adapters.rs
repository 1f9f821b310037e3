//! Several named adapters on one [`LoraLinear`] (PEFT `tuners/tuners_utils.py`
//! `BaseTunerLayer.set_adapter` / `delete_adapter`, `tuners/lora/layer.py` `update_layer` with a
//! new `adapter_name`, `_mixed_batch_forward`): add under a name, choose the active set, rename,
//! delete, and the per-row choice of PEFT's `adapter_names` forward argument.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::linear::DEFAULT_ADAPTER;
use crate::{Adapter, LoraAdapter, LoraError, LoraLayerConfig, LoraLinear};

/// The name that stands for "no adapter" in a per-row choice (PEFT `adapter_names`' `"__base__"`);
/// never an adapter's name.
pub const BASE_ROW: &str = "__base__";

impl<B: Backend> LoraLinear<B> {
    /// Adds `adapter` under `name` (PEFT `update_layer` with a new adapter name). The first
    /// adapter of a layer becomes active; later ones are added inactive, as PEFT's
    /// `add_adapter` / `load_adapter` leave the active adapter alone.
    ///
    /// # Errors
    /// [`LoraError::State`] when the layer is merged, `name` is taken, empty or [`BASE_ROW`].
    pub fn add_adapter(
        &mut self,
        name: &str,
        adapter: impl Into<Adapter<B>>,
    ) -> Result<(), LoraError> {
        self.check_not_merged("add an adapter to")?;
        check_name(name)?;
        if self.position(name).is_some() {
            return Err(LoraError::State(format!(
                "adapter {name:?} already exists (adapters {:?})",
                self.names
            )));
        }
        self.adapters.push(adapter.into());
        self.names.push(name.to_string());
        if self.active.is_empty() && self.adapters.len() == 1 {
            self.active.push(name.to_string());
        }
        Ok(())
    }

    /// A LoRA adapter from factors `a` `[d_in, r]`, `b` `[r, d_out]` checked against this
    /// layer's dims.
    ///
    /// # Errors
    /// [`LoraError::Shape`]; as [`LoraAdapter::from_tensors`].
    pub fn lora_from_tensors(
        &self,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        config: &LoraLayerConfig,
    ) -> Result<LoraAdapter<B>, LoraError> {
        let (i, o) = self.dims();
        if a.dims() != [i, config.r] {
            return Err(LoraError::Shape {
                what: "lora_A".into(),
                expected: vec![i, config.r],
                got: a.dims().to_vec(),
            });
        }
        if b.dims() != [config.r, o] {
            return Err(LoraError::Shape {
                what: "lora_B".into(),
                expected: vec![config.r, o],
                got: b.dims().to_vec(),
            });
        }
        LoraAdapter::from_tensors(a, b, config)
    }

    /// The adapter names, in the order the adapters were added (their parameter order).
    pub fn adapter_names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    /// The active adapter names, in activation order (the order forward and merge apply them).
    pub fn active_adapters(&self) -> &[String] {
        &self.active
    }

    /// The adapter of any method named `name`.
    pub fn adapter_named(&self, name: &str) -> Option<&Adapter<B>> {
        self.position(name).map(|i| &self.adapters[i])
    }

    /// The LoRA adapter named `name` (`None` when absent or of another method).
    pub fn lora_named(&self, name: &str) -> Option<&LoraAdapter<B>> {
        self.adapter_named(name).and_then(Adapter::as_lora)
    }

    /// Sets the active adapters (PEFT `BaseTunerLayer.set_adapter`; an empty list deactivates
    /// them all). Forward adds every active adapter's term and merge merges them all, in this
    /// order. Several adapters can only be active together when all are LoRA (their terms add
    /// up; PEFT keeps one method per model).
    ///
    /// # Errors
    /// [`LoraError::State`] when the layer is merged (PEFT unmerges with a warning: unmerge
    /// explicitly here), for a name this layer does not hold (naming it and the names held), a
    /// name given twice, or several names of which one is not a LoRA adapter. The active set is
    /// unchanged on error.
    pub fn set_active_adapters(&mut self, names: &[&str]) -> Result<(), LoraError> {
        self.check_not_merged("switch adapters of")?;
        for (k, n) in names.iter().enumerate() {
            let Some(i) = self.position(n) else {
                return Err(LoraError::State(format!(
                    "unknown adapter {n:?}: this layer has {:?}",
                    self.names
                )));
            };
            if names[..k].contains(n) {
                return Err(LoraError::State(format!("adapter {n:?} listed twice")));
            }
            if names.len() > 1 && self.adapters[i].as_lora().is_none() {
                return Err(LoraError::State(format!(
                    "adapter {n:?} is not a LoRA adapter: several adapters can be active together \
                     only when all are LoRA (their terms add up); got {names:?}"
                )));
            }
        }
        self.active = names.iter().map(|n| n.to_string()).collect();
        Ok(())
    }

    /// Deletes the adapter `name` and returns it (PEFT `BaseTunerLayer.delete_adapter`). When it
    /// was active it leaves the active set; should that empty the set, the first remaining name
    /// in sorted order becomes active, as PEFT does.
    ///
    /// # Errors
    /// [`LoraError::State`] for an unknown name, or when `name` is merged into the base (PEFT
    /// refuses too: unmerge first).
    pub fn delete_adapter(&mut self, name: &str) -> Result<Adapter<B>, LoraError> {
        let Some(i) = self.position(name) else {
            return Err(LoraError::State(format!(
                "cannot delete unknown adapter {name:?}: this layer has {:?}",
                self.names
            )));
        };
        if self.merged.iter().any(|n| n == name) {
            return Err(LoraError::State(format!(
                "cannot delete adapter {name:?} while it is merged: unmerge first"
            )));
        }
        let was_active = self.is_active(name);
        self.names.remove(i);
        let adapter = self.adapters.remove(i);
        self.active.retain(|n| n != name);
        if was_active && self.active.is_empty() {
            if let Some(first) = self.names.iter().min() {
                self.active.push(first.clone());
            }
        }
        Ok(adapter)
    }

    /// Renames adapter `from` to `to` (position, active and merged state kept).
    ///
    /// # Errors
    /// [`LoraError::State`] for an unknown `from`, or a `to` that is taken, empty or
    /// [`BASE_ROW`].
    pub fn rename_adapter(&mut self, from: &str, to: &str) -> Result<(), LoraError> {
        check_name(to)?;
        let Some(i) = self.position(from) else {
            return Err(LoraError::State(format!(
                "cannot rename unknown adapter {from:?}: this layer has {:?}",
                self.names
            )));
        };
        if from == to {
            return Ok(());
        }
        if self.position(to).is_some() {
            return Err(LoraError::State(format!("adapter {to:?} already exists")));
        }
        self.names[i] = to.to_string();
        for n in self.active.iter_mut().chain(self.merged.iter_mut()) {
            if n == from {
                *n = to.to_string();
            }
        }
        if let Some(rows) = &mut self.row_adapters {
            for n in rows.iter_mut().filter(|n| *n == from) {
                *n = to.to_string();
            }
        }
        Ok(())
    }

    /// Makes every following [`LoraLinear::forward`] choose the adapter per batch row: row `i`
    /// goes through `names[i]` alone (any adapter of this layer, active or not), or through the
    /// base only for [`BASE_ROW`] (PEFT's `adapter_names` forward argument). `None` goes back
    /// to the active set.
    ///
    /// # Errors
    /// As [`LoraLinear::forward_adapter_names`] (the row count is checked at forward time).
    pub fn set_adapter_names(&mut self, names: Option<Vec<String>>) -> Result<(), LoraError> {
        if let Some(names) = &names {
            self.check_row_names(names.iter().map(String::as_str))?;
        }
        self.row_adapters = names;
        Ok(())
    }

    /// The per-row adapter names set by [`LoraLinear::set_adapter_names`].
    pub fn row_adapter_names(&self) -> Option<&[String]> {
        self.row_adapters.as_deref()
    }

    /// `x` `[batch, ..., d_in]` → `[batch, ..., d_out]` with row `i` through adapter `names[i]`
    /// alone, or the base only for [`BASE_ROW`] (PEFT `Linear._mixed_batch_forward`; the active
    /// set plays no part). Each row equals the single-adapter forward of that row.
    ///
    /// # Errors
    /// [`LoraError::Shape`] when `names.len()` differs from `x`'s first dimension;
    /// [`LoraError::State`] when the layer is merged (PEFT refuses too) or for a name that is
    /// neither [`BASE_ROW`] nor an adapter of this layer.
    pub fn forward_adapter_names<const D: usize>(
        &self,
        x: Tensor<B, D>,
        names: &[&str],
    ) -> Result<Tensor<B, D>, LoraError> {
        self.check_row_names(names.iter().copied())?;
        if x.dims()[0] != names.len() {
            return Err(LoraError::Shape {
                what: "adapter_names (one name per batch row)".into(),
                expected: vec![x.dims()[0]],
                got: vec![names.len()],
            });
        }
        Ok(self.forward_rows(x, names))
    }

    fn check_row_names<'a>(&self, names: impl Iterator<Item = &'a str>) -> Result<(), LoraError> {
        self.check_not_merged("choose adapters per row on")?;
        for n in names {
            if n != BASE_ROW && self.position(n).is_none() {
                return Err(LoraError::State(format!(
                    "unknown adapter {n:?} in adapter_names: this layer has {:?} (and \
                     {BASE_ROW:?} for the base alone)",
                    self.names
                )));
            }
        }
        Ok(())
    }

    /// The per-row forward on checked names: the rows of each name (in order of first
    /// appearance) go through their adapter together, and the outputs are put back in row order.
    pub(crate) fn forward_rows<const D: usize, S: AsRef<str>>(
        &self,
        x: Tensor<B, D>,
        names: &[S],
    ) -> Tensor<B, D> {
        let n = x.dims()[0];
        assert_eq!(
            n,
            names.len(),
            "LoraLinear::forward: {} per-row adapter names set for a batch of {n} rows",
            names.len()
        );
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let name = name.as_ref();
            match groups.iter_mut().find(|(g, _)| *g == name) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((name, vec![i])),
            }
        }
        let device = x.device();
        let index = |rows: &[usize]| {
            let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [rows.len()]), &device)
        };
        let run = |name: &str, x: Tensor<B, D>| match self.adapter_named(name) {
            Some(a) => self.forward_with(&[a], x),
            None => self.forward_with(&[], x),
        };
        if let [(name, _)] = groups.as_slice() {
            return run(name, x);
        }
        let mut outs = Vec::with_capacity(groups.len());
        let mut order = Vec::with_capacity(n);
        for (name, rows) in &groups {
            outs.push(run(name, x.clone().select(0, index(rows))));
            order.extend_from_slice(rows);
        }
        // `order[p]` is the row at position p of the concatenation; invert it.
        let mut inverse = vec![0; n];
        for (p, &r) in order.iter().enumerate() {
            inverse[r] = p;
        }
        Tensor::cat(outs, 0).select(0, index(&inverse))
    }

    /// Puts `adapter` under [`DEFAULT_ADAPTER`] (in place when present, else last) and makes it
    /// active when nothing is.
    pub(crate) fn set_default(&mut self, adapter: Adapter<B>) -> Result<(), LoraError> {
        match self.position(DEFAULT_ADAPTER) {
            Some(i) => {
                let shared = self.active.len() > 1 && self.is_active(DEFAULT_ADAPTER);
                if shared && adapter.as_lora().is_none() {
                    return Err(LoraError::State(format!(
                        "cannot replace adapter {DEFAULT_ADAPTER:?} by a non-LoRA adapter while \
                         it is active together with {:?}",
                        self.active
                    )));
                }
                self.adapters[i] = adapter;
            }
            None => {
                self.adapters.push(adapter);
                self.names.push(DEFAULT_ADAPTER.to_string());
            }
        }
        if self.active.is_empty() {
            self.active.push(DEFAULT_ADAPTER.to_string());
        }
        Ok(())
    }

    /// [`LoraError::State`] "cannot {what} a merged layer" when merged.
    pub(crate) fn check_not_merged(&self, what: &str) -> Result<(), LoraError> {
        if self.is_merged() {
            return Err(LoraError::State(format!(
                "cannot {what} a merged layer (merged adapters {:?}): unmerge first",
                self.merged
            )));
        }
        Ok(())
    }

    /// Index of the adapter named `name`.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Whether `name` is in the active set.
    pub(crate) fn is_active(&self, name: &str) -> bool {
        self.active.iter().any(|n| n == name)
    }
}

/// Adapter names are non-empty and not [`BASE_ROW`].
fn check_name(name: &str) -> Result<(), LoraError> {
    if name.is_empty() || name == BASE_ROW {
        return Err(LoraError::State(format!(
            "invalid adapter name {name:?}: expected a non-empty name other than {BASE_ROW:?}"
        )));
    }
    Ok(())
}
