//! Quantizes the weights of a safetensors file into bitsandbytes' serialized layout (what
//! transformers + bitsandbytes `save_pretrained` writes for `Linear4bit` / `Linear8bitLt`), or
//! dequantizes such a file back to f32.
//!
//! ```text
//! cargo run --release --example quantize -- --input model.safetensors --quant nf4-dq \
//!     [--blocksize 64] [--tensors 'a,b,*_proj.weight'] --out model.nf4.safetensors
//! cargo run --release --example quantize -- --dequantize --input model.nf4.safetensors \
//!     [--reference model.safetensors] --out model.f32.safetensors
//! ```
//!
//! Layouts (module docs of `lora_quant::bnb`): `nf4` / `nf4-dq` write, per weight `X`, `X` (U8
//! packed codes `[n/2, 1]`), `X.absmax`, `X.quant_map`, with `nf4-dq` also `X.nested_absmax` and
//! `X.nested_quant_map`, and `X.quant_state.bitsandbytes__nf4` (the quant-state JSON as U8);
//! `int8` writes `M.weight` (I8, LLM.int8 row-wise codes), `M.SCB` (F32 row absmax) and
//! `M.weight_format` (U8 scalar 0) for the weight `M.weight`. Quantization runs on f32 (F16,
//! BF16, F64 inputs are converted first); the int8 path casts to float16 first, as bitsandbytes'
//! `Int8Params` does, so its output equals transformers' `load_in_8bit` checkpoint byte for byte.
//!
//! Every floating tensor with at least 2 dimensions is quantized; 1-D tensors (biases, norms) and
//! non-floating tensors are copied unchanged. `--tensors` replaces that selection by a list of
//! names (`*` matches any run of characters); named 1-D tensors are quantized too. Errors
//! (unreadable or truncated file, a `--tensors` name that matches nothing, a corrupt quant state,
//! a bad block size) print one message naming the file and key and exit with code 1. The output
//! is written atomically.

#[cfg(not(test))]
use lora_core::atomic_write;
use lora_quant::bnb::{
    dequantize_entry, find_bnb_entries, quantize_to_state_dict, BnbData, BnbEntryKind, BnbQuant,
    BnbTensor,
};
use lora_quant::{error_stats, BLOCKSIZES};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// Test builds only: this file is also compiled into lora-quant's integration tests
/// (crates/lora-quant/tests/bnb_interop.rs), and lora-quant cannot depend on lora-core (lora-core
/// depends on it). Same contract as `lora_core::atomic_write`: a temporary file in the target's
/// directory, synced, then renamed over the target.
#[cfg(test)]
fn atomic_write(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".tmp-{}-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })
}

const HELP: &str = "\
quantize — bitsandbytes NF4 / LLM.int8 layout for the weights of a safetensors file

USAGE:
    quantize --input FILE.safetensors --quant nf4|nf4-dq|int8 [--blocksize 64] [--tensors a,b] --out FILE
    quantize --dequantize --input FILE.safetensors [--reference ORIGINAL.safetensors] --out FILE

OPTIONS:
    --input FILE       safetensors file to read
    --out FILE         safetensors file to write (atomically; metadata {\"format\": \"pt\"})
    --quant KIND       nf4     4-bit NormalFloat, f32 absmax per block (Linear4bit, 4.5 bits/param at 64)
                       nf4-dq  NF4 with double-quantized absmax (bnb_4bit_use_double_quant, ~4.13 bits/param)
                       int8    LLM.int8 row-wise absmax (Linear8bitLt: X.weight I8 + X.SCB + X.weight_format)
    --blocksize N      NF4 values per absmax block: a power of two in 32..4096 (default 64)
    --tensors LIST     comma-separated tensor names to quantize ('*' matches any characters), instead of
                       the default selection: every floating tensor with >= 2 dimensions. 1-D tensors
                       (biases, norms) are copied unchanged unless named here.
    --dequantize       reverse: every bitsandbytes-quantized weight (NF4 quant state or int8 SCB) becomes
                       an F32 tensor of its original name and shape; other tensors are copied unchanged
    --reference FILE   with --dequantize: the original weights, to report the reconstruction error
    -h, --help         this text

Prints, per tensor: bytes before and after, bits per parameter of the quantized form (all its
serialized entries, so the per-tensor 16-entry quant_map, 256-entry nested_quant_map and JSON count:
small tensors show more than 4.5 / 4.13 bits), and the reconstruction error (max abs, RMS); then
the total memory. Exit code 1 on any error.
";

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Quantize into the given layout.
    Quantize(BnbQuant),
    /// Dequantize a bitsandbytes-layout file, optionally comparing with a reference file.
    Dequantize {
        /// The original (unquantized) file.
        reference: Option<PathBuf>,
    },
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Input safetensors file.
    pub input: PathBuf,
    /// Output safetensors file.
    pub out: PathBuf,
    /// Quantize or dequantize.
    pub mode: Mode,
    /// `--tensors` names / patterns (quantize only).
    pub tensors: Option<Vec<String>>,
}

/// Parse result: run, or print the help.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `--help`.
    Help,
    /// Run with these options.
    Run(Options),
}

