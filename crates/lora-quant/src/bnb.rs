//! The serialized (state-dict / `save_pretrained`) layouts of bitsandbytes' quantized linear
//! weights, as transformers + bitsandbytes 0.50 write them (`bitsandbytes/nn/modules.py`,
//! `bitsandbytes/functional.py`).
//!
//! **4-bit NF4** — `Linear4bit._save_to_state_dict` with `QuantState.as_dict(packed=True)`:
//!
//! | key | dtype, shape | content |
//! |---|---|---|
//! | `{p}` | U8 `[ceil(n/2), 1]` | packed codes |
//! | `{p}.absmax` | F32 `[blocks]`, or U8 `[blocks]` when double-quantized | block absmax |
//! | `{p}.quant_map` | F32 `[16]` | the NF4 code |
//! | `{p}.nested_absmax` | F32 `[ceil(blocks/256)]` | second-level absmax (double quant only) |
//! | `{p}.nested_quant_map` | F32 `[256]` | the 8-bit dynamic map (double quant only) |
//! | `{p}.quant_state.bitsandbytes__nf4` | U8 `[len]` | UTF-8 JSON (Python `json.dumps`): `quant_type`, `blocksize`, `dtype`, `shape`, and `nested_blocksize`, `nested_dtype`, `nested_offset` |
//!
//! `{p}` is the weight's key, for example `model.layers.0.self_attn.q_proj.weight`.
//!
//! **LLM.int8** — `Linear8bitLt._save_to_state_dict` (with `has_fp16_weights=False`, as
//! transformers' `load_in_8bit=True` sets it), module prefix `{m}` (`{m}.weight` is the weight key):
//!
//! | key | dtype, shape | content |
//! |---|---|---|
//! | `{m}.weight` | I8, the weight's shape | `CB`, row-wise codes |
//! | `{m}.SCB` | F32 `[rows]` | row absmax |
//! | `{m}.weight_format` | U8 `[]` (scalar) | 0 = row-major (the only format bitsandbytes ≥ 0.45 writes) |
//!
//! bitsandbytes' `Int8Params._quantize` casts the weight to float16 before
//! `int8_vectorwise_quant`; [`quantize_int8_bnb`] does the same, so that its output equals the
//! checkpoint transformers writes byte for byte.
//!
//! [`quantize_to_state_dict`] / [`find_bnb_entries`] + [`dequantize_entry`] are the whole-tensor
//! entry points used by the `quantize` example (any safetensors file ↔ bitsandbytes layout).

use crate::blockwise8::CODE8_LEN;
use crate::int8::Int8Tensor;
use crate::nf4::{quantize_nf4_shaped, Absmax, DoubleQuant, Nf4Tensor, NF4_CODE};
use crate::QuantError;

/// Key suffix of the NF4 quant-state JSON (`"quant_state.bitsandbytes__" + quant_type`).
pub const NF4_QUANT_STATE_SUFFIX: &str = ".quant_state.bitsandbytes__nf4";

/// Key prefix (after the weight key and a dot) of any 4-bit quant-state JSON, for spotting
/// `fp4` states, which are not supported.
const QUANT_STATE_PREFIX: &str = ".quant_state.bitsandbytes__";

/// The `weight_format` value of a row-major int8 weight (`Linear8bitLt`; bitsandbytes 0.45+ only
/// writes this one; older versions also wrote 1 = col32, 2 = col_turing, 3 = col_ampere).
pub const INT8_WEIGHT_FORMAT_ROW: u8 = 0;

/// The data of one serialized tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum BnbData {
    /// U8 values.
    U8(Vec<u8>),
    /// I8 values (the int8 `CB` codes).
    I8(Vec<i8>),
    /// F32 values.
    F32(Vec<f32>),
}

/// One serialized tensor: shape and data.
#[derive(Debug, Clone, PartialEq)]
pub struct BnbTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: BnbData,
}

impl BnbTensor {
    /// Bytes of the stored data (1 per U8/I8 value, 4 per F32 value).
    pub fn nbytes(&self) -> usize {
        match &self.data {
            BnbData::U8(v) => v.len(),
            BnbData::I8(v) => v.len(),
            BnbData::F32(v) => 4 * v.len(),
        }
    }

    /// The safetensors dtype name (`"U8"`, `"I8"`, `"F32"`).
    pub fn dtype_name(&self) -> &'static str {
        match &self.data {
            BnbData::U8(_) => "U8",
            BnbData::I8(_) => "I8",
            BnbData::F32(_) => "F32",
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.data {
            BnbData::U8(v) => v.len(),
            BnbData::I8(v) => v.len(),
            BnbData::F32(v) => v.len(),
        }
    }

    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn u8(shape: Vec<usize>, v: Vec<u8>) -> Self {
        Self {
            shape,
            data: BnbData::U8(v),
        }
    }
    fn f32(v: Vec<f32>) -> Self {
        Self {
            shape: vec![v.len()],
            data: BnbData::F32(v),
        }
    }
}

