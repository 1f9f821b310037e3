//! `Linear4bit` NF4 weights ↔ their state-dict entries (see the table in [`super`]).

use super::quant_state::quant_state_json;
use super::tensor::{fmt_err, take_f32, take_u8, BnbTensor};
use crate::blockwise8::CODE8_LEN;
use crate::nf4::{Absmax, DoubleQuant, Nf4Tensor, NF4_CODE};
use crate::QuantError;

/// The state-dict entries of `t` under the weight key `prefix` (see the table in [`super`]), in
/// bitsandbytes' order.
///
/// # Errors
/// As [`Nf4Tensor::validate`].
pub fn to_state_dict(t: &Nf4Tensor, prefix: &str) -> Result<Vec<(String, BnbTensor)>, QuantError> {
    t.validate()?;
    let mut out = vec![(
        prefix.to_string(),
        BnbTensor::u8(vec![t.packed.len(), 1], t.packed.clone()),
    )];
    match &t.absmax {
        Absmax::F32(a) => {
            out.push((format!("{prefix}.absmax"), BnbTensor::f32(a.clone())));
            out.push((
                format!("{prefix}.quant_map"),
                BnbTensor::f32(NF4_CODE.to_vec()),
            ));
        }
        Absmax::Double(d) => {
            out.push((
                format!("{prefix}.absmax"),
                BnbTensor::u8(vec![d.codes.len()], d.codes.clone()),
            ));
            out.push((
                format!("{prefix}.quant_map"),
                BnbTensor::f32(NF4_CODE.to_vec()),
            ));
            out.push((
                format!("{prefix}.nested_absmax"),
                BnbTensor::f32(d.absmax2.clone()),
            ));
            out.push((
                format!("{prefix}.nested_quant_map"),
                BnbTensor::f32(d.code2.to_vec()),
            ));
        }
    }
    let json = quant_state_json(t).into_bytes();
    out.push((
        format!("{prefix}.quant_state.bitsandbytes__nf4"),
        BnbTensor::u8(vec![json.len()], json),
    ));
    Ok(out)
}

/// Reads an NF4 weight saved by bitsandbytes under the key `prefix`; `get(key)` returns the stored
/// tensor for a key, or `None`.
///
/// # Errors
/// [`QuantError::Format`] naming the key for a missing or mistyped tensor, bad JSON, a
/// `quant_type` other than `nf4`, a `dtype` other than `float32`, a `quant_map` that is not the
/// NF4 code, or parts that do not fit together (the message then carries
/// [`Nf4Tensor::validate`]'s error, for example packed bytes that do not match the JSON `shape`).
pub fn from_state_dict(
    prefix: &str,
    mut get: impl FnMut(&str) -> Option<BnbTensor>,
) -> Result<Nf4Tensor, QuantError> {
    let qs_key = format!("{prefix}.quant_state.bitsandbytes__nf4");
    let json = take_u8(&qs_key, get(&qs_key))?;
    let meta: serde_json::Value =
        serde_json::from_slice(&json).map_err(|e| fmt_err(&qs_key, format!("bad JSON: {e}")))?;
    let field = |name: &str| {
        meta.get(name)
            .ok_or_else(|| fmt_err(&qs_key, format!("no `{name}` field")))
    };
    if field("quant_type")?.as_str() != Some("nf4") {
        return Err(fmt_err(
            &qs_key,
            format!("quant_type {} is not \"nf4\"", field("quant_type")?),
        ));
    }
    for d in ["dtype", "nested_dtype"] {
        if let Some(v) = meta.get(d) {
            if v.as_str() != Some("float32") {
                return Err(fmt_err(
                    &qs_key,
                    format!("{d} {v} is not \"float32\" (only f32 is supported)"),
                ));
            }
        }
    }
    let as_usize = |v: &serde_json::Value, name: &str| {
        v.as_u64().map(|x| x as usize).ok_or_else(|| {
            fmt_err(
                &qs_key,
                format!("`{name}` = {v} is not a non-negative integer"),
            )
        })
    };
    let blocksize = as_usize(field("blocksize")?, "blocksize")?;
    let shape = field("shape")?
        .as_array()
        .ok_or_else(|| fmt_err(&qs_key, "`shape` is not an array"))?
        .iter()
        .map(|d| as_usize(d, "shape"))
        .collect::<Result<Vec<_>, _>>()?;

    let qm_key = format!("{prefix}.quant_map");
    let qm = take_f32(&qm_key, get(&qm_key))?;
    if qm != NF4_CODE {
        return Err(fmt_err(&qm_key, "not the NF4 code table"));
    }
    let packed = take_u8(prefix, get(prefix))?;
    let am_key = format!("{prefix}.absmax");
    let absmax = if meta.get("nested_offset").is_some() {
        let offset = field("nested_offset")?
            .as_f64()
            .ok_or_else(|| fmt_err(&qs_key, "`nested_offset` is not a number"))?
            as f32;
        let blocksize2 = as_usize(field("nested_blocksize")?, "nested_blocksize")?;
        let codes = take_u8(&am_key, get(&am_key))?;
        let k2 = format!("{prefix}.nested_absmax");
        let absmax2 = take_f32(&k2, get(&k2))?;
        let k3 = format!("{prefix}.nested_quant_map");
        let map = take_f32(&k3, get(&k3))?;
        let code2: [f32; CODE8_LEN] = map
            .try_into()
            .map_err(|m: Vec<f32>| fmt_err(&k3, format!("expected 256 values, got {}", m.len())))?;
        Absmax::Double(Box::new(DoubleQuant {
            codes,
            offset,
            absmax2,
            code2,
            blocksize2,
        }))
    } else {
        Absmax::F32(take_f32(&am_key, get(&am_key))?)
    };
    let t = Nf4Tensor {
        packed,
        absmax,
        shape,
        blocksize,
    };
    t.validate().map_err(|e| {
        fmt_err(
            prefix,
            format!("the stored tensors do not fit the quant state in `{qs_key}`: {e}"),
        )
    })?;
    Ok(t)
}
