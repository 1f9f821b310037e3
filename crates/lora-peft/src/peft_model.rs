//! [`PeftModel`]: a language model with its PEFT method, whatever the method (PEFT
//! `peft/peft_model.py`, `PeftModel` / `PeftModelForCausalLM`).
//!
//! Per-layer methods (LoRA) live inside the model's linear layers; prompt-learning methods
//! (prefix tuning, prompt tuning) live beside it, in [`PeftModel::prompt_encoder`], and reach the
//! model through the [`LanguageModel`] seam: a prefix is the key/value cache every forward pass
//! starts from ([`LanguageModel::new_cache`]), a prompt is put before the input embeddings
//! ([`LanguageModel::input_embeds`]). Everything written against [`LanguageModel`]
//! (classification with `lora_models::classify::SequenceClassifier`, training, generation)
//! works on a [`PeftModel`] unchanged.
//!
//! Adding a method: a `PeftType` arm in [`PeftModel::from_pretrained`],
//! [`PeftModel::get_peft_model`] and [`PeftModel::save_pretrained`] (and a [`PromptLearner`]
//! variant for a prompt-learning method).
use crate::adapter_dir::{read_config_text, CONFIG_NAME};
use crate::tuners::prefix_tuning::{load_prefix_tuning, save_prefix_tuning, PrefixEncoder};
use crate::tuners::prompt_tuning::{
    load_prompt_tuning, save_prompt_tuning, PromptEmbedding, PromptTuningConfig, PromptTuningInit,
};
use crate::tuners::{peft_type_of, AdapterConfig, PeftType};
use crate::PeftError;
use burn::module::{Module, ModuleDisplay};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use lora_core::{LoraLinear, NamedLinears};
use lora_models::{AttentionShape, KvCache, LanguageModel};
use std::path::Path;

/// The trainable part of a prompt-learning method (PEFT `PeftModel.prompt_encoder`).
// One learner per model: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PromptLearner<B: Backend> {
    /// Prefix tuning: the prefix key/values of every attention layer.
    PrefixTuning(PrefixEncoder<B>),
    /// Prompt tuning: virtual input embeddings.
    PromptTuning(PromptEmbedding<B>),
}

impl<B: Backend> PromptLearner<B> {
    /// Virtual tokens `V`.
    pub fn num_virtual_tokens(&self) -> usize {
        match self {
            PromptLearner::PrefixTuning(e) => e.num_virtual_tokens(),
            PromptLearner::PromptTuning(p) => p.num_virtual_tokens(),
        }
    }
}

/// A language model `M` with its PEFT method: LoRA adapters inside its layers, or a prompt
/// learner beside it (PEFT `PeftModel`). Implements [`LanguageModel`] and [`NamedLinears`].
///
/// With a prompt learner, the base model's parameters are frozen and only the learner trains
/// (PEFT `_setup_prompt_encoder`). Logits and hidden states are those of the real tokens only
/// (PEFT's prompt-tuning forward also returns the virtual positions; they are dropped here).
#[derive(Module, Debug)]
pub struct PeftModel<B: Backend, M: Module<B>> {
    /// The wrapped model (PEFT `base_model`); LoRA adapters live in its linear layers.
    pub base_model: M,
    /// The prompt learner of a prompt-learning method (PEFT `prompt_encoder["default"]`).
    pub prompt_encoder: Option<PromptLearner<B>>,
    /// The method's config, as saved by [`PeftModel::save_pretrained`]; `None` for a bare model.
    #[module(skip)]
    peft_config: Option<AdapterConfig>,
}

fn mem_path() -> &'static Path {
    Path::new("<config>")
}

impl<B: Backend, M: LanguageModel<B>> PeftModel<B, M> {
    /// A model without a PEFT method (forward = the base model's).
    pub fn new(base_model: M) -> Self {
        Self {
            base_model,
            prompt_encoder: None,
            peft_config: None,
        }
    }

