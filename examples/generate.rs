//! Text generation with a GPT-2 or Llama checkpoint, optionally with adapters of any method
//! (PEFT LoRA, DoRA, IA3, prefix or prompt tuning; AdapterHub bottleneck; several LoRA at once):
//! greedy search or seeded sampling, decoded incrementally through the key/value cache, as
//! transformers' `generate`.
//!
//! ```text
//! cargo run --release --example generate -- --model-path DIR_OR_GGUF_OR_HUB_ID [--adapter DIR ...] \
//!     (--prompt TEXT [--raw] [--system TEXT] | --input-ids in.safetensors --out out.safetensors) \
//!     [--max-new-tokens N] [--do-sample] [--temperature T] [--top-k K] [--top-p P] \
//!     [--repetition-penalty R] [--seed S] [--eos-token-id ID ...]
//! ```
//! With `--prompt` the text is tokenized (the GGUF's tokenizer, or the directory's
//! `tokenizer.json` / `vocab.json` + `merges.txt` with its special tokens, or GPT-2's
//! compiled-in BPE), wrapped in the model's own Jinja chat template when it has one (GGUF
//! `tokenizer.chat_template`, `chat_template.jinja` or `tokenizer_config.json`; unless
//! `--raw`), and the reply is printed. With `--input-ids` (an I64 or I32 tensor `input_ids` `[batch, seq]`, equal-length
//! rows) the I64 tensor `output_ids` `[batch, seq + new]` is written to `--out`.
//! Sampling is on with `--do-sample` or any of `--temperature`, `--top-k`, `--top-p`, `--seed`;
//! greedy otherwise. EOS ids default to the model's (`generation_config.json` / `config.json`
//! / GGUF metadata).

use clap::Parser;
use lora_burn::{load_any, AnyModel, Backend};
use lora_models::generate::{
    generate, ChatMessage, GenerateError, Generation, GenerationConfig, JinjaChatTemplate,
    SpecialIds,
};
use lora_models::tokenizer::Tokenizer;
use lora_models::LanguageModel;
use lora_peft::load_adapters;
use lora_recipes::ids::InputIds;
use lora_recipes::{checks, AnyError};
use std::path::PathBuf;

/// Generates text or token ids.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Text generation (greedy or sampled, incremental decoding) with a GPT-2 or Llama checkpoint and optional adapters of any method"
)]
struct Args {
    /// Hugging Face model directory, GGUF file, or hub id org/name[@revision] in the local cache.
    #[arg(long)]
    model_path: PathBuf,
    /// Adapter directory (PEFT or AdapterHub); repeat for several LoRA adapters at once.
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// Text to reply to (in the model's chat template unless --raw); the reply is printed.
    #[arg(
        long,
        conflicts_with = "input_ids",
        required_unless_present = "input_ids"
    )]
    prompt: Option<String>,
    /// Use the prompt as is, without the model's chat template.
    #[arg(long, requires = "prompt")]
    raw: bool,
    /// System message for the chat template (default: the template's own).
    #[arg(long, requires = "prompt")]
    system: Option<String>,
    /// safetensors file with an integer tensor `input_ids` [batch, seq].
    #[arg(long, requires = "out")]
    input_ids: Option<PathBuf>,
    /// Output safetensors file (I64 `output_ids` [batch, seq + new]).
    #[arg(long, requires = "input_ids")]
    out: Option<PathBuf>,
    /// Most new tokens per row.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Sample instead of greedy decoding.
    #[arg(long)]
    do_sample: bool,
    /// Sampling temperature (> 0).
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample among the k most likely tokens (0 = all; default 50 as transformers).
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long)]
    top_p: Option<f32>,
    /// CTRL repetition penalty (> 0, 1 = off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Seed of the sampling RNG.
    #[arg(long)]
    seed: Option<u64>,
    /// EOS ids (repeatable); default: the model's.
    #[arg(long)]
    eos_token_id: Vec<u32>,
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
    let device = Default::default();
    // Every flag and path is checked before the model is read.
    let config = flag_config(&args)?;
    // A local path or a hub id in the local Hugging Face cache.
    let model_path = checks::model_location("--model-path", &args.model_path)?.path;
    for a in &args.adapter {
        checks::input_dir("--adapter", a)?;
    }
    if let Some(p) = &args.input_ids {
        checks::input_file("--input-ids", p)?;
    }
    if let Some(p) = &args.out {
        if let Some(i) = &args.input_ids {
            checks::output_not_input("--out", p, "--input-ids", i)?;
        }
        checks::output_file("--out", p)?;
    }
    let config = with_model_ids(&args, &model_path, config)?;
    let (prompts, tokenizer) = match (&args.prompt, &args.input_ids) {
        (Some(text), _) => {
            let tok = Tokenizer::from_model_path(&model_path)?;
            let (ids, how) = match chat_prompt(&args, &tok, text)? {
                // The template writes its own special tokens (transformers encodes the rendered
                // chat with add_special_tokens=False).
                Some(prompt) => (
                    tok.encode_with(&prompt, false)?,
                    " in the model's chat template",
                ),
                None => (tok.encode(text)?, ""),
            };
            eprintln!("prompt: {} tokens{how}", ids.len());
            (vec![ids], Some(tok))
        }
        (None, Some(path)) => {
            let ids = InputIds::read(path)?;
            let rows = ids
                .ids
                .chunks(ids.seq)
                .map(|r| r.iter().map(|&t| u32::try_from(t)).collect())
                .collect::<Result<Vec<Vec<u32>>, _>>()
                .map_err(|_| format!("{}: negative or too large token id", path.display()))?;
            (rows, None)
        }
        (None, None) => return Err("give --prompt TEXT or --input-ids FILE --out FILE".into()),
    };
    let out = match load_any::<Backend>(&model_path, &device)? {
        AnyModel::Gpt2(m, _) => decode(
            &load_adapters(m, &args.adapter, false, &device)?,
            &prompts,
            &config,
            &device,
        )?,
        AnyModel::Llama(m, _) => decode(
            &load_adapters(m, &args.adapter, false, &device)?,
            &prompts,
            &config,
            &device,
        )?,
    };
    eprintln!(
        "{} new tokens per row ({:?})",
        out.sequences[0].len() - out.prompt_len,
        out.stop
    );
    match (tokenizer, &args.out) {
        (Some(tok), _) => {
            // The reply without the EOS token(s) that ended it.
            let new = out.new_tokens(0);
            let end = new
                .iter()
                .rposition(|t| !config.eos_token_ids.contains(t))
                .map_or(0, |i| i + 1);
            println!("{}", tok.decode(&new[..end])?);
        }
        (None, Some(path)) => {
            out.save_safetensors(path)?;
            eprintln!("wrote {}", path.display());
        }
        (None, None) => return Err("--input-ids needs --out FILE".into()),
    }
    Ok(())
}

