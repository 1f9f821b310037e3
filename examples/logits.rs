//! Logits of a GPT-2 or Llama checkpoint, optionally with a PEFT LoRA adapter (optionally
//! merged), for comparing with transformers + PEFT.
//!
//! ```text
//! cargo run --release --example logits -- --model-path DIR [--adapter DIR] [--merge] \
//!     --input-ids in.safetensors --out out.safetensors
//! ```
//! `DIR` is a Hugging Face directory (config.json with `model_type` "gpt2" or "llama" +
//! model.safetensors) or a `.gguf` file (Llama family). The input file holds an I64 (or I32)
//! tensor `input_ids` `[batch, seq]`; the output file gets an F32 tensor `logits`
//! `[batch, seq, vocab]` (safetensors metadata {"format":"pt"}), written atomically.

use clap::Parser;
use lora_burn::{load_any, AnyModel, Backend};
use lora_core::NamedLinears;
use lora_models::write_f32_safetensors;
use lora_models::LanguageModel;
use lora_recipes::ids::InputIds;
use lora_recipes::AnyError;
use std::path::PathBuf;

/// Computes logits for given token ids.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Logits of a GPT-2 or Llama checkpoint (+ optional PEFT LoRA adapter, optionally merged), for comparison with transformers + PEFT"
)]
struct Args {
    /// Hugging Face model directory or GGUF file.
    #[arg(long)]
    model_path: PathBuf,
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Merge the adapter into the base weights before running (merge_and_unload).
    #[arg(long)]
    merge: bool,
    /// safetensors file with an integer tensor `input_ids` [batch, seq].
    #[arg(long)]
    input_ids: PathBuf,
    /// Output safetensors file (F32 `logits` [batch, seq, vocab]).
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), AnyError> {
    let args = Args::parse();
    if args.merge && args.adapter.is_none() {
        return Err("--merge needs --adapter DIR".into());
    }
    let device = Default::default();
    let ids = InputIds::read(&args.input_ids)?;
    let model = load_any::<Backend>(&args.model_path, &device)?;
    let (vocab, max_positions) = match &model {
        AnyModel::Gpt2(m, _) => (m.vocab_size(), Some(m.n_positions())),
        AnyModel::Llama(m, _) => (m.vocab_size(), None),
    };
    ids.check(&args.input_ids, vocab, max_positions)?;
    let input = ids.to_tensor::<Backend>(&device);
    let logits = match model {
        AnyModel::Gpt2(mut m, _) => {
            prepare(&mut m, &args, &device)?;
            m.forward(input)
        }
        AnyModel::Llama(mut m, _) => {
            prepare(&mut m, &args, &device)?;
            m.forward(input)
        }
    };
    write_f32_safetensors(&args.out, "logits", logits)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Loads `--adapter` into `m` and merges it with `--merge`, saying what it did.
fn prepare<M: NamedLinears<Backend>>(
    m: &mut M,
    args: &Args,
    device: &burn::tensor::Device<Backend>,
) -> Result<(), AnyError> {
    if let Some(a) = &args.adapter {
        let cfg = lora_peft::load_adapter(m, a, device)?;
        eprintln!(
            "adapter {} (r={}, lora_alpha={})",
            a.display(),
            cfg.r,
            cfg.lora_alpha
        );
        if args.merge {
            let n = lora_peft::merge_and_unload(m)?;
            eprintln!("merged {n} layers");
        }
    }
    Ok(())
}
