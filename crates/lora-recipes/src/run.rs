//! A fine-tuning run on a loaded model: the steps both tasks share (checks, LoRA config,
//! QLoRA quantization, training config, the training examples), then the task's recipe.

use burn::module::{AutodiffModule, ModuleDisplay};
use burn::tensor::backend::{AutodiffBackend, Backend};
use lora_core::BottleneckLayers;
use lora_core::{NamedLinears, Precision};
use lora_models::tokenizer::Tokenizer;
use lora_models::LanguageModel;
use lora_peft::quantize_model;
// The IMDB pipeline's types (one import site; the crate that holds them may change).
use lora_data::imdb::Review;
use lora_train::TrainConfig;
use std::path::Path;
use std::time::Instant;

use crate::checkpointing::configure_checkpoints;
use crate::config::{count_layers, lora_config};
use crate::method::{method_config, wrap_prompt_learning, MethodConfig, SavePromptLearning};
use crate::options::{FinetuneOptions, Task};
use crate::AnyError;

/// A model the recipes fine-tune: a language model on the autodiff backend `B`, printable, whose
/// inner (evaluation) model is a language model too. Every model family of `lora-models`
/// (and its `*ForSequenceClassification`) is one.
pub trait RecipeModel<B: AutodiffBackend>:
    LanguageModel<B>
    + AutodiffModule<B, InnerModule = Self::Inner>
    + ModuleDisplay
    + BottleneckLayers<B>
    + SavePromptLearning
{
    /// The evaluation model (`AutodiffModule::InnerModule`).
    type Inner: LanguageModel<B::InnerBackend> + ModuleDisplay;
}

impl<B, M> RecipeModel<B> for M
where
    B: AutodiffBackend,
    M: LanguageModel<B>
        + AutodiffModule<B>
        + ModuleDisplay
        + BottleneckLayers<B>
        + SavePromptLearning,
    M::InnerModule: LanguageModel<B::InnerBackend> + ModuleDisplay,
{
    type Inner = M::InnerModule;
}

/// What a run reads besides its options and model.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The model's tokenizer.
    pub tok: &'a Tokenizer,
    /// LoRA targets when `--target-modules` is not given (the model family's `LORA_TARGETS`).
    pub default_targets: &'a [&'a str],
    /// Training reviews, in the seeded order of the split.
    pub train_set: &'a [Review],
    /// Held-out reviews.
    pub test_set: &'a [Review],
    /// The model's local file or directory (named in errors, fingerprinted in checkpoints).
    pub model_path: &'a Path,
    /// Recorded as the adapter's `base_model_name_or_path`: a hub id, or the path
    /// ([`crate::checks::ModelLocation::name`]).
    pub model_name: &'a str,
}

/// The shared preparation of a run, handed to the task's recipe.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The method's config (PEFT's, or AdapterHub's for a bottleneck adapter).
    pub method: MethodConfig,
    /// The training loop's config.
    pub train: TrainConfig,
    /// The padding token id (the tokenizer's pad, else its end-of-sequence, else 0).
    pub pad: u32,
    /// The training reviews the run will see: each at most once, the first
    /// `steps · batch_size · grad_accum` of the training set (batches repeat when the steps
    /// need more).
    pub train_slice: Vec<Review>,
}

