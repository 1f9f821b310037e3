//! LLM.int8 (`Linear8bitLt`) weights: bitsandbytes' quantizer (float16 cast first) and the
//! state-dict entries (see the table in [`super`]).

use super::tensor::{fmt_err, take_f32, BnbData, BnbTensor};
use super::INT8_WEIGHT_FORMAT_ROW;
use crate::int8::Int8Tensor;
use crate::QuantError;

/// Rounds an f32 to the nearest float16 value (ties to even) and back, as torch's
/// `tensor.to(torch.float16)` does; values beyond float16's range (|x| ≥ 65520) become ±inf,
/// float16 subnormals (|x| < 2⁻¹⁴) are kept on their 2⁻²⁴ grid. NaN stays NaN.
pub fn round_to_f16(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const SUB_SCALE: f32 = 16_777_216.0; // 2^24
    let a = x.abs();
    let r = if a < MIN_NORMAL {
        (a * SUB_SCALE).round_ties_even() / SUB_SCALE
    } else {
        // keep 10 of the 23 mantissa bits, round to nearest even (a carry moves the exponent)
        let b = a.to_bits();
        let lsb = (b >> 13) & 1;
        f32::from_bits((b + 0x0FFF + lsb) & !0x1FFF)
    };
    let r = if r > 65504.0 { f32::INFINITY } else { r };
    r.copysign(x)
}

/// `Int8Params._quantize` of bitsandbytes 0.50 (what transformers' `load_in_8bit=True` runs):
/// the weight is cast to float16 ([`round_to_f16`]), then `int8_vectorwise_quant` (threshold 0)
/// quantizes each row of the `[numel / shape[-1], shape[-1]]` view: `SCB = max|row|` and
/// `CB = round_half_even(x · (127.0 / SCB))` as int8, where torch evaluates the Python-scalar
/// division `127.0 / SCB` as `reciprocal(SCB) · 127` (`Tensor.__rtruediv__`): two f32 roundings,
/// which decide the code of values whose product lands next to a half-integer (a correctly
/// rounded `127 / SCB` gets 6 of the 61,440 llama_a fixture codes wrong). A row of zeros gets
/// codes 0 and SCB 0. `values` is row-major of `shape`.
///
/// # Errors
/// [`QuantError::Shape`] when `shape` does not multiply out to `values.len()`;
/// [`QuantError::Empty`]; [`QuantError::NonFinite`] for a non-finite input or one outside
/// float16's range (|x| ≥ 65520).
pub fn quantize_int8_bnb(values: &[f32], shape: &[usize]) -> Result<Int8Tensor, QuantError> {
    crate::check_values(values, "int8 input")?;
    crate::check_shape(shape, values.len(), "int8 input")?;
    let cols = *shape.last().unwrap_or(&1);
    let half: Vec<f32> = values.iter().map(|&v| round_to_f16(v)).collect();
    if let Some((index, &value)) = values
        .iter()
        .enumerate()
        .find(|(i, _)| !half[*i].is_finite())
    {
        return Err(QuantError::NonFinite {
            what: "int8 input after the float16 cast of bitsandbytes' Int8Params (|x| ≥ 65520)"
                .into(),
            index,
            value,
        });
    }
    let rows = values.len() / cols;
    let mut q = Vec::with_capacity(values.len());
    let mut scale = Vec::with_capacity(rows);
    for row in half.chunks(cols) {
        let am = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        scale.push(am);
        if am == 0.0 {
            q.extend(std::iter::repeat_n(0i8, row.len()));
        } else {
            let s = (1.0f32 / am) * 127.0;
            q.extend(row.iter().map(|&v| (v * s).round_ties_even() as i8));
        }
    }
    Ok(Int8Tensor {
        q,
        scale,
        shape: [rows, cols],
    })
}

/// The `(SCB, weight_format)` keys that go with an int8 weight key: `{m}.SCB` and
/// `{m}.weight_format` for the weight key `{m}.weight`; for a key that does not end in `.weight`
/// (not a `Linear8bitLt` parameter) the whole key is used as `{m}`.
pub fn int8_keys(weight_key: &str) -> (String, String) {
    let m = weight_key.strip_suffix(".weight").unwrap_or(weight_key);
    (format!("{m}.SCB"), format!("{m}.weight_format"))
}

