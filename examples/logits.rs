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

use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use lora_burn::{load_any, AnyModel, Backend};
use lora_core::NamedLinears;
use lora_models::st::StFile;
use lora_models::LanguageModel;
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

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.merge && args.adapter.is_none() {
        return Err("--merge needs --adapter DIR".into());
    }
    let device = Default::default();
    let st = StFile::open(&args.input_ids)?;
    let (ids, shape) = st.i64("input_ids")?;
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
        return Err(format!(
            "{}: `input_ids` has shape {shape:?}, expected [batch, seq] with both ≥ 1",
            args.input_ids.display()
        )
        .into());
    }
    let model = load_any::<Backend>(&args.model_path, &device)?;
    let vocab = match &model {
        AnyModel::Gpt2(m, _) => m.vocab_size(),
        AnyModel::Llama(m, _) => m.vocab_size(),
    };
    if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as usize >= vocab) {
        return Err(format!(
            "{}: `input_ids` holds {bad}, outside the vocabulary [0, {vocab})",
            args.input_ids.display()
        )
        .into());
    }
    let input: Tensor<Backend, 2, Int> =
        Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    if let AnyModel::Gpt2(m, _) = &model {
        if shape[1] > m.n_positions() {
            return Err(format!(
                "{}: `input_ids` has {} positions, more than this GPT-2's n_positions = {}",
                args.input_ids.display(),
                shape[1],
                m.n_positions()
            )
            .into());
        }
    }
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
    lora_burn::write_f32_safetensors(&args.out, "logits", logits)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn prepare<M: NamedLinears<Backend>>(
    m: &mut M,
    args: &Args,
    device: &burn::tensor::Device<Backend>,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(a) = &args.adapter {
        let cfg = lora_peft::load_adapter(m, a, device)?;
        eprintln!(
            "adapter {} (r={}, lora_alpha={})",
            a.display(),
            cfg.r,
            cfg.lora_alpha
        );
        if args.merge {
            let n = lora_peft::merge_and_unload(m);
            eprintln!("merged {n} layers");
        }
    }
    Ok(())
}
