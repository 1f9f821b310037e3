//! The checks of a fine-tuning run's flags, in the order the `finetune` example can run them:
//! values alone (before anything is fetched or loaded), the output directory (created before
//! any fetch), the data (its size), the tokenizer (the prompt suffix) and the loaded model's
//! layer names (`--target-modules`). Each fails with one line naming the flag, the value and
//! what is allowed.

use lora_models::tokenizer::Tokenizer;
use lora_peft::{resolve_targets, PeftError};
use std::path::Path;

use crate::checks::{self, at_least_one, positive, ModelFamily, ModelLocation};
use crate::config::{lora_config, parse_layers};
use crate::lm_loss::LmLoss;
use crate::options::{FinetuneOptions, Method, ModelKind, Task};
use crate::AnyError;

impl FinetuneOptions {
    /// The checks of single values: `--r`, `--lora-alpha`, `--lora-dropout`, `--lr`,
    /// `--steps`, `--batch-size`, `--eval-batch-size`, `--grad-accum`, `--devices` (its
    /// split of `--batch-size`), `--max-length`, `--lm-loss` (causal-LM only),
    /// `--eval-size`, `--pad-multiple`, `--num-virtual-tokens`, `--encoder-hidden-size`,
    /// `--reduction-factor`, `--time-budget`, `--layers`, `--target-modules` (not empty),
    /// `--model-path` (a model directory, GGUF file or cached hub id; required for `--model
    /// gpt2`, which refuses a Llama-family model) and `--data-path` (an existing file). Reads no
    /// more than the first bytes of `--model-path` (its `config.json` for a directory).
    ///
    /// # Errors
    /// One line naming the first flag that fails, its value and what is allowed.
    pub fn check_values(&self) -> Result<(), AnyError> {
        at_least_one("--r", self.r)?;
        positive("--lora-alpha", self.lora_alpha)?;
        if !(self.lora_dropout >= 0.0 && self.lora_dropout < 1.0) {
            return Err(format!(
                "--lora-dropout {}: must be in [0, 1) (a probability; 1 would drop everything)",
                self.lora_dropout
            )
            .into());
        }
        positive("--lr", self.lr)?;
        at_least_one("--steps", self.steps)?;
        at_least_one("--batch-size", self.batch_size)?;
        at_least_one("--eval-batch-size", self.eval_batch_size)?;
        at_least_one("--grad-accum", self.grad_accum)?;
        at_least_one("--devices", self.devices)?;
        if self.task == Task::CausalLm && self.max_length < 2 {
            return Err(format!(
                "--max-length {}: --task causal-lm needs at least 2 tokens (one to predict from, \
                 one to predict)",
                self.max_length
            )
            .into());
        }
        if self.task != Task::CausalLm && self.lm_loss != LmLoss::default() {
            return Err("--lm-loss is for --task causal-lm only".into());
        }
        if self.batch_size % self.devices != 0 {
            return Err(format!(
                "--batch-size {} does not split evenly across --devices {}: use a multiple of {}",
                self.batch_size, self.devices, self.devices
            )
            .into());
        }
        at_least_one("--max-length", self.max_length)?;
        at_least_one("--eval-size", self.eval_size)?;
        at_least_one("--pad-multiple", self.pad_multiple)?;
        if matches!(self.method, Method::PrefixTuning | Method::PromptTuning) {
            at_least_one("--num-virtual-tokens", self.num_virtual_tokens)?;
        }
        if let Some(h) = self.encoder_hidden_size {
            at_least_one("--encoder-hidden-size", h)?;
        }
        positive("--reduction-factor", self.reduction_factor)?;
        if let Some(t) = self.time_budget {
            positive("--time-budget", t)?;
        }
        if !matches!(self.layers.as_str(), "all" | "top-half") {
            parse_layers(&self.layers).map_err(|e| {
                let e = e.to_string();
                format!(
                    "--layers {}: {}; expected \"all\", \"top-half\" or indices such as \"15-29\"",
                    self.layers,
                    e.trim_start_matches("--layers: ")
                )
            })?;
        }
        if let Some(t) = &self.target_modules {
            if t.split(',').any(|p| p.trim().is_empty()) {
                return Err(format!(
                    "--target-modules {t:?}: an empty name; expected comma-separated module \
                     names (e.g. q_proj,v_proj) or one regex"
                )
                .into());
            }
        }
        if let Some(p) = &self.data_path {
            checks::input_file("--data-path", p)?;
        }
        self.check_model_path()
    }

