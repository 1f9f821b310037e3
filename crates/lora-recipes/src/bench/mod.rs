//! Training-step speed benchmark: GPT-2 (random weights) + LoRA / QLoRA (the `train_bench`
//! example).
//!
//! One *training step* is: forward of the whole model (`lora_models::gpt2::Gpt2` through
//! `LanguageModel::forward`, adapters attached with `lora_peft::apply_lora`, QLoRA bases
//! quantized with `lora_peft::quantize_model` before the adapters, as in `finetune`) on random
//! token ids `[batch, seq]`, causal-LM cross-entropy (position t predicts token t+1, mean over
//! `batch·(seq−1)` positions, as transformers' `GPT2LMHeadModel(labels=input_ids)`), backward,
//! and one AdamW step on the LoRA parameters (`lora_train::adamw_optimizer`). LoRA:
//! r = 8, lora_alpha = 16, lora_dropout = 0. Targets `c_attn` (PEFT's GPT-2 default) or `all`
//! (`c_attn`, `c_proj`, `c_fc`: every linear layer of every block). QLoRA quantizes every
//! block linear layer (not the tied embedding / LM head), as bitsandbytes does.
//!
//! Timing: the device is synchronised (`Backend::sync`) before each clock read; `--warmup`
//! untimed steps first (they include CubeCL's kernel compilation and autotuning), then the
//! median (and min/max) of `--steps` timed steps. tokens/s = batch·seq / median step time.
//! A fresh batch of random ids is used per step (4 device batches in rotation, drawn up front).
//!
//! FLOPs per step: [`flops::train_flops`]. MFU = FLOPs / step time / peak, with the peak given
//! per precision by `--peak-tflops` (the GPU script passes the measured dense matmul rate: TF32
//! for "f32", since burn's CUDA matmul uses TF32 tensor cores for f32 inputs; bf16 for "bf16").
//!
//! Output: one JSON line per configuration (to `--json` and stdout, prefixed `JSON `), then a
//! short table ([`report`]). A configuration that fails (error or panic) gives a JSON line with
//! `"error"` and the run goes on with the next one.
//!
//! - [`options`]: the flags; [`config`]: the configurations and model shapes they name.
//! - [`step`]: one configuration's timed step loops; [`matmul`]: the matrix-product bench.
//! - [`report`]: the whole run, its JSON lines and table; [`timing`]: clocks and medians.

pub mod config;
pub mod flops;
pub mod matmul;
pub mod options;
pub mod report;
pub mod step;
pub mod timing;

pub use options::BenchOptions;
pub use report::run_bench;