fn decode<M: LanguageModel<Backend>>(
    m: &M,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    device: &burn::tensor::Device<Backend>,
) -> Result<Generation, AnyError> {
    Ok(generate(m, prompts, config, device)?)
}

/// The settings from the flags alone, checked ([`GenerationConfig::validate`] without the
/// vocabulary, which is not known yet); an error names the flag.
fn flag_config(args: &Args) -> Result<GenerationConfig, AnyError> {
    let d = GenerationConfig::default();
    let do_sample = args.do_sample
        || args.temperature.is_some()
        || args.top_k.is_some()
        || args.top_p.is_some()
        || args.seed.is_some();
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        do_sample,
        temperature: args.temperature.unwrap_or(d.temperature),
        top_k: args.top_k.unwrap_or(d.top_k),
        top_p: args.top_p.unwrap_or(d.top_p),
        repetition_penalty: args.repetition_penalty,
        seed: args.seed.unwrap_or(d.seed),
        eos_token_ids: args.eos_token_id.clone(),
        pad_token_id: None,
    };
    config.validate(usize::MAX).map_err(|e| match e {
        GenerateError::Config {
            field,
            value,
            expected,
        } => format!("--{} {value}: expected {expected}", field.replace('_', "-")).into(),
        e => AnyError::from(e),
    })?;
    Ok(config)
}

/// `config` with the model's EOS / padding ids (EOS unless `--eos-token-id`).
fn with_model_ids(
    args: &Args,
    model_path: &std::path::Path,
    config: GenerationConfig,
) -> Result<GenerationConfig, AnyError> {
    let special = SpecialIds::from_model_path(model_path)?;
    Ok(GenerationConfig {
        eos_token_ids: if args.eos_token_id.is_empty() {
            special.eos_token_ids
        } else {
            config.eos_token_ids.clone()
        },
        pad_token_id: special.pad_token_id,
        ..config
    })
}

/// `text` as the user turn (after `--system`, if given) in the model's own chat template
/// (GGUF metadata, `chat_template.jinja` or `tokenizer_config.json`), with the assistant turn
/// opened; `None` with `--raw` or when the model has no template.
fn chat_prompt(args: &Args, tok: &Tokenizer, text: &str) -> Result<Option<String>, AnyError> {
    if args.raw {
        return Ok(None);
    }
    let Some(template) = JinjaChatTemplate::from_tokenizer(tok)? else {
        return Ok(None);
    };
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage::new("system", s));
    }
    messages.push(ChatMessage::new("user", text));
    Ok(Some(template.render(&messages, true)?))
}