    /// `--model-path` against `--model`: the files decide the family ([`Self::model_location`]);
    /// `--model gpt2` needs a GPT-2 directory (none is fetched) and refuses a Llama-family one.
    fn check_model_path(&self) -> Result<(), AnyError> {
        let Some(loc) = self.model_location()? else {
            if self.model == ModelKind::Gpt2 {
                return Err(
                    "--model gpt2 needs --model-path DIR (a Hugging Face GPT-2 directory, \
                     config.json + model.safetensors, or its hub id org/name)"
                        .into(),
                );
            }
            return Ok(());
        };
        if self.model == ModelKind::Gpt2 && loc.family != ModelFamily::Gpt2 {
            let path = self.model_path.as_deref().unwrap_or(&loc.path);
            return Err(format!(
                "--model-path {}: a Llama-family model, but --model gpt2 was given; leave \
                 --model out (the files decide the family) or give a GPT-2 directory",
                path.display()
            )
            .into());
        }
        Ok(())
    }

    /// The model `--model-path` names, resolved and checked ([`checks::model_location`]: a
    /// local path, or a hub id in the local hub cache; its family from its files); `None`
    /// without `--model-path` (the `--model` default is fetched then).
    ///
    /// # Errors
    /// One line naming `--model-path` ([`checks::model_location`]).
    pub fn model_location(&self) -> Result<Option<ModelLocation>, AnyError> {
        self.model_path
            .as_deref()
            .map(|p| checks::model_location("--model-path", p))
            .transpose()
    }

    /// Creates `--output-dir` and checks that it accepts files, and that the `--dump-data`
    /// file's directory does; run before anything is fetched, so that a run never trains for
    /// nothing.
    ///
    /// # Errors
    /// One line naming `--output-dir` or `--dump-data`, the path and the OS error.
    pub fn prepare_outputs(&self) -> Result<(), AnyError> {
        checks::output_dir("--output-dir", &self.output_dir)?;
        if let Some(p) = &self.dump_data {
            checks::output_file("--dump-data", p)?;
        }
        Ok(())
    }

    /// `--eval-size` against the `n_reviews` reviews of `data` (after cleaning and
    /// de-duplication): at least one review must be left for training.
    ///
    /// # Errors
    /// One line naming `--eval-size`, its value and the number of reviews.
    pub fn check_data(&self, n_reviews: usize, data: &Path) -> Result<(), AnyError> {
        if self.eval_size >= n_reviews {
            return Err(format!(
                "--eval-size {}: must be less than the {n_reviews} reviews of {} (some must be \
                 left for training)",
                self.eval_size,
                data.display()
            )
            .into());
        }
        Ok(())
    }

    /// `--max-length` against the tokenized `--suffix` (classification): at least one review
    /// token must fit.
    ///
    /// # Errors
    /// One line naming `--max-length`, its value and the suffix's token count; the tokenizer's
    /// error.
    pub fn check_tokenizer(&self, tok: &Tokenizer) -> Result<(), AnyError> {
        if self.task != Task::Classify {
            return Ok(());
        }
        let n = tok.encode_with(&self.suffix, false)?.len();
        if n >= self.max_length {
            return Err(format!(
                "--max-length {}: must exceed the {n} tokens of --suffix {:?} (at least one \
                 review token must fit)",
                self.max_length, self.suffix
            )
            .into());
        }
        Ok(())
    }

    /// `--target-modules` (and `--layers`) against the loaded model's linear layer `names`, as
    /// the run will match them (LoRA, DoRA and IA3 only; the other methods ignore it).
    ///
    /// # Errors
    /// One line naming `--target-modules`, its value and the model's module names.
    pub fn check_targets(
        &self,
        names: &[String],
        default_targets: &[&str],
        model_path: &Path,
    ) -> Result<(), AnyError> {
        let Some(t) = &self.target_modules else {
            return Ok(());
        };
        if !matches!(self.method, Method::Lora | Method::Dora | Method::Ia3) {
            return Ok(());
        }
        let n_layers = crate::config::count_layers(names);
        let base_model = model_path.display().to_string();
        let mut cfg = lora_config(self, default_targets, &base_model, n_layers)?;
        // The classifier's `score` head is added later, so it cannot be matched yet.
        cfg.modules_to_save = None;
        cfg.task_type = None;
        resolve_targets(names, &cfg).map(drop).map_err(|e| {
            let mut short: Vec<&str> = names
                .iter()
                .map(|n| n.rsplit('.').next().unwrap_or(n))
                .collect();
            short.sort_unstable();
            short.dedup();
            let why = match e {
                PeftError::NoMatch { target, detail, .. } => {
                    format!("{target} matches no linear layer{detail}")
                }
                e => e.to_string().replace('\n', " "),
            };
            format!(
                "--target-modules {t}: {why} of {}; its module names: {}",
                model_path.display(),
                short.join(", ")
            )
            .into()
        })
    }
}