/// Runs the recipe of `opts.task` on `model`: seeds the backend with `--seed`, builds the LoRA
/// config, quantizes the frozen base (`--quant`, before any adapter exists: QLoRA order),
/// then [`crate::classify::run_classify`] or [`crate::causal_lm::run_causal_lm`]. Prints the
/// quantization report, parameter counts, evaluations and the training summary on stdout,
/// progress on stderr; writes the resolved options (`training_config.toml`, before training)
/// and the adapter to `--output-dir`.
///
/// # Errors
/// A tokenizer larger than the model's vocabulary; no training review; the errors of the
/// config, quantization, training and file writing, each naming the flag or file.
pub fn run_model<B, M>(
    opts: &FinetuneOptions,
    model: M,
    inputs: &Inputs<'_>,
    device: &B::Device,
) -> Result<(), AnyError>
where
    B: AutodiffBackend,
    M: RecipeModel<B>,
{
    let tok = inputs.tok;
    if tok.vocab_size() > model.vocab_size() {
        return Err(format!(
            "the tokenizer has {} tokens but {} has a vocabulary of {}: token ids would fall \
             outside the embedding",
            tok.vocab_size(),
            inputs.model_path.display(),
            model.vocab_size()
        )
        .into());
    }
    let _lock = crate::checkpointing::lock_output_dir(opts)?;
    crate::recipe::write_training_config(opts)?;
    if let Some(max) = model.max_positions() {
        let virtual_tokens = match opts.method {
            crate::Method::PrefixTuning | crate::Method::PromptTuning => opts.num_virtual_tokens,
            _ => 0,
        };
        if opts.max_length.saturating_add(virtual_tokens) > max {
            let with = if virtual_tokens > 0 {
                format!(" + --num-virtual-tokens {virtual_tokens}")
            } else {
                String::new()
            };
            return Err(format!(
                "--max-length {}{with} exceeds the {max} positions of {}",
                opts.max_length,
                inputs.model_path.display()
            )
            .into());
        }
    }
    B::seed(device, opts.seed);
    let names = model.linear_names();
    let n_layers = count_layers(&names);
    let cfg = lora_config(opts, inputs.default_targets, inputs.model_name, n_layers)?;
    let keep_f32 = cfg.effective_modules_to_save();
    let encode = |t: &str| -> Result<Vec<u32>, AnyError> { Ok(tok.encode(t)?) };
    let method = method_config(opts, cfg, &names, n_layers, &encode)?;
    // QLoRA order: quantize the frozen base right after loading, before any adapter exists.
    let mut model = model;
    if let Some(kind) = opts.quant_kind()? {
        let t = Instant::now();
        let mut skip: Vec<String> = vec!["score".into(), "lm_head".into()];
        skip.extend(keep_f32);
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
    if opts.warmup_steps >= opts.steps {
        eprintln!(
            "note: --warmup-steps {} >= --steps {}: the learning rate stays in its linear warmup \
             and never reaches --lr {} (transformers' schedule behaves the same)",
            opts.warmup_steps, opts.steps, opts.lr
        );
    }
    let pad = tok.pad_id().or(tok.eos_id()).unwrap_or(0);
    let needed = opts.steps * opts.batch_size * opts.grad_accum;
    let mut train_cfg = TrainConfig {
        steps: opts.steps,
        batch_size: opts.batch_size,
        grad_accum: opts.grad_accum,
        lr: opts.lr,
        warmup_steps: opts.warmup_steps,
        eval_every: (opts.eval_every > 0).then_some(opts.eval_every),
        checkpoint_every: (opts.checkpoint_every > 0).then_some(opts.checkpoint_every),
        // A seed of its own for the loop (dropout masks), so that they do not replay the
        // random stream that initialised the adapters.
        seed: opts.seed.wrapping_add(1),
        time_budget_secs: opts.time_budget,
        ..TrainConfig::default()
    };
    let precision = opts.precision::<B>(device)?;
    configure_checkpoints(&mut train_cfg, opts, inputs.model_path, precision)?;
    if inputs.train_set.is_empty() {
        return Err("no training reviews left after the split".into());
    }
    let train_slice: Vec<Review> = inputs.train_set[..needed.min(inputs.train_set.len())].to_vec();
    let prep = Prepared {
        method,
        train: train_cfg,
        pad,
        train_slice,
    };
    // Prompt learning wraps the model (PEFT `get_peft_model`); the other methods attach to its
    // layers inside the recipe, after the classifier head exists.
    match wrap_prompt_learning(model, &prep.method, device)? {
        Ok(wrapped) => run_task(opts, wrapped, inputs, &prep, device),
        Err(model) => run_task(opts, model, inputs, &prep, device),
    }
}

/// The recipe of `opts.task` on `model`.
fn run_task<B, M>(
    opts: &FinetuneOptions,
    model: M,
    inputs: &Inputs<'_>,
    prep: &Prepared,
    device: &B::Device,
) -> Result<(), AnyError>
where
    B: AutodiffBackend,
    M: RecipeModel<B>,
{
    match opts.task {
        Task::Classify => crate::classify::run_classify(opts, model, inputs, prep, device),
        Task::CausalLm => crate::causal_lm::run_causal_lm(opts, model, inputs, prep, device),
    }
}

/// Applies `--precision` to every frozen linear base of `model` (after LoRA and quantization;
/// a no-op for f32) and says what it did on stderr.
///
/// # Errors
/// [`FinetuneOptions::precision`]'s; the layers' refusal of the dtype.
pub fn set_precision<B: Backend, M: NamedLinears<B>>(
    model: &mut M,
    opts: &FinetuneOptions,
    device: &B::Device,
) -> Result<(), AnyError> {
    let p = opts.precision::<B>(device)?;
    if p != Precision::F32 {
        let report = model.set_compute_dtype(p.dtype())?;
        eprintln!("precision {p}: {report}");
    }
    Ok(())
}
