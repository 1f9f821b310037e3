//! Combines PEFT LoRA adapters of one base model into a new PEFT LoRA adapter (PEFT
//! `add_weighted_adapter` + `save_pretrained` of the new adapter).
//!
//! ```text
//! cargo run --release --example combine -- --model-path DIR \
//!     --adapter DIR --weight W [--adapter DIR --weight W …] \
//!     --combination-type cat|linear|svd --out DIR
//! ```
//! `--model-path` is the base model the adapters were trained on (a Hugging Face directory,
//! GPT-2 or Llama, or a Llama-family `.gguf` file): the combination is computed per layer on it.
//! Weights pair with adapters in order and may be negative. `cat` is exact (rank Σ rᵢ);
//! `linear` needs equal ranks; `svd` truncates to the largest rank.

use clap::Parser;
use lora_burn::{load_any, AnyModel, Backend};
use lora_models::LanguageModel;
use lora_peft::{CombinationType, NamedAdapters};
use lora_recipes::checks;
use std::path::PathBuf;

/// Combine LoRA adapters into one.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Combine PEFT LoRA adapters into a new PEFT LoRA adapter (PEFT add_weighted_adapter)"
)]
struct Args {
    /// The adapters' base model: Hugging Face directory, GGUF file, or cached hub id org/name.
    #[arg(long)]
    model_path: PathBuf,
    /// PEFT adapter directory (repeat for each adapter).
    #[arg(long, required = true)]
    adapter: Vec<PathBuf>,
    /// Weight of the adapter at the same position (repeat; may be negative).
    #[arg(long, required = true, allow_negative_numbers = true)]
    weight: Vec<f64>,
    /// `cat` (exact), `linear` (equal ranks) or `svd`.
    #[arg(long, default_value = "svd")]
    combination_type: String,
    /// Output adapter directory (created; files written atomically).
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
    if args.adapter.len() != args.weight.len() {
        return Err(format!(
            "{} --adapter but {} --weight: give one weight per adapter",
            args.adapter.len(),
            args.weight.len()
        )
        .into());
    }
    let combination: CombinationType = args
        .combination_type
        .parse()
        .map_err(|e| format!("--combination-type {}: {e}", args.combination_type))?;
    for w in &args.weight {
        checks::finite("--weight", *w)?;
    }
    // Every path is checked before the model is loaded.
    // A local path or a hub id in the local Hugging Face cache.
    let model_path = checks::model_location("--model-path", &args.model_path)?.path;
    for a in &args.adapter {
        checks::input_dir_with("--adapter", a, lora_peft::CONFIG_NAME)?;
        checks::input_dir("--adapter", a)?;
        checks::output_not_input("--out", &args.out, "--adapter", a)?;
    }
    checks::output_dir("--out", &args.out)?;
    match load_any::<Backend>(&model_path, &Default::default())? {
        AnyModel::Gpt2(m, _) => combine(m, &args, combination),
        AnyModel::Llama(m, _) => combine(m, &args, combination),
    }
}

fn combine<M: LanguageModel<Backend>>(
    model: M,
    args: &Args,
    combination: CombinationType,
) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let mut m = NamedAdapters::new(model)?;
    let names: Vec<String> = (0..args.adapter.len())
        .map(|i| format!("adapter{i}"))
        .collect();
    for (dir, name) in args.adapter.iter().zip(&names) {
        m.load_adapter(dir, name, &device)?;
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    m.add_weighted_adapter(&names, &args.weight, "combined", combination)?;
    m.save_adapter("combined", &args.out)?;
    let config = lora_peft::LoraConfig::from_file(args.out.as_path())?;
    eprintln!(
        "{combination} of {} adapters: r = {}, lora_alpha = {}",
        names.len(),
        config.r,
        config.lora_alpha
    );
    println!("wrote {}", args.out.display());
    Ok(())
}