/// One error message (it names the file, key or value at fault).
#[derive(Debug, Clone, PartialEq)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// Parses the arguments (without the program name).
///
/// # Errors
/// A [`CliError`] for an unknown option, a missing value or option, a bad `--quant` kind, a
/// `--blocksize` that is not a power of two in 32..4096 (or given with int8 / `--dequantize`).
pub fn parse_args(args: &[String]) -> Result<Command, CliError> {
    let mut input = None;
    let mut out = None;
    let mut quant: Option<String> = None;
    let mut blocksize: Option<String> = None;
    let mut tensors: Option<String> = None;
    let mut reference = None;
    let mut dequantize = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, CliError> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            i += 1;
            match args.get(i) {
                Some(v) => Ok(v.clone()),
                None => err(format!("{name} needs a value (see --help)")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--input" => input = Some(PathBuf::from(value("--input")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--quant" => quant = Some(value("--quant")?),
            "--blocksize" => blocksize = Some(value("--blocksize")?),
            "--tensors" => tensors = Some(value("--tensors")?),
            "--reference" => reference = Some(PathBuf::from(value("--reference")?)),
            "--dequantize" if inline.is_none() => dequantize = true,
            _ => return err(format!("unknown argument `{a}` (see --help)")),
        }
        i += 1;
    }
    let input = input.ok_or_else(|| CliError("--input FILE is required".into()))?;
    let out = out.ok_or_else(|| CliError("--out FILE is required".into()))?;
    let blocksize = match blocksize {
        None => None,
        Some(s) => {
            let b: usize = s.parse().map_err(|_| {
                CliError(format!(
                    "--blocksize `{s}` is not a positive integer (a power of two in 32..4096)"
                ))
            })?;
            if !b.is_power_of_two() {
                return err(format!("--blocksize {b} is not a power of two"));
            }
            if !BLOCKSIZES.contains(&b) {
                return err(format!(
                    "--blocksize {b}: bitsandbytes' quantize_4bit accepts {BLOCKSIZES:?}"
                ));
            }
            Some(b)
        }
    };
    let tensors = match tensors {
        None => None,
        Some(t) => {
            let list: Vec<String> = t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if list.is_empty() {
                return err("--tensors is empty (give comma-separated tensor names)");
            }
            Some(list)
        }
    };
    let mode = if dequantize {
        if quant.is_some() || blocksize.is_some() || tensors.is_some() {
            return err("--dequantize takes no --quant, --blocksize or --tensors");
        }
        Mode::Dequantize { reference }
    } else {
        if reference.is_some() {
            return err("--reference is for --dequantize only");
        }
        let q = quant.ok_or_else(|| {
            CliError("--quant nf4|nf4-dq|int8 is required (or --dequantize)".into())
        })?;
        Mode::Quantize(match q.as_str() {
            "nf4" | "nf4-dq" => BnbQuant::Nf4 {
                blocksize: blocksize.unwrap_or(64),
                double_quant: q == "nf4-dq",
            },
            "int8" if blocksize.is_some() => {
                return err("--blocksize applies to nf4 / nf4-dq only (int8 is row-wise)")
            }
            "int8" => BnbQuant::Int8,
            other => return err(format!("--quant `{other}`: expected nf4, nf4-dq or int8")),
        })
    };
    Ok(Command::Run(Options {
        input,
        out,
        mode,
        tensors,
    }))
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorReport {
    /// Tensor name (the weight key).
    pub name: String,
    /// Shape of the (unquantized) tensor.
    pub shape: Vec<usize>,
    /// `"nf4"`, `"nf4-dq"`, `"int8"` (quantized or dequantized from), or `"copied"`.
    pub layout: String,
    /// Bytes of the tensor's data in the input (all its entries for a quantized input).
    pub bytes_before: usize,
    /// Bytes of the tensor's data in the output.
    pub bytes_after: usize,
    /// Bits per value of the quantized form (all its serialized entries), for quantized tensors.
    pub bits_per_param: Option<f64>,
    /// `(max |x − deq|, RMS)` against the original values, where known.
    pub error: Option<(f64, f64)>,
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// One entry per output tensor, in name order.
    pub tensors: Vec<TensorReport>,
    /// Bytes of the output file.
    pub file_bytes: usize,
}

impl Report {
    /// Total tensor-data bytes before and after.
    pub fn totals(&self) -> (usize, usize) {
        self.tensors
            .iter()
            .fold((0, 0), |(b, a), t| (b + t.bytes_before, a + t.bytes_after))
    }
}

fn display(p: &std::path::Path) -> String {
    p.display().to_string()
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError(format!("cannot read {}: {e}", display(path))))
}

