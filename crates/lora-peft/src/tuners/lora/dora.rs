//! DoRA in a LoRA config (`use_dora = true`; PEFT `peft/tuners/lora/dora.py`,
//! `variants.py` `DoraLinearVariant`): attaching a fresh or a loaded DoRA adapter, and reading
//! the LoRA pair and magnitude of whichever adapter a layer holds. The layer module is
//! `lora_core::DoraAdapter`.
//!
//! File key: `base_model.model.{layer}.lora_magnitude_vector`, shape `[d_out]`, no `.weight`
//! (PEFT's `LoraModel._get_adapter_state_dict` drops it; with the adapter name the key is
//! `….lora_magnitude_vector.default`). For GPT-2 `Conv1D` layers `d_out` is the Conv1D's second
//! dimension (`c_attn`: 3·n_embd), as PEFT transposes `fan_in_fan_out` weights first.
use crate::adapter_dir::KEY_PREFIX;
use crate::PeftError;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_core::{DoraAdapter, LoraAdapter, LoraLayerConfig, LoraLinear};

/// The per-layer part of the magnitude key (a PEFT `adapter_layer_names` entry).
pub const MAGNITUDE_PART: &str = "lora_magnitude_vector";

/// `base_model.model.{layer}.lora_magnitude_vector`, shape `[d_out]`.
pub fn magnitude_key(layer: &str) -> String {
    format!("{KEY_PREFIX}{layer}.{MAGNITUDE_PART}")
}

fn lora_err(name: &str) -> impl Fn(lora_core::LoraError) -> PeftError + '_ {
    move |source| PeftError::Lora {
        name: name.to_string(),
        source,
    }
}

/// Attaches a fresh adapter to layer `name`: LoRA per `c`, and with `use_dora` the DoRA
/// magnitude initialised from the base weight, `m = ‖W + scaling·A·B‖` per output unit (PEFT
/// `DoraLinearLayer.update_layer`; a quantized base is dequantized for it).
///
/// # Errors
/// [`PeftError::Lora`] naming the layer when the layer refuses the adapter (merged, bad config).
pub fn attach_fresh<B: Backend>(
    name: &str,
    l: &mut LoraLinear<B>,
    c: &LoraLayerConfig,
    use_dora: bool,
    device: &B::Device,
) -> Result<(), PeftError> {
    if !use_dora {
        return l.attach(c, device).map_err(lora_err(name));
    }
    let (d_in, d_out) = l.dims();
    let lora = LoraAdapter::new(d_in, d_out, c, device).map_err(lora_err(name))?;
    let dora = DoraAdapter::init(lora, l.base()).map_err(lora_err(name))?;
    l.attach_adapter(dora).map_err(lora_err(name))
}

/// Attaches a loaded adapter to layer `name`: `a` `[d_in, r]`, `b` `[r, d_out]`, and for DoRA
/// the magnitude `m` `[d_out]` from the file.
///
/// # Errors
/// [`PeftError::Lora`] naming the layer when the tensors do not fit it or it is merged.
pub fn attach_loaded<B: Backend>(
    name: &str,
    l: &mut LoraLinear<B>,
    (a, b, m): (Tensor<B, 2>, Tensor<B, 2>, Option<Tensor<B, 1>>),
    c: &LoraLayerConfig,
) -> Result<(), PeftError> {
    let Some(m) = m else {
        return l.attach_tensors(a, b, c).map_err(lora_err(name));
    };
    let (d_in, d_out) = l.dims();
    let r = c.r;
    if a.dims() != [d_in, r] || b.dims() != [r, d_out] {
        return Err(PeftError::State(format!(
            "layer `{name}`: lora_A {:?} / lora_B {:?} do not fit a [{d_in}, {d_out}] layer of rank \
             {r}",
            a.dims(),
            b.dims()
        )));
    }
    let lora = LoraAdapter::from_tensors(a, b, c).map_err(lora_err(name))?;
    let dora = DoraAdapter::from_parts(lora, m).map_err(lora_err(name))?;
    l.attach_adapter(dora).map_err(lora_err(name))
}

/// A layer's LoRA pair and, for DoRA, its magnitude `[d_out]`.
pub type LoraParts<'a, B> = (&'a LoraAdapter<B>, Option<Tensor<B, 1>>);

/// The LoRA pair of an attached adapter and, for DoRA, its magnitude `[d_out]`; `None` when the
/// layer has no adapter.
///
/// # Errors
/// [`PeftError::State`] when the layer holds an adapter of another method (not LoRA or DoRA),
/// or a DoRA adapter while `use_dora` is false (or a plain LoRA one while it is true): the file
/// would not load back as the model is.
pub fn lora_parts<'a, B: Backend>(
    name: &str,
    l: &'a LoraLinear<B>,
    use_dora: bool,
) -> Result<Option<LoraParts<'a, B>>, PeftError> {
    let Some(a) = l.attached_adapter() else {
        return Ok(None);
    };
    let (lora, m) = match (a.as_lora(), a.as_dora()) {
        (Some(lora), _) => (lora, None),
        (None, Some(d)) => (d.lora(), Some(d.magnitude())),
        (None, None) => {
            return Err(PeftError::State(format!(
                "layer `{name}` holds an adapter of another method than LoRA/DoRA; a LoRA config \
                 cannot save it"
            )))
        }
    };
    if m.is_some() != use_dora {
        return Err(PeftError::State(format!(
            "layer `{name}` holds a {} adapter but the config has use_dora = {use_dora}",
            if m.is_some() { "DoRA" } else { "plain LoRA" }
        )));
    }
    Ok(Some((lora, m)))
}
