//! The adaptation method of a run (`--method`): its config built from the options, attaching it
//! to the model, saving it in the format its users' library reads (PEFT, or AdapterHub for
//! bottleneck adapters), and whether it folds into the base for evaluation.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lora_core::{BottleneckLayers, NamedLinears};
use lora_io::{write_safetensors, StTensor};
use lora_models::LanguageModel;
use lora_peft::tuners::bottleneck::ReductionFactor;
use lora_peft::{
    add_bottleneck, apply_ia3, apply_lora, resolve_targets, save_adapter, save_bottleneck,
    save_ia3, BnAdapterConfig, BnConfig, IA3Config, LoraConfig, PeftModel, PrefixTuningConfig,
    PromptTuningConfig, TargetModules,
};
use std::path::Path;

use crate::options::{BnArchitecture, FinetuneOptions, Method, PromptInit, Task};
use crate::AnyError;

/// The config of a run's method, built by [`method_config`].
#[derive(Debug, Clone)]
pub enum MethodConfig {
    /// LoRA, or DoRA with `use_dora` (PEFT `LoraConfig`).
    Lora(LoraConfig),
    /// (IA)³ (PEFT `IA3Config`).
    Ia3(IA3Config),
    /// Prefix tuning (PEFT `PrefixTuningConfig`); the model is wrapped in a
    /// [`lora_peft::PeftModel`] before the recipe runs.
    PrefixTuning(PrefixTuningConfig),
    /// Prompt tuning (PEFT `PromptTuningConfig`); with TEXT init, the token ids of
    /// `prompt_tuning_init_text` from the run's tokenizer.
    PromptTuning(PromptTuningConfig, Option<Vec<u32>>),
    /// A bottleneck adapter (AdapterHub `BnConfig`), named `name` in its files.
    Bottleneck(BnConfig),
}

/// The AdapterHub adapter name the recipes give a bottleneck adapter.
pub const BOTTLENECK_NAME: &str = "imdb";

impl MethodConfig {
    /// Whether the method folds into the frozen base for evaluation (LoRA, DoRA, IA3: PEFT
    /// `merge_and_unload`); prefix, prompt and bottleneck adapters stay beside the model.
    pub fn mergeable(&self) -> bool {
        matches!(self, MethodConfig::Lora(_) | MethodConfig::Ia3(_))
    }
}

/// The method config of `opts.method` for a model whose linear layers are `names`:
/// - `lora` / `dora`: `lora` (from [`crate::lora_config`]), with `use_dora` for DoRA;
/// - `ia3`: the layers `lora` targets get `ia3_l` (as one regex of their names: PEFT's
///   `IA3Config` has no `layers_to_transform`), those ending in the family's feed-forward
///   output (`down_proj`, `mlp.c_proj`) scaling their input; `modules_to_save` and task type
///   as `lora`'s;
/// - `prefix-tuning`: `--num-virtual-tokens`, `--prefix-projection`, `--encoder-hidden-size`
///   (the rest from the model when the model is wrapped);
/// - `prompt-tuning`: `--num-virtual-tokens`, `--prompt-tuning-init` (TEXT: the tokens of
///   `--prompt-tuning-init-text` from `encode`);
/// - `bottleneck`: AdapterHub's `seq_bn` / `double_seq_bn` preset with
///   `--reduction-factor`, `--non-linearity`, and the layers outside `--layers` in `leave_out`.
///
/// # Errors
/// The matching errors of `lora`'s targets; a `--layers` selection naming no layer; the
/// tokenizer's errors.
pub fn method_config(
    opts: &FinetuneOptions,
    lora: LoraConfig,
    names: &[String],
    n_layers: usize,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, AnyError>,
) -> Result<MethodConfig, AnyError> {
    let task_type = Some(match opts.task {
        Task::Classify => "SEQ_CLS".to_string(),
        Task::CausalLm => "CAUSAL_LM".to_string(),
    });
    Ok(match opts.method {
        Method::Lora => MethodConfig::Lora(lora),
        Method::Dora => {
            let mut c = lora;
            c.use_dora = true;
            c.validate()?;
            MethodConfig::Lora(c)
        }
        Method::Ia3 => {
            let mut all = names.to_vec();
            if opts.task == Task::Classify {
                all.push("score".into());
            }
            let plan = resolve_targets(&all, &lora)?;
            let targets = plan.target_names();
            let ff: Vec<String> = targets
                .iter()
                .filter(|n| n.ends_with("down_proj") || n.ends_with("mlp.c_proj"))
                .cloned()
                .collect();
            let alternation = |v: &[String]| {
                let parts: Vec<String> = v.iter().map(|n| regex::escape(n)).collect();
                format!("({})", parts.join("|"))
            };
            let mut c = IA3Config::new(&[], &[]);
            c.target_modules = Some(TargetModules::Pattern(alternation(&targets)));
            c.feedforward_modules = Some(TargetModules::Pattern(alternation(&ff)));
            c.modules_to_save = lora.modules_to_save.clone();
            c.task_type = task_type;
            c.base_model_name_or_path = lora.base_model_name_or_path.clone();
            c.validate()?;
            MethodConfig::Ia3(c)
        }
        Method::PrefixTuning => {
            let mut c = PrefixTuningConfig::new(opts.num_virtual_tokens);
            c.prefix_projection = opts.prefix_projection;
            c.encoder_hidden_size = opts.encoder_hidden_size;
            c.task_type = task_type;
            c.base_model_name_or_path = lora.base_model_name_or_path.clone();
            MethodConfig::PrefixTuning(c)
        }
        Method::PromptTuning => {
            let mut c = PromptTuningConfig::new(opts.num_virtual_tokens);
            c.task_type = task_type;
            c.base_model_name_or_path = lora.base_model_name_or_path.clone();
            let ids = match opts.prompt_tuning_init {
                PromptInit::Random => None,
                PromptInit::Text => {
                    c.prompt_tuning_init_text = Some(opts.prompt_tuning_init_text.clone());
                    c.tokenizer_name_or_path = lora.base_model_name_or_path.clone();
                    Some(encode(&opts.prompt_tuning_init_text)?)
                }
            };
            MethodConfig::PromptTuning(c, ids)
        }
        Method::Bottleneck => {
            let mut c = match opts.bn_config {
                BnArchitecture::SeqBn => BnConfig::seq_bn(),
                BnArchitecture::DoubleSeqBn => BnConfig::double_seq_bn(),
            };
            let rf = serde_json::Number::from_f64(opts.reduction_factor)
                .ok_or("--reduction-factor must be a finite number")?;
            c.reduction_factor = ReductionFactor::Scalar(rf);
            if let Some(a) = &opts.non_linearity {
                c.non_linearity = a.clone();
            }
            let keep = crate::config::selected_layers(&opts.layers, n_layers)?;
            c.leave_out = (0..n_layers).filter(|l| !keep.contains(l)).collect();
            c.validate(true)?;
            MethodConfig::Bottleneck(c)
        }
    })
}

