//! Adding and removing bottleneck adapters (AdapterHub `model.add_adapter(name, config)` for a
//! `BnConfig`, `methods/bottleneck.py` `BottleneckLayer.add_adapter`; `delete_adapter`).
use super::BnConfig;
use crate::PeftError;
use burn::tensor::backend::Backend;
use lora_core::{BottleneckAdapter, BottleneckLayers, BottleneckLocation};

/// The `(layer, location)` slots `config` puts adapters in on `model`, in forward order.
pub fn bottleneck_slots<B: Backend, M: BottleneckLayers<B>>(
    model: &M,
    config: &BnConfig,
) -> Vec<(usize, BottleneckLocation)> {
    (0..model.num_layers())
        .flat_map(|l| BottleneckLocation::ALL.map(|loc| (l, loc)))
        .filter(|&(l, loc)| config.has_adapter(l, loc))
        .collect()
}

pub(crate) fn slot_error(
    layer: usize,
    location: BottleneckLocation,
    e: lora_core::LoraError,
) -> PeftError {
    PeftError::Lora {
        name: format!("layer {layer} {}", location.module_name()),
        source: e,
    }
}

/// Puts a fresh adapter (initialised per `config.init_weights` with the backend's generator)
/// in every slot `config` names — `attention_adapters` when `mh_adapter`, `output_adapters`
/// when `output_adapter`, skipping `leave_out` layers — and empties the others. Returns the
/// filled slots in forward order.
///
/// # Errors
/// As [`BnConfig::validate`] (with `fresh`); [`PeftError::Config`] when `leave_out` names a
/// layer the model does not have; [`PeftError::Lora`] from the layer. The model is unchanged
/// on error.
pub fn add_bottleneck<B: Backend, M: BottleneckLayers<B>>(
    model: &mut M,
    config: &BnConfig,
    device: &B::Device,
) -> Result<Vec<(usize, BottleneckLocation)>, PeftError> {
    config.validate(true)?;
    check_leave_out(model.num_layers(), config)?;
    let d = model.hidden_size();
    let mut built = Vec::new();
    for layer in 0..model.num_layers() {
        for loc in BottleneckLocation::ALL {
            let adapter = match config.layer_config(d, layer, loc, true)? {
                Some(c) => Some(
                    BottleneckAdapter::new(&c, device).map_err(|e| slot_error(layer, loc, e))?,
                ),
                None => None,
            };
            built.push((layer, loc, adapter));
        }
    }
    set_all(model, built)
}

/// Empties every bottleneck slot of `model` (AdapterHub `delete_adapter`); returns how many
/// adapters were removed.
pub fn remove_bottleneck<B: Backend, M: BottleneckLayers<B>>(model: &mut M) -> usize {
    let mut n = 0;
    for layer in 0..model.num_layers() {
        for loc in BottleneckLocation::ALL {
            if let Ok(Some(_)) = model.set_bottleneck(layer, loc, None) {
                n += 1;
            }
        }
    }
    n
}

/// `leave_out` entries must be layers of the model.
pub(crate) fn check_leave_out(num_layers: usize, config: &BnConfig) -> Result<(), PeftError> {
    if let Some(&l) = config.leave_out.iter().find(|&&l| l >= num_layers) {
        return Err(PeftError::Config {
            field: "leave_out".into(),
            value: format!("{:?}", config.leave_out),
            msg: format!("layer {l} does not exist: the model has {num_layers} layers"),
        });
    }
    Ok(())
}

/// Sets every slot from `built` (all built before, so a failure leaves nothing half-done
/// except on a slot error, which the model's checks make before any change of that slot).
pub(crate) fn set_all<B: Backend, M: BottleneckLayers<B>>(
    model: &mut M,
    built: Vec<(usize, BottleneckLocation, Option<BottleneckAdapter<B>>)>,
) -> Result<Vec<(usize, BottleneckLocation)>, PeftError> {
    let mut filled = Vec::new();
    for (layer, loc, adapter) in built {
        if adapter.is_some() {
            filled.push((layer, loc));
        }
        model
            .set_bottleneck(layer, loc, adapter)
            .map_err(|e| slot_error(layer, loc, e))?;
    }
    Ok(filled)
}