fn parse_st<'a>(path: &std::path::Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, CliError> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        CliError(format!(
            "{}: not a valid safetensors file (truncated or corrupt?): {e}",
            display(path)
        ))
    })
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let mant = (h & 0x3FF) as u32;
    match exp {
        0 => {
            let v = mant as f32 / 16_777_216.0; // mant · 2^-24
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        31 => f32::from_bits(sign | 0x7F80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// The values of a floating tensor as f32 (F64 is rounded to nearest).
fn to_f32(t: &TensorView<'_>) -> Option<Vec<f32>> {
    let d = t.data();
    Some(match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        _ => return None,
    })
}

/// `*` matches any run of characters; everything else literally.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// An output tensor (borrowed from the input when copied).
struct OutTensor<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

/// A tensor written through unchanged (1-D tensors, and tensors not selected by `--tensors`):
/// its report row and its output entry.
fn copy_unchanged<'a>(
    name: &str,
    t: &safetensors::tensor::TensorView<'a>,
    reports: &mut Vec<TensorReport>,
    out: &mut Vec<(String, OutTensor<'a>)>,
) {
    reports.push(TensorReport {
        name: name.to_string(),
        shape: t.shape().to_vec(),
        layout: "copied".into(),
        bytes_before: t.data().len(),
        bytes_after: t.data().len(),
        bits_per_param: None,
        error: None,
    });
    out.push((
        name.to_string(),
        OutTensor {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            data: Cow::Borrowed(t.data()),
        },
    ));
}

fn bnb_to_out(t: BnbTensor) -> OutTensor<'static> {
    let (dtype, data) = match t.data {
        BnbData::U8(v) => (Dtype::U8, v),
        BnbData::I8(v) => (Dtype::I8, v.into_iter().map(|x| x as u8).collect()),
        BnbData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    OutTensor {
        dtype,
        shape: t.shape,
        data: Cow::Owned(data),
    }
}

fn f32_out(shape: Vec<usize>, v: &[f32]) -> OutTensor<'static> {
    OutTensor {
        dtype: Dtype::F32,
        shape,
        data: Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

fn write_out(
    path: &std::path::Path,
    tensors: &[(String, OutTensor<'_>)],
    mut metadata: HashMap<String, String>,
) -> Result<usize, CliError> {
    metadata
        .entry("format".into())
        .or_insert_with(|| "pt".into());
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v = TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| CliError(format!("output tensor `{name}`: {e}")))?;
        views.push((name.as_str(), v));
    }
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| CliError(format!("{}: cannot serialize: {e}", display(path))))?;
    atomic_write(path, &bytes).map_err(|e| CliError(format!("cannot write {e}")))?;
    Ok(bytes.len())
}

fn layout_name(q: BnbQuant) -> &'static str {
    match q {
        BnbQuant::Nf4 {
            double_quant: true, ..
        } => "nf4-dq",
        BnbQuant::Nf4 { .. } => "nf4",
        BnbQuant::Int8 => "int8",
    }
}

fn input_metadata(bytes: &[u8]) -> HashMap<String, String> {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}

fn quantize(opts: &Options, quant: BnbQuant) -> Result<Report, CliError> {
    let path = &opts.input;
    let bytes = read_file(path)?;
    let st = parse_st(path, &bytes)?;
    let names: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    let selected: BTreeSet<String> = match &opts.tensors {
        None => names
            .iter()
            .filter(|n| {
                st.tensor(n)
                    .map(|t| is_float(t.dtype()) && t.shape().len() >= 2)
                    .unwrap_or(false)
            })
            .cloned()
            .collect(),
        Some(list) => {
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
                    let t = st.tensor(h).map_err(|e| CliError(format!("{h}: {e}")))?;
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
            sel
        }
    };
    let mut out: Vec<(String, OutTensor<'_>)> = Vec::new();
    let mut reports = Vec::new();
    for name in &names {
        let t = st
            .tensor(name)
            .map_err(|e| CliError(format!("{}: `{name}`: {e}", display(path))))?;
        let before = t.data().len();
        if selected.contains(name) && !t.data().is_empty() {
            let values = to_f32(&t)
                .ok_or_else(|| CliError(format!("{}: `{name}` is not floating", display(path))))?;
            let shape = t.shape().to_vec();
            let q = quantize_to_state_dict(name, &values, &shape, quant)
                .map_err(|e| CliError(format!("{}: tensor `{name}`: {e}", display(path))))?;
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
            out.extend(q.entries.into_iter().map(|(k, v)| (k, bnb_to_out(v))));
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

fn dequantize(opts: &Options, reference: Option<&PathBuf>) -> Result<Report, CliError> {
    let path = &opts.input;
    let bytes = read_file(path)?;
    let st = parse_st(path, &bytes)?;
    let names: Vec<String> = {
        let mut n: Vec<String> = st.names().into_iter().map(String::from).collect();
        n.sort();
        n
    };
    let entries =
        find_bnb_entries(&names).map_err(|e| CliError(format!("{}: {e}", display(path))))?;
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
    let get = |k: &str| -> Result<Option<BnbTensor>, CliError> {
        let Ok(t) = st.tensor(k) else { return Ok(None) };
        let d = t.data();
        let data = match t.dtype() {
            Dtype::U8 => BnbData::U8(d.to_vec()),
            Dtype::I8 => BnbData::I8(d.iter().map(|&b| b as i8).collect()),
            Dtype::F32 => BnbData::F32(
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            other => {
                return err(format!(
                    "{}: `{k}` has dtype {other:?}; bitsandbytes stores U8, I8 or F32 there",
                    display(path)
                ))
            }
        };
        Ok(Some(BnbTensor {
            shape: t.shape().to_vec(),
            data,
        }))
    };
    let mut consumed = BTreeSet::new();
    let mut out: Vec<(String, OutTensor<'_>)> = Vec::new();
    let mut reports = Vec::new();
    for e in &entries {
        let mut parts = HashMap::new();
        let mut before = 0;
        for k in &e.keys {
            if let Some(t) = get(k)? {
                before += t.nbytes();
                parts.insert(k.clone(), t);
            }
            consumed.insert(k.clone());
        }
        let (shape, values) = dequantize_entry(e, |k| parts.get(k).cloned())
            .map_err(|err| CliError(format!("{}: {err}", display(path))))?;
        let layout = match e.kind {
            BnbEntryKind::Int8 => "int8",
            BnbEntryKind::Nf4 if e.keys.iter().any(|k| k.ends_with(".nested_absmax")) => "nf4-dq",
            BnbEntryKind::Nf4 => "nf4",
        };
        let error = match &ref_st {
            None => None,
            Some((r, rst)) => {
                let t = rst.tensor(&e.name).map_err(|_| {
                    CliError(format!(
                        "{}: no tensor `{}` to compare with",
                        display(r),
                        e.name
                    ))
                })?;
                if t.shape() != shape.as_slice() {
                    return err(format!(
                        "{}: `{}` has shape {:?}, the dequantized tensor {shape:?}",
                        display(r),
                        e.name,
                        t.shape()
                    ));
                }
                let orig = to_f32(&t).ok_or_else(|| {
                    CliError(format!("{}: `{}` is not floating", display(r), e.name))
                })?;
                let s = error_stats(&orig, &values, before);
                Some((s.max_abs_error, s.rms_error))
            }
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
        out.push((e.name.clone(), f32_out(shape, &values)));
    }
    for name in names.iter().filter(|n| !consumed.contains(*n)) {
        let t = st
            .tensor(name)
            .map_err(|e| CliError(format!("{}: `{name}`: {e}", display(path))))?;
        copy_unchanged(name, &t, &mut reports, &mut out);
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    let file_bytes = write_out(&opts.out, &out, input_metadata(&bytes))?;
    Ok(Report {
        tensors: reports,
        file_bytes,
    })
}

/// Runs one command: reads `opts.input`, writes `opts.out`, returns what it did.
///
/// # Errors
/// A [`CliError`] naming the file and key: unreadable or invalid file, `--tensors` entries that
/// match nothing or a non-floating tensor, quantizer errors (non-finite values), corrupt or
/// unsupported quantization state, a write failure.
pub fn run(opts: &Options) -> Result<Report, CliError> {
    match &opts.mode {
        Mode::Quantize(q) => quantize(opts, *q),
        Mode::Dequantize { reference } => dequantize(opts, reference.as_ref()),
    }
}

/// Prints the per-tensor table and the totals.
pub fn print_report(r: &Report, dequantizing: bool) {
    println!(
        "{:<52} {:>14} {:>7} {:>11} {:>11} {:>10} {:>11} {:>11}",
        "tensor", "shape", "layout", "bytes in", "bytes out", "bits/param", "max|err|", "rms err"
    );
    for t in &r.tensors {
        let shape = format!("{:?}", t.shape).replace(' ', "");
        let bits = t
            .bits_per_param
            .map_or("-".to_string(), |b| format!("{b:.3}"));
        let (mx, rms) = t
            .error
            .map_or(("-".to_string(), "-".to_string()), |(m, r)| {
                (format!("{m:.3e}"), format!("{r:.3e}"))
            });
        println!(
            "{:<52} {:>14} {:>7} {:>11} {:>11} {:>10} {:>11} {:>11}",
            t.name, shape, t.layout, t.bytes_before, t.bytes_after, bits, mx, rms
        );
    }
    let (b, a) = r.totals();
    let q: Vec<&TensorReport> = r.tensors.iter().filter(|t| t.layout != "copied").collect();
    let (qb, qa) = q
        .iter()
        .fold((0, 0), |(x, y), t| (x + t.bytes_before, y + t.bytes_after));
    let mb = |x: usize| x as f64 / 1e6;
    let what = if dequantizing {
        "dequantized"
    } else {
        "quantized"
    };
    println!(
        "{what} {} of {} tensors: {:.3} MB -> {:.3} MB",
        q.len(),
        r.tensors.len(),
        mb(qb),
        mb(qa)
    );
    let label = if dequantizing {
        "memory (dequantized)"
    } else {
        "memory reduction"
    };
    let ratio = if dequantizing {
        format!("{:.2}× larger", a as f64 / b.max(1) as f64)
    } else {
        format!("{:.2}×", b as f64 / a.max(1) as f64)
    };
    println!(
        "{label}: {:.3} MB -> {:.3} MB ({ratio}); output file {} bytes",
        mb(b),
        mb(a),
        r.file_bytes
    );
}

#[allow(dead_code)] // unused when the file is compiled into the lora-quant tests
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return;
        }
        Ok(Command::Run(o)) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    match run(&opts) {
        Ok(r) => {
            print_report(&r, matches!(opts.mode, Mode::Dequantize { .. }));
            println!("wrote {}", opts.out.display());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
