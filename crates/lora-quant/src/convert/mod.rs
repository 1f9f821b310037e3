//! safetensors files ↔ bitsandbytes' serialized layout: quantizes the weights of a safetensors
//! file into what transformers + bitsandbytes `save_pretrained` writes for `Linear4bit` /
//! `Linear8bitLt`, or dequantizes such a file back to f32 (the `quantize` example's logic).
//!
//! Layouts ([`crate::bnb`]): `nf4` / `nf4-dq` write, per weight `X`, `X` (U8 packed codes
//! `[n/2, 1]`), `X.absmax`, `X.quant_map`, with `nf4-dq` also `X.nested_absmax` and
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
//! a bad block size) are one [`ConvertError`] naming the file and key. The output is written
//! atomically (`lora_io`), and nothing is written on error.
//!
//! Files: `args` (the command line and its checks), `report` (what a run did), `files` (reading
//! and writing safetensors), `quantize` and `dequantize` (the two directions).

mod args;
mod dequantize;
mod files;
mod quantize;
mod report;

pub use args::{parse_args, Command, Mode, Options, QuantizeArgs};
pub use report::{Report, TensorReport};

/// One error message (it names the file, key, flag or value at fault).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError(pub String);

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError(msg.into()))
}

/// Runs one command: reads `opts.input`, writes `opts.out`, returns what it did.
///
/// # Errors
/// A [`ConvertError`] naming the file and key: unreadable or invalid file, `--tensors` entries
/// that match nothing or a non-floating tensor, quantizer errors (non-finite values), corrupt or
/// unsupported quantization state, a write failure; before any reading, `--input` that is not
/// a file or `--out` in a place that does not accept files.
pub fn run(opts: &Options) -> Result<Report, ConvertError> {
    match lora_io::check_regular_file(&opts.input) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return err(format!(
                "--input {}: cannot read it: no such file",
                opts.input.display()
            ))
        }
        Err(e) => {
            return err(format!(
                "--input {}: {e}; expected a safetensors file",
                opts.input.display()
            ))
        }
    }
    let inputs = [
        Some(("--input", &opts.input)),
        match &opts.mode {
            Mode::Dequantize { reference: Some(r) } => Some(("--reference", r)),
            _ => None,
        },
    ];
    for (flag, input) in inputs.into_iter().flatten() {
        if lora_io::same_file(&opts.out, input) {
            return err(format!(
                "--out {}: is the same as {flag} {}; writing there would overwrite the input, \
                 choose another output",
                opts.out.display(),
                input.display()
            ));
        }
    }
    lora_io::check_writable_file(&opts.out).map_err(|e| {
        ConvertError(format!(
            "--out {}: cannot write there ({e})",
            opts.out.display()
        ))
    })?;
    match &opts.mode {
        Mode::Quantize(q) => quantize::quantize(opts, *q),
        Mode::Dequantize { reference } => dequantize::dequantize(opts, reference.as_deref()),
    }
}