/// Wraps `model` for a prompt-learning method (PEFT `get_peft_model` for prefix and prompt
/// tuning); `None` for the other methods, which attach to the layers instead ([`attach`]).
///
/// # Errors
/// The prompt-learning configs' errors (a prefix that does not fit the model, TEXT init ids
/// outside the vocabulary).
pub fn wrap_prompt_learning<B: Backend, M: LanguageModel<B> + burn::module::ModuleDisplay>(
    model: M,
    cfg: &MethodConfig,
    device: &B::Device,
) -> Result<Result<PeftModel<B, M>, M>, AnyError> {
    use lora_peft::AdapterConfig;
    Ok(Ok(match cfg {
        MethodConfig::PrefixTuning(c) => {
            PeftModel::get_peft_model(model, AdapterConfig::PrefixTuning(c.clone()), device)?
        }
        MethodConfig::PromptTuning(c, Some(ids)) => {
            PeftModel::prompt_tuning_from_text(model, c.clone(), ids, device)?
        }
        MethodConfig::PromptTuning(c, None) => {
            PeftModel::get_peft_model(model, AdapterConfig::PromptTuning(c.clone()), device)?
        }
        _ => return Ok(Err(model)),
    }))
}

/// Attaches fresh adapters of a per-layer method to `model` (PEFT `inject_adapter`,
/// AdapterHub `add_adapter`); a prompt-learning method was attached by
/// [`wrap_prompt_learning`]. A classifier head `score` trains fully with every method (PEFT
/// `modules_to_save` for `SEQ_CLS`; the LoRA and IA3 configs name it, the others get it here,
/// as PEFT's `PeftModelForSequenceClassification` and AdapterHub's trainable head do). Returns
/// a line saying what was attached.
///
/// # Errors
/// The method's config and matching errors.
pub fn attach<B: Backend, M: NamedLinears<B> + BottleneckLayers<B>>(
    model: &mut M,
    cfg: &MethodConfig,
    device: &B::Device,
) -> Result<String, AnyError> {
    Ok(match cfg {
        MethodConfig::Lora(c) => {
            let n = apply_lora(model, c, device)?.len();
            let kind = if c.use_dora { "DoRA" } else { "LoRA" };
            format!(
                "{kind} on {n} layers (r={}, lora_alpha={}, dropout={})",
                c.r, c.lora_alpha, c.lora_dropout
            )
        }
        MethodConfig::Ia3(c) => format!("IA3 on {} layers", apply_ia3(model, c, device)?.len()),
        _ => {
            model.visit_linears_mut(&mut |n, l| {
                if n == "score" {
                    l.set_base_trainable(true);
                }
            });
            describe_other(model, cfg, device)?
        }
    })
}

