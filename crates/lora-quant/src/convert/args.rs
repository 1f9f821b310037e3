//! The command line of a conversion ([`QuantizeArgs`], clap) and its checks ([`Options`]).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser};

use super::{err, ConvertError};
use crate::bnb::BnbQuant;
use crate::BLOCKSIZES;

/// What the table printed after a run holds (the `--help` epilogue).
const AFTER_HELP: &str = "\
Prints, per tensor: bytes before and after, bits per parameter of the quantized form (all its
serialized entries, so the per-tensor 16-entry quant_map, 256-entry nested_quant_map and JSON count:
small tensors show more than 4.5 / 4.13 bits), and the reconstruction error (max abs, RMS); then
the total memory. Exit code 1 on any error.";

/// The first lines of `--help`.
const ABOUT: &str = "\
quantize — bitsandbytes NF4 / LLM.int8 layout for the weights of a safetensors file

quantize --input FILE.safetensors --quant nf4|nf4-dq|int8 [--blocksize 64] [--tensors a,b] --out FILE
quantize --dequantize --input FILE.safetensors [--reference ORIGINAL.safetensors] --out FILE";

/// The `quantize` command line, as given: [`QuantizeArgs::into_options`] checks it (the values
/// stay strings here so that the checks, not clap, word the errors).
#[derive(Debug, Clone, Default, PartialEq, Parser)]
#[command(
    name = "quantize",
    about = ABOUT,
    after_help = AFTER_HELP,
    args_override_self = true
)]
pub struct QuantizeArgs {
    /// safetensors file to read
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// safetensors file to write (atomically; metadata {"format": "pt"})
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// nf4     4-bit NormalFloat, f32 absmax per block (Linear4bit, 4.5 bits/param at 64)
    /// nf4-dq  NF4 with double-quantized absmax (bnb_4bit_use_double_quant, ~4.13 bits/param)
    /// int8    LLM.int8 row-wise absmax (Linear8bitLt: X.weight I8 + X.SCB + X.weight_format)
    #[arg(
        long,
        value_name = "KIND",
        allow_hyphen_values = true,
        value_parser = Utf8,
        verbatim_doc_comment
    )]
    pub quant: Option<String>,
    /// NF4 values per absmax block: a power of two in 32..4096 (default 64)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = Utf8)]
    pub blocksize: Option<String>,
    /// comma-separated tensor names to quantize ('*' matches any characters), instead of
    /// the default selection: every floating tensor with >= 2 dimensions. 1-D tensors
    /// (biases, norms) are copied unchanged unless named here.
    #[arg(
        long,
        value_name = "LIST",
        allow_hyphen_values = true,
        value_parser = Utf8,
        verbatim_doc_comment
    )]
    pub tensors: Option<String>,
    /// reverse: every bitsandbytes-quantized weight (NF4 quant state or int8 SCB) becomes
    /// an F32 tensor of its original name and shape; other tensors are copied unchanged
    #[arg(long, verbatim_doc_comment)]
    pub dequantize: bool,
    /// with --dequantize: the original weights, to report the reconstruction error
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
}

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

/// Checked command line.
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
    /// `--help` ([`QuantizeArgs::help_text`]).
    Help,
    /// Run with these options.
    Run(Options),
}

/// A text value that names its flag when it is not UTF-8 (clap's own message names neither the
/// flag nor the value).
#[derive(Clone)]
struct Utf8;

impl TypedValueParser for Utf8 {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        value.to_str().map(str::to_string).ok_or_else(|| {
            let id = arg.map_or("", |a| a.get_id().as_str());
            let expected = match id {
                "quant" => "nf4, nf4-dq or int8",
                "blocksize" => "a power of two in 32..4096",
                _ => "comma-separated tensor names",
            };
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                format!("--{id} {value:?}: not valid UTF-8; expected {expected}"),
            )
            .with_cmd(cmd)
        })
    }
}

/// Parses the arguments (without the program name; `OsString`s, so that paths need not be
/// UTF-8, as `std::env::args_os` gives them) with clap, then checks them
/// ([`QuantizeArgs::into_options`]).
///
/// # Errors
/// A [`ConvertError`] for an unknown option, a missing value (clap's message) or a text value
/// that is not UTF-8 (naming the flag), or as [`QuantizeArgs::into_options`].
pub fn parse_args<I, T>(args: I) -> Result<Command, ConvertError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv = std::iter::once(OsString::from("quantize")).chain(args.into_iter().map(Into::into));
    match QuantizeArgs::try_parse_from(argv) {
        Ok(a) => a.into_options().map(Command::Run),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Ok(Command::Help)
            }
            _ => {
                let msg = e.render().to_string();
                let msg = msg.trim().strip_prefix("error: ").unwrap_or(msg.trim());
                err(msg.to_string())
            }
        },
    }
}

impl QuantizeArgs {
    /// The `--help` text.
    pub fn help_text() -> String {
        Self::command().render_long_help().to_string()
    }

    /// Checks the flags and builds the [`Options`].
    ///
    /// # Errors
    /// A [`ConvertError`] for a missing `--input`, `--out` or `--quant`, a bad `--quant` kind, a
    /// `--blocksize` that is not a power of two in 32..4096 (or given with int8 /
    /// `--dequantize`), an empty `--tensors`, `--reference` without `--dequantize`.
    pub fn into_options(self) -> Result<Options, ConvertError> {
        let input = self
            .input
            .ok_or_else(|| ConvertError("--input FILE is required".into()))?;
        let out = self
            .out
            .ok_or_else(|| ConvertError("--out FILE is required".into()))?;
        let blocksize = match self.blocksize {
            None => None,
            Some(s) => {
                let b: usize = s.parse().map_err(|_| {
                    ConvertError(format!(
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
        let tensors = match self.tensors {
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
        let mode = if self.dequantize {
            if self.quant.is_some() || blocksize.is_some() || tensors.is_some() {
                return err("--dequantize takes no --quant, --blocksize or --tensors");
            }
            Mode::Dequantize {
                reference: self.reference,
            }
        } else {
            if self.reference.is_some() {
                return err("--reference is for --dequantize only");
            }
            let q = self.quant.ok_or_else(|| {
                ConvertError("--quant nf4|nf4-dq|int8 is required (or --dequantize)".into())
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
        Ok(Options {
            input,
            out,
            mode,
            tensors,
        })
    }
}
