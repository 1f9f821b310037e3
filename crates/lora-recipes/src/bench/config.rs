//! The benchmark configurations (`TARGETS:QUANT:PRECISION`), the `--peak-tflops` rates and the
//! model shapes.

use lora_core::QuantKind;
use lora_models::gpt2::Gpt2Config;

use super::options::BenchOptions;
use crate::AnyError;

/// LoRA rank of every configuration.
pub const R: usize = 8;
/// lora_alpha of every configuration.
pub const LORA_ALPHA: f64 = 16.0;

/// LoRA targets of one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Targets {
    /// `c_attn` only (PEFT's GPT-2 default).
    CAttn,
    /// Every linear layer of every block (`c_attn`, `c_proj`, `c_fc`).
    All,
}

impl Targets {
    /// The name in `--configs` / `--targets`.
    pub fn name(self) -> &'static str {
        match self {
            Targets::CAttn => "c_attn",
            Targets::All => "all",
        }
    }
    /// The PEFT target module names.
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            Targets::CAttn => &["c_attn"],
            Targets::All => &lora_models::gpt2::LORA_TARGETS,
        }
    }
}

/// Compute precision of one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchPrecision {
    /// f32 everywhere.
    F32,
    /// bf16 frozen bases and matmuls, f32 LoRA master weights.
    Bf16,
}

impl BenchPrecision {
    /// The name in `--configs` / `--precision`.
    pub fn name(self) -> &'static str {
        match self {
            BenchPrecision::F32 => "f32",
            BenchPrecision::Bf16 => "bf16",
        }
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Which layers get adapters.
    pub targets: Targets,
    /// The base quantization, `None` for "none".
    pub quant: Option<QuantKind>,
    /// The quantization as given (lower case): "none", "nf4" or "nf4-dq".
    pub quant_name: String,
    /// Compute precision.
    pub precision: BenchPrecision,
}

impl BenchConfig {
    /// `TARGETS:QUANT:PRECISION`, as in `--configs`.
    pub fn label(&self) -> String {
        format!(
            "{}:{}:{}",
            self.targets.name(),
            self.quant_name,
            self.precision.name()
        )
    }
}

/// One configuration from its three names.
///
/// # Errors
/// A message naming the part that is not one of the accepted values.
pub fn parse_one(targets: &str, quant: &str, precision: &str) -> Result<BenchConfig, String> {
    let targets = match targets.trim() {
        "c_attn" => Targets::CAttn,
        "all" => Targets::All,
        t => return Err(format!("targets {t:?}: expected \"c_attn\" or \"all\"")),
    };
    let quant_name = quant.trim().to_ascii_lowercase();
    let quant = match quant_name.as_str() {
        "none" => None,
        "nf4" | "nf4-dq" => Some(
            quant_name
                .parse::<QuantKind>()
                .map_err(|e| format!("quant: {e}"))?,
        ),
        q => {
            return Err(format!(
                "quant {q:?}: expected \"none\", \"nf4\" or \"nf4-dq\""
            ))
        }
    };
    let precision = match precision.trim() {
        "f32" => BenchPrecision::F32,
        "bf16" => BenchPrecision::Bf16,
        p => return Err(format!("precision {p:?}: expected \"f32\" or \"bf16\"")),
    };
    Ok(BenchConfig {
        targets,
        quant,
        quant_name,
        precision,
    })
}

/// The configurations of a run: `--configs` (comma separated `TARGETS:QUANT:PRECISION`, empty
/// items skipped) or the single one of `--targets`, `--quant`, `--precision`.
///
/// # Errors
/// A message naming the `--configs` item (or value) at fault.
pub fn parse_configs(opts: &BenchOptions) -> Result<Vec<BenchConfig>, String> {
    match &opts.configs {
        None => Ok(vec![parse_one(
            &opts.targets,
            &opts.quant,
            &opts.precision,
        )?]),
        Some(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|item| {
                let parts: Vec<&str> = item.split(':').collect();
                match parts.as_slice() {
                    [t, q, p] => parse_one(t, q, p).map_err(|e| format!("--configs {item:?}: {e}")),
                    _ => Err(format!(
                        "--configs {item:?}: expected TARGETS:QUANT:PRECISION, e.g. c_attn:nf4:f32"
                    )),
                }
            })
            .collect(),
    }
}

/// `--peak-tflops` → (f32 peak, bf16 peak) in TFLOP/s, each optional: one number for both, or
/// `f32=X,bf16=Y` (either part may be left out).
///
/// # Errors
/// A message naming `--peak-tflops` and the entry that is not a positive number or not
/// `f32=X` / `bf16=Y`.
pub fn parse_peaks(s: &Option<String>) -> Result<(Option<f64>, Option<f64>), String> {
    let Some(s) = s else { return Ok((None, None)) };
    let num = |v: &str| -> Result<f64, String> {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("--peak-tflops: {v:?} is not a positive number"))
    };
    if !s.contains('=') {
        let x = num(s)?;
        return Ok((Some(x), Some(x)));
    }
    let (mut f, mut b) = (None, None);
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("f32", v)) => f = Some(num(v)?),
            Some(("bf16", v)) => b = Some(num(v)?),
            _ => {
                return Err(format!(
                    "--peak-tflops: bad entry {part:?}, expected f32=X or bf16=Y"
                ))
            }
        }
    }
    Ok((f, b))
}

/// The GPT-2 shape of `--config`: "gpt2-124m", "gpt2-narrow" or "tiny" ([`BenchOptions::config`]).
///
/// # Errors
/// A message naming `--config` for any other name.
pub fn model_config(name: &str) -> Result<Gpt2Config, AnyError> {
    Ok(match name {
        "gpt2-124m" => Gpt2Config::gpt2_124m(),
        "tiny" => Gpt2Config::sized(1000, 128, 64, 2, 4)?,
        // GPT-2 124M's graph (12 layers, 12 heads, the same operations per step) at a width
        // and vocabulary that make the device work negligible: measures per-step host cost.
        "gpt2-narrow" => Gpt2Config::sized(1000, 128, 96, 12, 12)?,
        other => {
            return Err(format!(
                "--config {other:?}: expected \"gpt2-124m\", \"gpt2-narrow\" or \"tiny\""
            )
            .into())
        }
    })
}
