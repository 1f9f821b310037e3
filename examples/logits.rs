//! Logits of a GPT-2 or Llama checkpoint, optionally with adapters of any method (optionally
//! merged), for comparing with transformers + PEFT (or AdapterHub).
//!
//! ```text
//! cargo run --release --example logits -- --model-path DIR [--adapter DIR ...] [--merge] \
//!     --input-ids in.safetensors --out out.safetensors
//! ```
//! Each `--adapter` is a PEFT directory (LoRA, DoRA, IA3, prefix or prompt tuning, read from its
//! `adapter_config.json`) or an AdapterHub bottleneck directory; several must all be LoRA and
//! are active at once (their deltas add). The logits are those of the input tokens only (no
//! virtual-token positions).
//! `DIR` is a Hugging Face directory (config.json with `model_type` "gpt2" or "llama" +
//! model.safetensors) or a `.gguf` file (Llama family). The input file holds an I64 (or I32)
//! tensor `input_ids` `[batch, seq]`; the output file gets an F32 tensor `logits`
//! `[batch, seq, vocab]` (safetensors metadata {"format":"pt"}), written atomically.

use burn::module::ModuleDisplay;
use clap::Parser;
use lora_burn::{load_any, AnyModel, Backend};
use lora_core::BottleneckLayers;
use lora_models::write_f32_safetensors;
use lora_models::LanguageModel;
use lora_peft::{adapter_kind, load_adapters};
use lora_recipes::ids::InputIds;
use lora_recipes::{checks, AnyError};
use std::path::PathBuf;

/// Computes logits for given token ids.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Logits of a GPT-2 or Llama checkpoint (+ adapters of any method, optionally merged), for comparison with transformers + PEFT"
)]
struct Args {
    /// Hugging Face model directory, GGUF file, or hub id org/name[@revision] in the local cache.
    #[arg(long)]
    model_path: PathBuf,
    /// Adapter directory (PEFT or AdapterHub); repeat for several LoRA adapters at once.
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// Merge the adapters into the base weights before running (merge_and_unload; LoRA, DoRA
    /// and IA3 only).
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
    lora_recipes::switches::check_switches()?;
    if args.merge && args.adapter.is_empty() {
        return Err("--merge needs --adapter DIR".into());
    }
    // Every path is checked before anything is read.
    // A local path or a hub id in the local Hugging Face cache.
    let model_path = checks::model_location("--model-path", &args.model_path)?.path;
    for a in &args.adapter {
        checks::input_dir("--adapter", a)?;
    }
    checks::input_file("--input-ids", &args.input_ids)?;
    checks::output_not_input("--out", &args.out, "--input-ids", &args.input_ids)?;
    checks::output_file("--out", &args.out)?;
    let device = Default::default();
    let ids = InputIds::read(&args.input_ids)?;
    let model = load_any::<Backend>(&model_path, &device)?;
    let logits = match model {
        AnyModel::Gpt2(m, _) => logits(m, &ids, &args, &device)?,
        AnyModel::Llama(m, _) => logits(m, &ids, &args, &device)?,
    };
    write_f32_safetensors(&args.out, "logits", logits)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Loads the `--adapter` directories onto `m` (merged with `--merge`) and computes the logits
/// of `ids`, after checking them against the vocabulary and the positions left.
fn logits<M>(
    m: M,
    ids: &InputIds,
    args: &Args,
    device: &burn::tensor::Device<Backend>,
) -> Result<burn::tensor::Tensor<Backend, 3>, AnyError>
where
    M: LanguageModel<Backend> + ModuleDisplay + BottleneckLayers<Backend>,
{
    let m = load_adapters(m, &args.adapter, args.merge, device)?;
    for (a, kind) in args.adapter.iter().map(|a| (a, adapter_kind(a))) {
        eprintln!("adapter {} ({})", a.display(), kind?);
    }
    ids.check(&args.input_ids, m.vocab_size(), m.max_positions())?;
    Ok(m.forward(ids.to_tensor::<Backend>(device)))
}