/// [`attach`] for the methods without `modules_to_save` in their config.
fn describe_other<B: Backend, M: BottleneckLayers<B>>(
    model: &mut M,
    cfg: &MethodConfig,
    device: &B::Device,
) -> Result<String, AnyError> {
    Ok(match cfg {
        MethodConfig::PrefixTuning(c) => format!(
            "prefix tuning: {} virtual tokens{}",
            c.num_virtual_tokens,
            if c.prefix_projection {
                " (with projection)"
            } else {
                ""
            }
        ),
        MethodConfig::PromptTuning(c, ids) => format!(
            "prompt tuning: {} virtual tokens ({} init)",
            c.num_virtual_tokens,
            if ids.is_some() { "TEXT" } else { "RANDOM" }
        ),
        MethodConfig::Bottleneck(c) => {
            let slots = add_bottleneck(model, c, device)?;
            format!("bottleneck adapters in {} slots", slots.len())
        }
        MethodConfig::Lora(_) | MethodConfig::Ia3(_) => String::new(),
    })
}

/// A prompt-learning wrapper's save, seen from the recipes' generic model type: `Some` for a
/// [`PeftModel`] with a prompt learner, `None` for a bare model.
pub trait SavePromptLearning {
    /// Writes the prompt learner's PEFT directory (`adapter_config.json` +
    /// `adapter_model.safetensors` with `prompt_embeddings`), when the model has one.
    fn save_prompt_learning(&self, dir: &Path) -> Option<Result<(), AnyError>>;
}

impl<B: Backend, M: LanguageModel<B> + burn::module::ModuleDisplay> SavePromptLearning
    for PeftModel<B, M>
{
    fn save_prompt_learning(&self, dir: &Path) -> Option<Result<(), AnyError>> {
        Some(self.save_pretrained(dir).map_err(Into::into))
    }
}

impl<B: Backend> SavePromptLearning for lora_models::gpt2::Gpt2<B> {
    fn save_prompt_learning(&self, _: &Path) -> Option<Result<(), AnyError>> {
        None
    }
}

impl<B: Backend> SavePromptLearning for lora_models::llama::Llama<B> {
    fn save_prompt_learning(&self, _: &Path) -> Option<Result<(), AnyError>> {
        None
    }
}

/// Saves the method's adapter to `dir` in its library's format: PEFT's directory for LoRA,
/// DoRA, IA3 (from `whole`, the model with its `modules_to_save` layers, e.g. a classifier)
/// and prefix / prompt tuning (from `inner`, the wrapped language model), with the classifier
/// head `head` `[hidden, num_labels]` added as PEFT's `base_model.score.weight`; AdapterHub's
/// directory for a bottleneck adapter, with the head in `dir/score.safetensors` (`score.weight`,
/// `[num_labels, hidden]`), since AdapterHub keeps the transformers head outside its files.
/// `model_name` is recorded as the base model's name or path.
///
/// # Errors
/// The savers' errors; I/O errors naming the file.
pub fn save_method<B, W, I>(
    whole: &W,
    inner: &I,
    cfg: &MethodConfig,
    head: Option<Tensor<B, 2>>,
    model_name: Option<&str>,
    dir: &Path,
) -> Result<(), AnyError>
where
    B: Backend,
    W: NamedLinears<B> + BottleneckLayers<B>,
    I: SavePromptLearning,
{
    match cfg {
        MethodConfig::Lora(c) => save_adapter(whole, c, dir)?,
        MethodConfig::Ia3(c) => save_ia3(whole, c, dir)?,
        MethodConfig::PrefixTuning(_) | MethodConfig::PromptTuning(..) => {
            inner
                .save_prompt_learning(dir)
                .ok_or("prompt learning: the model has no prompt learner to save")??;
            if let Some(h) = head {
                add_head(
                    &dir.join(lora_peft::WEIGHTS_NAME),
                    "base_model.score.weight",
                    h,
                )?;
            }
        }
        MethodConfig::Bottleneck(c) => {
            let hub = BnAdapterConfig::new(whole, c.clone(), BOTTLENECK_NAME, model_name);
            save_bottleneck(whole, &hub, dir)?;
            if let Some(h) = head {
                let t = head_tensor(h)?;
                write_safetensors(
                    dir.join("score.safetensors"),
                    &[("score.weight".into(), t)],
                    None,
                )?;
            }
        }
    }
    Ok(())
}

/// `[hidden, num_labels]` → the `[num_labels, hidden]` F32 tensor PyTorch stores.
fn head_tensor<B: Backend>(h: Tensor<B, 2>) -> Result<StTensor, AnyError> {
    let t = h.transpose();
    let [r, c] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("score head: {e:?}"))?;
    Ok(StTensor::f32(vec![r, c], &v))
}

/// Rewrites the safetensors file `path` with the tensor `key` added (PEFT keeps the
/// `modules_to_save` head of a prompt-learning classifier beside `prompt_embeddings`).
fn add_head<B: Backend>(path: &Path, key: &str, h: Tensor<B, 2>) -> Result<(), AnyError> {
    let bytes = lora_io::read_regular_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tensors: Vec<(String, StTensor)> = Vec::new();
    for (name, view) in st.tensors() {
        let values = lora_io::f32_values(&view)
            .ok_or_else(|| format!("{}: tensor {name} is not a float tensor", path.display()))?;
        tensors.push((
            name.to_string(),
            StTensor::f32(view.shape().to_vec(), &values),
        ));
    }
    tensors.push((key.into(), head_tensor(h)?));
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(path, &tensors, Some(meta))?;
    Ok(())
}
