//! Merges a PEFT LoRA adapter into its base model and writes a Hugging Face directory
//! (config.json + model.safetensors) that transformers loads (PEFT `merge_and_unload` +
//! `save_pretrained`).
//!
//! ```text
//! cargo run --release --example merge -- --model-path DIR --adapter DIR --out DIR
//! ```
//! `--model-path` is a Hugging Face directory (GPT-2 or Llama) or a Llama-family `.gguf` file
//! (dequantized to f32 on the way).

use clap::Parser;
use lora_burn::{load_any, AnyModel, Backend};
use lora_recipes::checks;
use lora_train::Progress;
use std::path::PathBuf;

/// Merge a LoRA adapter into the base weights.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Merge a PEFT LoRA adapter into its base model and write a Hugging Face directory (PEFT merge_and_unload + save_pretrained)"
)]
struct Args {
    /// Hugging Face model directory, GGUF file, or hub id org/name[@revision] in the local cache.
    #[arg(long)]
    model_path: PathBuf,
    /// PEFT adapter directory.
    #[arg(long)]
    adapter: PathBuf,
    /// Output directory (created; files written atomically).
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
    lora_recipes::switches::check_switches()?;
    // Every path is checked before the model is loaded.
    // A local path or a hub id in the local Hugging Face cache.
    let model_path = checks::model_location("--model-path", &args.model_path)?.path;
    checks::input_dir_with("--adapter", &args.adapter, lora_peft::CONFIG_NAME)?;
    checks::input_dir("--adapter", &args.adapter)?;
    checks::output_not_input("--out", &args.out, "--model-path", &model_path)?;
    checks::output_not_input("--out", &args.out, "--adapter", &args.adapter)?;
    checks::output_dir("--out", &args.out)?;
    let device = Default::default();
    let loading = Progress::spinner(&format!("loading {}", model_path.display()));
    let model = load_any::<Backend>(&model_path, &device)?;
    loading.finish();
    match model {
        AnyModel::Gpt2(mut m, cfg) => {
            let a = lora_peft::load_adapter(&mut m, &args.adapter, &device)?;
            let merging = Progress::spinner("merging the adapter into the base weights");
            let n = lora_peft::merge_and_unload(&mut m)?;
            merging.finish();
            eprintln!("merged {n} layers (r={}, lora_alpha={})", a.r, a.lora_alpha);
            m.save_hf(&cfg, &args.out)?;
        }
        AnyModel::Llama(mut m, cfg) => {
            let a = lora_peft::load_adapter(&mut m, &args.adapter, &device)?;
            let merging = Progress::spinner("merging the adapter into the base weights");
            let n = lora_peft::merge_and_unload(&mut m)?;
            merging.finish();
            eprintln!("merged {n} layers (r={}, lora_alpha={})", a.r, a.lora_alpha);
            m.save_hf(&cfg, &args.out)?;
        }
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