    /// Adds a fresh adapter of `config`'s method (PEFT `get_peft_model`): LoRA adapters injected
    /// into the layers ([`crate::apply_lora`]); a prefix ([`PrefixEncoder::new`]) or a prompt
    /// (`RANDOM`: N(0, 1); `SAMPLE_VOCAB`: word-embedding rows of random ids) beside the model,
    /// whose config is first completed from the model (`prepare`) and checked against it. Draws
    /// use the backend's generator.
    ///
    /// # Errors
    /// LoRA's config and matching errors; the prompt-learning configs' [`PeftError::Config`],
    /// [`PeftError::Unsupported`], [`PeftError::ModelMismatch`]; [`PeftError::Config`] for
    /// `prompt_tuning_init = "TEXT"` (the token ids come from the caller's tokenizer: use
    /// [`PeftModel::prompt_tuning_from_text`]).
    pub fn get_peft_model(
        mut base_model: M,
        config: AdapterConfig,
        device: &B::Device,
    ) -> Result<Self, PeftError> {
        match config {
            c @ (AdapterConfig::Lora(_) | AdapterConfig::Ia3(_)) => {
                crate::tuners::inject(&mut base_model, &c, device)?;
                Ok(Self {
                    base_model,
                    prompt_encoder: None,
                    peft_config: Some(c),
                })
            }
            AdapterConfig::PrefixTuning(mut c) => {
                c.prepare(base_model.attention_shape());
                let g = c.check_model(base_model.attention_shape(), mem_path())?;
                let zero = c.init_weights.as_deref() == Some("zero");
                let enc = PrefixEncoder::new(&g, zero, device);
                Ok(Self::prompt_learning(
                    base_model,
                    PromptLearner::PrefixTuning(enc),
                    AdapterConfig::PrefixTuning(c),
                ))
            }
            AdapterConfig::PromptTuning(mut c) => {
                let (v, d) = prepare_prompt(&base_model, &mut c)?;
                let p = match c.prompt_tuning_init {
                    PromptTuningInit::Random => PromptEmbedding::random(v, d, device),
                    PromptTuningInit::SampleVocab => {
                        PromptEmbedding::sample_vocab(&base_model, v, device)
                    }
                    PromptTuningInit::Text => {
                        return Err(PeftError::Config {
                            field: "prompt_tuning_init".into(),
                            value: "\"TEXT\"".into(),
                            msg: "TEXT init needs the init text's token ids: use \
                                  PeftModel::prompt_tuning_from_text"
                                .into(),
                        })
                    }
                };
                Ok(Self::prompt_learning(
                    base_model,
                    PromptLearner::PromptTuning(p),
                    AdapterConfig::PromptTuning(c),
                ))
            }
        }
    }

    /// Prompt tuning with `TEXT` init (PEFT `PromptEmbedding.__init__`): the prompt is the
    /// word-embedding rows of `init_token_ids` (the caller's tokenization of
    /// `prompt_tuning_init_text`, special tokens included as PEFT's `tokenizer(text)` adds
    /// them), repeated or cut to `num_virtual_tokens`. `config.prompt_tuning_init` is set to
    /// `TEXT`.
    ///
    /// # Errors
    /// As [`PromptTuningConfig::check_model`] (`prompt_tuning_init_text` and
    /// `tokenizer_name_or_path` are required, as in PEFT); [`PeftError::Config`] when
    /// `init_token_ids` is empty or holds an id outside the vocabulary.
    pub fn prompt_tuning_from_text(
        base_model: M,
        mut config: PromptTuningConfig,
        init_token_ids: &[u32],
        device: &B::Device,
    ) -> Result<Self, PeftError> {
        config.prompt_tuning_init = PromptTuningInit::Text;
        let (v, _) = prepare_prompt(&base_model, &mut config)?;
        let p = PromptEmbedding::from_token_ids(&base_model, init_token_ids, v, device)?;
        Ok(Self::prompt_learning(
            base_model,
            PromptLearner::PromptTuning(p),
            AdapterConfig::PromptTuning(config),
        ))
    }

    /// Wraps `base_model` with a given prompt learner and its config (completed from the
    /// model and checked; e.g. a [`PrefixEncoder::with_projection`] built from PEFT's encoder
    /// weights).
    ///
    /// # Errors
    /// [`PeftError::State`] when `config`'s method is not `learner`'s or the learner's shape
    /// differs from the config's; the config's errors as in [`PeftModel::get_peft_model`].
    pub fn with_prompt_learner(
        base_model: M,
        learner: PromptLearner<B>,
        config: AdapterConfig,
    ) -> Result<Self, PeftError> {
        let config = match (&learner, config) {
            (PromptLearner::PrefixTuning(e), AdapterConfig::PrefixTuning(mut c)) => {
                c.prepare(base_model.attention_shape());
                let g = c.check_model(base_model.attention_shape(), mem_path())?;
                let got = e.prompt_embeddings().dims();
                if e.num_virtual_tokens() != g.num_virtual_tokens || got[1] != g.flat_dim() {
                    return Err(PeftError::State(format!(
                        "the prefix encoder gives a prefix of shape {got:?}, the config implies \
                         [{}, {}]",
                        g.num_virtual_tokens,
                        g.flat_dim()
                    )));
                }
                AdapterConfig::PrefixTuning(c)
            }
            (PromptLearner::PromptTuning(p), AdapterConfig::PromptTuning(mut c)) => {
                let (v, d) = prepare_prompt(&base_model, &mut c)?;
                let got = p.embedding.dims();
                if got != [v, d] {
                    return Err(PeftError::State(format!(
                        "the prompt embedding has shape {got:?}, the config implies [{v}, {d}]"
                    )));
                }
                AdapterConfig::PromptTuning(c)
            }
            (_, c) => {
                return Err(PeftError::State(format!(
                    "a config of peft_type {} does not describe this prompt learner",
                    c.peft_type()
                )))
            }
        };
        Ok(Self::prompt_learning(base_model, learner, config))
    }

