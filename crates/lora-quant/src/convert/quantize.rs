//! safetensors file → bitsandbytes layout.

use std::collections::BTreeSet;

use lora_io::StTensor;
use safetensors::SafeTensors;

use super::files::{
    bnb_to_st, copy_unchanged, display, glob_match, input_metadata, is_float, layout_name,
    parse_st, read_file, to_f32, write_out,
};
use super::{err, ConvertError, Options, Report, TensorReport};
use crate::bnb::{quantize_to_state_dict, BnbQuant};
use crate::error_stats;

/// The names to quantize: `--tensors` patterns (each must match a floating tensor), or every
/// floating tensor with at least 2 dimensions.
fn select(
    opts: &Options,
    st: &SafeTensors<'_>,
    names: &BTreeSet<String>,
) -> Result<BTreeSet<String>, ConvertError> {
    let path = &opts.input;
    let Some(list) = &opts.tensors else {
        return Ok(names
            .iter()
            .filter(|n| {
                st.tensor(n)
                    .map(|t| is_float(t.dtype()) && t.shape().len() >= 2)
                    .unwrap_or(false)
            })
            .cloned()
            .collect());
    };
    let mut sel = BTreeSet::new();
    for pat in list {
        let hits: Vec<&String> = names.iter().filter(|n| glob_match(pat, n)).collect();
        if hits.is_empty() {
            let some: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
            return err(format!(
                "{}: no tensor named `{pat}` (from --tensors); the file has {} tensors, \
                 for example {some:?}",
                display(path),
                names.len()
            ));
        }
        for h in hits {
            let t = st
                .tensor(h)
                .map_err(|e| ConvertError(format!("{h}: {e}")))?;
            if !is_float(t.dtype()) {
                return err(format!(
                    "{}: tensor `{h}` (from --tensors `{pat}`) has dtype {:?}; only \
                     F32/F16/BF16/F64 tensors can be quantized",
                    display(path),
                    t.dtype()
                ));
            }
            sel.insert(h.clone());
        }
    }
    Ok(sel)
}

/// Quantizes the selected tensors of `opts.input` into `quant` and writes `opts.out`.
pub(super) fn quantize(opts: &Options, quant: BnbQuant) -> Result<Report, ConvertError> {
    let path = &opts.input;
    let bytes = read_file(path)?;
    let st = parse_st(path, &bytes)?;
    let names: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    let selected = select(opts, &st, &names)?;
    let mut out: Vec<(String, StTensor)> = Vec::new();
    let mut reports = Vec::new();
    for name in &names {
        let t = st
            .tensor(name)
            .map_err(|e| ConvertError(format!("{}: `{name}`: {e}", display(path))))?;
        let before = t.data().len();
        if selected.contains(name) && !t.data().is_empty() {
            let values = to_f32(&t).ok_or_else(|| {
                ConvertError(format!("{}: `{name}` is not floating", display(path)))
            })?;
            let shape = t.shape().to_vec();
            let q = quantize_to_state_dict(name, &values, &shape, quant)
                .map_err(|e| ConvertError(format!("{}: tensor `{name}`: {e}", display(path))))?;
            let s = error_stats(&values, &q.dequantized, q.nbytes());
            reports.push(TensorReport {
                name: name.clone(),
                shape,
                layout: layout_name(quant).into(),
                bytes_before: before,
                bytes_after: q.nbytes(),
                bits_per_param: Some(s.bits_per_parameter),
                error: Some((s.max_abs_error, s.rms_error)),
            });
            out.extend(q.entries.into_iter().map(|(k, v)| (k, bnb_to_st(v))));
        } else {
            copy_unchanged(name, &t, &mut reports, &mut out);
        }
    }
    let mut seen = BTreeSet::new();
    for (k, _) in &out {
        if !seen.insert(k.as_str()) {
            return err(format!(
                "{}: the quantized layout needs the key `{k}`, which the file already holds \
                 (is it already quantized?)",
                display(path)
            ));
        }
    }
    let file_bytes = write_out(&opts.out, &out, input_metadata(&bytes))?;
    Ok(Report {
        tensors: reports,
        file_bytes,
    })
}