/// Python's `repr(float)` (what `json.dumps` writes for a float): the shortest digits that round
/// trip, in positional notation when the decimal exponent is in `-4..16` (`0.0001`, `123.0`) and
/// in scientific notation otherwise, with a signed exponent of at least two digits (`5e-05`,
/// `1e+16`); `NaN`, `Infinity`, `-Infinity` for the non-finite values (as `json.dumps`).
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` prints the shortest round-trip digits, e.g. `-2.5937724113464355e-1`.
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                format!("{}{}.0", digits, "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        format!(
            "{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        )
    };
    format!("{sign}{body}")
}

/// The JSON of `quant_state.bitsandbytes__nf4`, formatted as Python's `json.dumps` does.
fn quant_state_json(t: &Nf4Tensor) -> String {
    let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let mut s = format!(
        "{{\"quant_type\": \"nf4\", \"blocksize\": {}, \"dtype\": \"float32\", \"shape\": [{}]",
        t.blocksize,
        shape.join(", ")
    );
    if let Absmax::Double(d) = &t.absmax {
        let offset = python_float_repr(d.offset as f64);
        s.push_str(&format!(
            ", \"nested_blocksize\": {}, \"nested_dtype\": \"float32\", \"nested_offset\": {}",
            d.blocksize2, offset
        ));
    }
    s.push('}');
    s
}

/// The state-dict entries of `t` under the weight key `prefix` (see the module table), in
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

fn fmt_err(key: &str, message: impl Into<String>) -> QuantError {
    QuantError::Format {
        key: key.to_string(),
        message: message.into(),
    }
}

fn take_u8(key: &str, t: Option<BnbTensor>) -> Result<Vec<u8>, QuantError> {
    match t {
        Some(BnbTensor {
            data: BnbData::U8(v),
            ..
        }) => Ok(v),
        Some(t) => Err(fmt_err(
            key,
            format!("expected a U8 tensor, found {}", t.dtype_name()),
        )),
        None => Err(fmt_err(key, "missing")),
    }
}

fn take_f32(key: &str, t: Option<BnbTensor>) -> Result<Vec<f32>, QuantError> {
    match t {
        Some(BnbTensor {
            data: BnbData::F32(v),
            ..
        }) => Ok(v),
        Some(t) => Err(fmt_err(
            key,
            format!("expected an F32 tensor, found {}", t.dtype_name()),
        )),
        None => Err(fmt_err(key, "missing")),
    }
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

// ---- LLM.int8 (`Linear8bitLt`) -------------------------------------------------------------------

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

// ---- whole tensors ↔ state dicts -----------------------------------------------------------------

/// A bitsandbytes quantization layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnbQuant {
    /// `Linear4bit` NF4 with `blocksize` values per block (one of [`crate::BLOCKSIZES`]),
    /// double-quantized absmax when `double_quant` (`bnb_4bit_use_double_quant`).
    Nf4 {
        /// Values per block.
        blocksize: usize,
        /// `compress_statistics`.
        double_quant: bool,
    },
    /// `Linear8bitLt` LLM.int8 (row-wise absmax, float16 cast first; see [`quantize_int8_bnb`]).
    Int8,
}

/// A tensor quantized into its bitsandbytes state-dict entries.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    /// The entries, in bitsandbytes' order (see the module tables).
    pub entries: Vec<(String, BnbTensor)>,
    /// `dequantize(quantize(x))`, f32, row-major of the input shape — what bitsandbytes'
    /// `dequantize_4bit` / `int8_vectorwise_dequant` give for the written entries.
    pub dequantized: Vec<f32>,
}

impl QuantizedTensor {
    /// Bytes of all the entries' data (what the quantized tensor takes in a safetensors file,
    /// headers aside; includes the per-tensor `quant_map`, `nested_quant_map` and JSON).
    pub fn nbytes(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.nbytes()).sum()
    }
}

/// Quantizes the f32 tensor `values` (row-major, `shape`) stored under `key` into bitsandbytes'
/// serialized layout ([`to_state_dict`] for NF4, [`int8_to_state_dict`] for int8).
///
/// # Errors
/// [`QuantError::BadBlocksize`], [`QuantError::Shape`], [`QuantError::Empty`],
/// [`QuantError::NonFinite`] from the quantizers.
pub fn quantize_to_state_dict(
    key: &str,
    values: &[f32],
    shape: &[usize],
    quant: BnbQuant,
) -> Result<QuantizedTensor, QuantError> {
    match quant {
        BnbQuant::Nf4 {
            blocksize,
            double_quant,
        } => {
            let t = quantize_nf4_shaped(values, shape, blocksize, double_quant)?;
            Ok(QuantizedTensor {
                entries: to_state_dict(&t, key)?,
                dequantized: t.dequantize()?,
            })
        }
        BnbQuant::Int8 => {
            let t = quantize_int8_bnb(values, shape)?;
            Ok(QuantizedTensor {
                entries: int8_to_state_dict(&t, shape, key)?,
                dequantized: t.dequantize(),
            })
        }
    }
}

/// Which layout a [`BnbEntry`] is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnbEntryKind {
    /// `Linear4bit` NF4 (`{p}.quant_state.bitsandbytes__nf4` present).
    Nf4,
    /// `Linear8bitLt` int8 (`{m}.SCB` present).
    Int8,
}

/// One quantized weight found in a state dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BnbEntry {
    /// The weight key, which is also the name of the dequantized tensor.
    pub name: String,
    /// The layout.
    pub kind: BnbEntryKind,
    /// Every key of the state dict that belongs to this weight (the weight key included).
    pub keys: Vec<String>,
}

/// Finds the quantized weights among the keys of a state dict: an NF4 weight per
/// `{p}.quant_state.bitsandbytes__nf4` key, an int8 weight per `{m}.SCB` key (its weight is
/// `{m}.weight`, else `{m}`). Returned in key order; keys of no entry are plain tensors.
///
/// # Errors
/// [`QuantError::Format`] naming the key: a 4-bit quant state of another type
/// (`bitsandbytes__fp4`), an `SCB` with no weight key, a key claimed by two entries.
pub fn find_bnb_entries<S: AsRef<str>>(keys: &[S]) -> Result<Vec<BnbEntry>, QuantError> {
    use std::collections::{BTreeMap, BTreeSet};
    let all: BTreeSet<&str> = keys.iter().map(|k| k.as_ref()).collect();
    let mut out = Vec::new();
    for &k in &all {
        if let Some(p) = k.strip_suffix(NF4_QUANT_STATE_SUFFIX) {
            let keys = [
                p.to_string(),
                format!("{p}.absmax"),
                format!("{p}.quant_map"),
                format!("{p}.nested_absmax"),
                format!("{p}.nested_quant_map"),
                k.to_string(),
            ]
            .into_iter()
            .filter(|x| all.contains(x.as_str()))
            .collect();
            out.push(BnbEntry {
                name: p.to_string(),
                kind: BnbEntryKind::Nf4,
                keys,
            });
        } else if let Some((_, ty)) = k.rsplit_once(QUANT_STATE_PREFIX) {
            return Err(fmt_err(
                k,
                format!("4-bit quant_type `{ty}` is not supported (only nf4)"),
            ));
        } else if let Some(m) = k.strip_suffix(".SCB") {
            let weight = [format!("{m}.weight"), m.to_string()]
                .into_iter()
                .find(|w| all.contains(w.as_str()))
                .ok_or_else(|| {
                    fmt_err(
                        k,
                        format!("an int8 SCB with no weight: neither `{m}.weight` nor `{m}` is in the file"),
                    )
                })?;
            let (_, fmt) = int8_keys(&weight);
            let mut keys = vec![weight.clone(), k.to_string()];
            if all.contains(fmt.as_str()) {
                keys.push(fmt);
            }
            out.push(BnbEntry {
                name: weight,
                kind: BnbEntryKind::Int8,
                keys,
            });
        }
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &out {
        for k in &e.keys {
            if let Some(prev) = owner.insert(k, &e.name) {
                return Err(fmt_err(
                    k,
                    format!(
                        "belongs to two quantized weights, `{prev}` and `{}`",
                        e.name
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Dequantizes one [`BnbEntry`] to f32 (bitsandbytes' `dequantize_4bit` /
/// `int8_vectorwise_dequant`, bit for bit); returns the shape and the row-major values.
///
/// # Errors
/// As [`from_state_dict`] / [`int8_from_state_dict`].
pub fn dequantize_entry(
    entry: &BnbEntry,
    get: impl FnMut(&str) -> Option<BnbTensor>,
) -> Result<(Vec<usize>, Vec<f32>), QuantError> {
    match entry.kind {
        BnbEntryKind::Nf4 => {
            let t = from_state_dict(&entry.name, get)?;
            let v = t.dequantize()?;
            Ok((t.shape, v))
        }
        BnbEntryKind::Int8 => {
            let (t, shape) = int8_from_state_dict(&entry.name, get)?;
            Ok((shape, t.dequantize()))
        }
    }
}