    /// The base model frozen (PEFT `_setup_prompt_encoder`) with the learner beside it.
    fn prompt_learning(base_model: M, learner: PromptLearner<B>, config: AdapterConfig) -> Self {
        Self {
            base_model: base_model.no_grad(),
            prompt_encoder: Some(learner),
            peft_config: Some(config),
        }
    }

    /// Loads a PEFT adapter directory onto `base_model` (PEFT `PeftModel.from_pretrained`),
    /// routing on `adapter_config.json`'s `peft_type`: `LORA` ([`crate::load_adapter`]),
    /// `PREFIX_TUNING` ([`load_prefix_tuning`]; also a `prefix_projection` adapter, whose file
    /// holds the projected prefix, which is then trained directly) or `PROMPT_TUNING`
    /// ([`load_prompt_tuning`]). A loaded prompt learner is trainable.
    ///
    /// # Errors
    /// [`PeftError::Io`] / [`PeftError::Json`] for the config; [`PeftError::UnsupportedPeftType`]
    /// (file, key, value and the accepted values) for a `peft_type` not implemented, before the
    /// weights are read; then the method's loader's errors, among them
    /// [`PeftError::ModelMismatch`] for a prefix whose `num_layers`, `num_attention_heads` or
    /// `token_dim` (or a prompt whose `token_dim`) does not fit the model, and
    /// [`PeftError::Shape`] for a `prompt_embeddings` tensor of the wrong shape.
    pub fn from_pretrained(
        mut base_model: M,
        dir: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<Self, PeftError> {
        let dir = dir.as_ref();
        let (path, text) = read_config_text(&dir.join(CONFIG_NAME))?;
        match peft_type_of(&text, &path)? {
            PeftType::Lora | PeftType::Ia3 => {
                let c = crate::tuners::load(&mut base_model, dir, device)?;
                Ok(Self {
                    base_model,
                    prompt_encoder: None,
                    peft_config: Some(c),
                })
            }
            PeftType::PrefixTuning => {
                let (e, c) = load_prefix_tuning(dir, base_model.attention_shape(), device)?;
                Ok(Self::prompt_learning(
                    base_model,
                    PromptLearner::PrefixTuning(e),
                    AdapterConfig::PrefixTuning(c),
                ))
            }
            PeftType::PromptTuning => {
                let s = base_model.attention_shape();
                let h = base_model.hidden_size();
                let (p, c) = load_prompt_tuning(dir, h, s.num_layers, s.num_heads, device)?;
                Ok(Self::prompt_learning(
                    base_model,
                    PromptLearner::PromptTuning(p),
                    AdapterConfig::PromptTuning(c),
                ))
            }
        }
    }

    /// Writes the adapter as a PEFT adapter directory (PEFT `save_pretrained`):
    /// `dir/adapter_config.json` and `dir/adapter_model.safetensors`, through the method's saver
    /// ([`crate::tuners::save`], [`save_prefix_tuning`], [`save_prompt_tuning`]).
    ///
    /// # Errors
    /// [`PeftError::State`] for a model without a method, or a learner that does not match the
    /// config; the savers' errors ([`PeftError::Write`], ...).
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<(), PeftError> {
        let dir = dir.as_ref();
        match (&self.peft_config, &self.prompt_encoder) {
            (Some(c @ (AdapterConfig::Lora(_) | AdapterConfig::Ia3(_))), None) => {
                crate::tuners::save(&self.base_model, c, dir)
            }
            (Some(AdapterConfig::PrefixTuning(c)), Some(PromptLearner::PrefixTuning(e))) => {
                save_prefix_tuning(e, c, dir)
            }
            (Some(AdapterConfig::PromptTuning(c)), Some(PromptLearner::PromptTuning(p))) => {
                save_prompt_tuning(p, c, dir)
            }
            (None, _) => Err(PeftError::State(
                "save_pretrained: the model has no PEFT method (use get_peft_model or \
                 from_pretrained first)"
                    .into(),
            )),
            (Some(c), _) => Err(PeftError::State(format!(
                "save_pretrained: the prompt learner does not match peft_type {}",
                c.peft_type()
            ))),
        }
    }

    /// The method's config (completed from the model for prompt-learning methods); `None`
    /// for a bare model.
    pub fn peft_config(&self) -> Option<&AdapterConfig> {
        self.peft_config.as_ref()
    }

    /// The method, if any.
    pub fn peft_type(&self) -> Option<PeftType> {
        self.peft_config.as_ref().map(AdapterConfig::peft_type)
    }

    /// The base model, without the prompt learner (LoRA adapters stay in its layers).
    pub fn into_base_model(self) -> M {
        self.base_model
    }
}

/// Completes a prompt-tuning config from the model and checks it; `(V, token_dim)`.
fn prepare_prompt<B: Backend, M: LanguageModel<B>>(
    model: &M,
    c: &mut PromptTuningConfig,
) -> Result<(usize, usize), PeftError> {
    let s = model.attention_shape();
    c.prepare(model.hidden_size(), s.num_layers, s.num_heads);
    c.check_model(model.hidden_size(), mem_path())
}

impl<B: Backend, M: Module<B> + NamedLinears<B>> NamedLinears<B> for PeftModel<B, M> {
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        self.base_model.visit_linears(f)
    }
    fn visit_linears_mut(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        self.base_model.visit_linears_mut(f)
    }
}