/// The state-dict entries of a `Linear8bitLt` weight (see the module table) under the weight key
/// `weight_key`: `weight_key` I8 of `shape`, the `SCB` F32 `[rows]`, `weight_format` U8 `[]` = 0.
///
/// # Errors
/// [`QuantError::Shape`] when `shape` does not hold `t.q.len()` values with `t.shape[1]` as its
/// last dimension, or `t.scale` is not one value per row.
pub fn int8_to_state_dict(
    t: &Int8Tensor,
    shape: &[usize],
    weight_key: &str,
) -> Result<Vec<(String, BnbTensor)>, QuantError> {
    let [rows, cols] = t.shape;
    if shape.iter().product::<usize>() != t.q.len()
        || shape.last() != Some(&cols)
        || t.q.len() != rows * cols
    {
        return Err(QuantError::Shape {
            what: format!("int8 weight `{weight_key}` (shape vs [rows, cols] codes)"),
            expected: vec![rows, cols],
            got: shape.to_vec(),
        });
    }
    if t.scale.len() != rows {
        return Err(QuantError::Shape {
            what: format!("int8 weight `{weight_key}` SCB (one per row)"),
            expected: vec![rows],
            got: vec![t.scale.len()],
        });
    }
    let (scb, fmt) = int8_keys(weight_key);
    Ok(vec![
        (
            weight_key.to_string(),
            BnbTensor {
                shape: shape.to_vec(),
                data: BnbData::I8(t.q.clone()),
            },
        ),
        (scb, BnbTensor::f32(t.scale.clone())),
        (fmt, BnbTensor::u8(vec![], vec![INT8_WEIGHT_FORMAT_ROW])),
    ])
}

/// Reads a `Linear8bitLt` weight saved under the weight key `weight_key` (with its `SCB` and
/// optional `weight_format`, see [`int8_keys`]); returns the codes and the stored shape.
///
/// # Errors
/// [`QuantError::Format`] naming the key: a missing or mistyped tensor (the weight must be I8, the
/// SCB F32), a 0-dimensional weight, an SCB that is not one value per row, a `weight_format`
/// other than the scalar 0 (row-major).
pub fn int8_from_state_dict(
    weight_key: &str,
    mut get: impl FnMut(&str) -> Option<BnbTensor>,
) -> Result<(Int8Tensor, Vec<usize>), QuantError> {
    let (scb_key, fmt_key) = int8_keys(weight_key);
    let (shape, q) = match get(weight_key) {
        Some(BnbTensor {
            shape,
            data: BnbData::I8(q),
        }) => (shape, q),
        Some(t) => {
            return Err(fmt_err(
                weight_key,
                format!("expected an I8 tensor, found {}", t.dtype_name()),
            ))
        }
        None => return Err(fmt_err(weight_key, "missing")),
    };
    let cols = match shape.last() {
        Some(&c) if c > 0 && shape.iter().product::<usize>() == q.len() => c,
        _ => {
            return Err(fmt_err(
                weight_key,
                format!("int8 weight of shape {shape:?} has no rows to scale"),
            ))
        }
    };
    let rows = q.len() / cols;
    let scale = take_f32(&scb_key, get(&scb_key))?;
    if scale.len() != rows {
        return Err(fmt_err(
            &scb_key,
            format!(
                "expected one absmax per row of `{weight_key}` {shape:?} ({rows} values), got {}",
                scale.len()
            ),
        ));
    }
    if let Some(f) = get(&fmt_key) {
        let ok = matches!(&f.data, BnbData::U8(v) if v.as_slice() == [INT8_WEIGHT_FORMAT_ROW]);
        if !ok {
            return Err(fmt_err(
                &fmt_key,
                format!(
                    "expected the U8 scalar {INT8_WEIGHT_FORMAT_ROW} (row-major), got {} {:?} — \
                     tiled formats of bitsandbytes < 0.45 are not supported",
                    f.dtype_name(),
                    f.data
                ),
            ));
        }
    }
    Ok((
        Int8Tensor {
            q,
            scale,
            shape: [rows, cols],
        },
        shape,
    ))
}
