//! bitsandbytes layout → f32 safetensors file, optionally compared with the original weights.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use lora_io::StTensor;
use safetensors::SafeTensors;

use super::files::{
    copy_unchanged, display, input_metadata, parse_st, read_file, st_to_bnb, to_f32, write_out,
};
use super::{err, ConvertError, Options, Report, TensorReport};
use crate::bnb::{dequantize_entry, find_bnb_entries, BnbEntry, BnbEntryKind};
use crate::error_stats;

/// `(max abs, RMS)` error of `values` against the tensor `e.name` of the reference file `r`.
fn reference_error(
    r: &Path,
    rst: &SafeTensors<'_>,
    e: &BnbEntry,
    shape: &[usize],
    values: &[f32],
    before: usize,
) -> Result<(f64, f64), ConvertError> {
    let t = rst.tensor(&e.name).map_err(|_| {
        ConvertError(format!(
            "{}: no tensor `{}` to compare with",
            display(r),
            e.name
        ))
    })?;
    if t.shape() != shape {
        return err(format!(
            "{}: `{}` has shape {:?}, the dequantized tensor {shape:?}",
            display(r),
            e.name,
            t.shape()
        ));
    }
    let orig = to_f32(&t)
        .ok_or_else(|| ConvertError(format!("{}: `{}` is not floating", display(r), e.name)))?;
    let s = error_stats(&orig, values, before);
    Ok((s.max_abs_error, s.rms_error))
}

/// Dequantizes every bitsandbytes weight of `opts.input` and writes `opts.out`.
pub(super) fn dequantize(opts: &Options, reference: Option<&Path>) -> Result<Report, ConvertError> {
    let path = &opts.input;
    let bytes = read_file(path)?;
    let st = parse_st(path, &bytes)?;
    let names: Vec<String> = {
        let mut n: Vec<String> = st.names().into_iter().map(String::from).collect();
        n.sort();
        n
    };
    let entries =
        find_bnb_entries(&names).map_err(|e| ConvertError(format!("{}: {e}", display(path))))?;
    if entries.is_empty() {
        return err(format!(
            "{}: no bitsandbytes-quantized weight found (no `*.quant_state.bitsandbytes__nf4` \
             or `*.SCB` key)",
            display(path)
        ));
    }
    let ref_bytes = match reference {
        Some(r) => Some((r, read_file(r)?)),
        None => None,
    };
    let ref_st = match &ref_bytes {
        Some((r, b)) => Some((*r, parse_st(r, b)?)),
        None => None,
    };
    let mut consumed = BTreeSet::new();
    let mut out: Vec<(String, StTensor)> = Vec::new();
    let mut reports = Vec::new();
    for e in &entries {
        let mut parts = HashMap::new();
        let mut before = 0;
        for k in &e.keys {
            if let Some(t) = st_to_bnb(path, &st, k)? {
                before += t.nbytes();
                parts.insert(k.clone(), t);
            }
            consumed.insert(k.clone());
        }
        let (shape, values) = dequantize_entry(e, |k| parts.get(k).cloned())
            .map_err(|err| ConvertError(format!("{}: {err}", display(path))))?;
        let layout = match e.kind {
            BnbEntryKind::Int8 => "int8",
            BnbEntryKind::Nf4 if e.keys.iter().any(|k| k.ends_with(".nested_absmax")) => "nf4-dq",
            BnbEntryKind::Nf4 => "nf4",
        };
        let error = match &ref_st {
            None => None,
            Some((r, rst)) => Some(reference_error(r, rst, e, &shape, &values, before)?),
        };
        reports.push(TensorReport {
            name: e.name.clone(),
            shape: shape.clone(),
            layout: layout.into(),
            bytes_before: before,
            bytes_after: 4 * values.len(),
            bits_per_param: Some(8.0 * before as f64 / values.len().max(1) as f64),
            error,
        });
        out.push((e.name.clone(), StTensor::f32(shape, &values)));
    }
    for name in names.iter().filter(|n| !consumed.contains(*n)) {
        let t = st
            .tensor(name)
            .map_err(|e| ConvertError(format!("{}: `{name}`: {e}", display(path))))?;
        copy_unchanged(name, &t, &mut reports, &mut out);
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    let file_bytes = write_out(&opts.out, &out, input_metadata(&bytes))?;
    Ok(Report {
        tensors: reports,
        file_bytes,
    })
}
