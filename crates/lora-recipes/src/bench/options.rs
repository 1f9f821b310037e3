//! The options of a benchmark run (the `train_bench` example's flags).

use crate::lm_loss::LmLoss;
use std::path::PathBuf;

/// Every option of the training-step benchmark; also the command-line flags of the
/// `train_bench` example (`#[command(flatten)]`), with their defaults.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchOptions {
    /// Model shape: "gpt2-124m" (transformers' GPT2Config() defaults), "gpt2-narrow" (GPT-2
    /// 124M's 12 layers and 12 heads at width 96, vocab 1000, 128 positions: the same operations
    /// per step with negligible device work, for measuring per-step host cost) or "tiny" (vocab
    /// 1000, 128 positions, width 64, 2 layers, 4 heads: a few MB, for CPU smoke tests).
    #[arg(long, default_value = "gpt2-124m")]
    pub config: String,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence (≤ n_positions).
    #[arg(long, default_value_t = 1024)]
    pub seq: usize,
    /// LoRA targets when --configs is not given: "c_attn" or "all".
    #[arg(long, default_value = "c_attn")]
    pub targets: String,
    /// Base quantization when --configs is not given: "none", "nf4" or "nf4-dq".
    #[arg(long, default_value = "none")]
    pub quant: String,
    /// Compute precision when --configs is not given: "f32" or "bf16".
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Several configurations in one process, comma separated, each TARGETS:QUANT:PRECISION
    /// (e.g. "c_attn:none:f32,all:nf4:f32"); overrides --targets/--quant/--precision.
    #[arg(long)]
    pub configs: Option<String>,
    /// Untimed steps before timing (compilation, autotuning).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Append one JSON line per configuration to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Peak rate for MFU in TFLOP/s: one number for every precision, or "f32=X,bf16=Y".
    #[arg(long)]
    pub peak_tflops: Option<String>,
    /// The next-token loss: "chunked" (the LM head in row chunks, never the whole
    /// `[batch, seq, vocab]` logits) or "full" (logits, `log_softmax`, `gather`).
    #[arg(long, value_enum, default_value_t = LmLoss::Chunked)]
    pub lm_loss: LmLoss,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Seed of the backend generator (weights, adapters, token ids).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// After the timed steps, profile `--steps` more steps per configuration: (1) forward+loss,
    /// backward and optimizer step each followed by a device sync (ms each); (2) whole steps
    /// with no sync inside: the time until the host has queued the step ("enqueue") and the
    /// time the following sync waits for the device ("drain"), and the process CPU time per
    /// step (all threads, /proc/self/stat, Linux). enqueue ≈ step and drain ≈ 0 means the step
    /// is bound by host work (graph building, fusion, launches), not by the GPU.
    #[arg(long)]
    pub phases: bool,
    /// Only time single matrix products at this model's shapes (f32 and bf16, 2-D and the
    /// `linear` form the layers use) and print one JSON line each; no training.
    #[arg(long)]
    pub matmul_bench: bool,
}
