//! Whole tensors ↔ state dicts: quantize one f32 tensor into its bitsandbytes entries, find the
//! quantized weights among a file's keys, dequantize one of them (what the `quantize` example
//! and [`crate::convert`] run).

use super::int8::{int8_from_state_dict, int8_keys, int8_to_state_dict, quantize_int8_bnb};
use super::nf4::{from_state_dict, to_state_dict};
use super::tensor::{fmt_err, BnbTensor};
use super::{NF4_QUANT_STATE_SUFFIX, QUANT_STATE_PREFIX};
use crate::nf4::quantize_nf4_shaped;
use crate::QuantError;

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