impl<B: Backend, M: LanguageModel<B> + ModuleDisplay> LanguageModel<B> for PeftModel<B, M> {
    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.base_model.embed(input_ids)
    }

    fn forward_cached(&self, embeds: Tensor<B, 3>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        self.base_model.forward_cached(embeds, cache)
    }

    fn attention_shape(&self) -> AttentionShape {
        self.base_model.attention_shape()
    }

    /// The prefix (PEFT `get_prompt`) for prefix tuning; the base model's cache otherwise.
    fn new_cache(&self, batch: usize) -> KvCache<B> {
        match &self.prompt_encoder {
            Some(PromptLearner::PrefixTuning(e)) => e.past_key_values(batch),
            _ => self.base_model.new_cache(batch),
        }
    }

    fn num_virtual_tokens(&self) -> usize {
        match &self.prompt_encoder {
            Some(PromptLearner::PromptTuning(p)) => p.num_virtual_tokens(),
            _ => self.base_model.num_virtual_tokens(),
        }
    }

    /// For prompt tuning, the prompt `[batch, V, hidden]` then the real tokens' embeddings
    /// (PEFT `PeftModelForCausalLM.forward`: `cat((prompts, inputs_embeds), dim=1)`).
    fn input_embeds(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        match &self.prompt_encoder {
            Some(PromptLearner::PromptTuning(p)) => {
                let b = input_ids.dims()[0];
                Tensor::cat(
                    vec![p.forward(b), self.base_model.input_embeds(input_ids)],
                    1,
                )
            }
            _ => self.base_model.input_embeds(input_ids),
        }
    }

    fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.base_model.lm_logits(hidden)
    }

    fn lm_head_weight(&self) -> Option<Tensor<B, 2>> {
        self.base_model.lm_head_weight()
    }

    fn output_embedding_rows(&self, ids: &[u32]) -> Tensor<B, 2> {
        self.base_model.output_embedding_rows(ids)
    }

    fn hidden_size(&self) -> usize {
        self.base_model.hidden_size()
    }

    fn vocab_size(&self) -> usize {
        self.base_model.vocab_size()
    }

    /// The base model's limit less the virtual tokens, which take positions first.
    fn max_positions(&self) -> Option<usize> {
        let v = self
            .prompt_encoder
            .as_ref()
            .map_or(0, PromptLearner::num_virtual_tokens);
        self.base_model.max_positions().map(|n| n.saturating_sub(v))
    }
}

/// The wrapped model's bottleneck slots.
impl<B: Backend, M: Module<B> + lora_core::BottleneckLayers<B>> lora_core::BottleneckLayers<B>
    for PeftModel<B, M>
{
    fn num_layers(&self) -> usize {
        self.base_model.num_layers()
    }
    fn hidden_size(&self) -> usize {
        lora_core::BottleneckLayers::hidden_size(&self.base_model)
    }
    fn layer_name(&self, layer: usize) -> String {
        self.base_model.layer_name(layer)
    }
    fn model_type(&self) -> &'static str {
        self.base_model.model_type()
    }
    fn model_class(&self) -> &'static str {
        self.base_model.model_class()
    }
    fn bottleneck(
        &self,
        layer: usize,
        location: lora_core::BottleneckLocation,
    ) -> Option<&lora_core::BottleneckAdapter<B>> {
        self.base_model.bottleneck(layer, location)
    }
    fn set_bottleneck(
        &mut self,
        layer: usize,
        location: lora_core::BottleneckLocation,
        adapter: Option<lora_core::BottleneckAdapter<B>>,
    ) -> Result<Option<lora_core::BottleneckAdapter<B>>, lora_core::LoraError> {
        self.base_model.set_bottleneck(layer, location, adapter)
    }
}
