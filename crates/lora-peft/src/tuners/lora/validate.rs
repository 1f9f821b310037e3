//! [`LoraConfig::validate`]: PEFT's `LoraConfig.__post_init__` checks, and the refusal of what
//! this crate does not implement (`lora_bias`, PiSSA-style inits, QALoRA, aLoRA...).
use super::LoraConfig;
use crate::config_types::TargetModules;
use crate::patterns::{
    fullmatch_regex, layer_index_regexes, modules_to_save_regex, pattern_key_regex,
};
use crate::PeftError;
use serde_json::Value;

/// Fields PEFT writes that switch on a LoRA variant or feature this crate does not implement:
/// any value other than `null`, `false`, `{}` or `[]` is refused by [`LoraConfig::validate`].
const UNSUPPORTED_EXTRA: &[(&str, &str)] = &[
    ("use_qalora", "QA-LoRA"),
    ("target_parameters", "LoRA on nn.Parameter targets"),
    ("trainable_token_indices", "trainable tokens"),
    ("layer_replication", "layer replication"),
    ("alora_invocation_tokens", "aLoRA"),
    ("arrow_config", "Arrow routing"),
    ("use_bdlora", "block-diagonal LoRA"),
    ("velora_config", "VeLoRA"),
    ("monteclora_config", "MonteCLoRA"),
    ("kasa_config", "KaSA"),
    ("megatron_config", "Megatron-LM parallel layers"),
];

fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

impl LoraConfig {
    /// Checks every field as PEFT does and refuses what this crate does not implement.
    ///
    /// # Errors
    /// [`PeftError::Config`] naming the field and value: `peft_type` not `"LORA"`, `r = 0`,
    /// non-finite `lora_alpha`, `lora_dropout` outside `[0, 1)`, unknown `bias`, a regex
    /// `target_modules` together with `layers_to_transform`/`layers_pattern`, `layers_pattern`
    /// without `layers_to_transform`, `"all-linear"` with `layers_to_transform`, zero ranks in
    /// `rank_pattern`, `lora_bias` with `use_dora` (PEFT's own refusal).
    /// [`PeftError::Unsupported`]: `bias` `"all"`/`"lora_only"`, `lora_bias = true`,
    /// `init_lora_weights` `"pissa"`/`"olora"`/`"loftq"`/..., and the variant fields listed in
    /// `UNSUPPORTED_EXTRA`.
    /// [`PeftError::Regex`]: a pattern that does not compile.
    pub fn validate(&self) -> Result<(), PeftError> {
        let cfg = |field: &str, value: String, msg: &str| PeftError::Config {
            field: field.into(),
            value,
            msg: msg.into(),
        };
        if self.peft_type != "LORA" {
            return Err(cfg(
                "peft_type",
                format!("{:?}", self.peft_type),
                "expected \"LORA\" here (a LoRA or DoRA adapter; `load_adapters` and `logits --merge` take the other methods)",
            ));
        }
        if self.r == 0 {
            return Err(cfg("r", "0".into(), "r must be a positive integer"));
        }
        if !self.lora_alpha.is_finite() {
            return Err(cfg(
                "lora_alpha",
                self.lora_alpha.to_string(),
                "expected a finite number",
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(cfg(
                "lora_dropout",
                self.lora_dropout.to_string(),
                "expected a probability in [0, 1)",
            ));
        }
        match self.bias.as_str() {
            "none" => {}
            "all" | "lora_only" => {
                return Err(PeftError::Unsupported {
                    field: "bias".into(),
                    value: format!("{:?}", self.bias),
                    msg: "only \"none\" is implemented".into(),
                })
            }
            other => {
                return Err(cfg(
                    "bias",
                    format!("{other:?}"),
                    "expected \"none\", \"all\" or \"lora_only\"",
                ))
            }
        }
        if self.use_dora && self.lora_bias {
            // PEFT's own ValueError.
            return Err(cfg(
                "lora_bias",
                "true".into(),
                "lora_bias=True is not supported for DoRA (use_dora = true)",
            ));
        }
        if self.lora_bias {
            return Err(PeftError::Unsupported {
                field: "lora_bias".into(),
                value: "true".into(),
                msg: String::new(),
            });
        }
        self.init_lora_weights.to_lora_init()?;
        for (key, what) in UNSUPPORTED_EXTRA {
            if let Some(v) = self.extra.get(*key) {
                if !is_off(v) {
                    return Err(PeftError::Unsupported {
                        field: (*key).into(),
                        value: v.to_string(),
                        msg: (*what).into(),
                    });
                }
            }
        }
        // PEFT LoraConfig.__post_init__ consistency rules.
        if let Some(TargetModules::Pattern(p)) = &self.target_modules {
            if let Some(l) = &self.layers_to_transform {
                return Err(cfg(
                    "layers_to_transform",
                    serde_json::to_string(l).unwrap_or_default(),
                    &format!("cannot be used when target_modules is a string ({p:?})"),
                ));
            }
            if let Some(l) = &self.layers_pattern {
                return Err(cfg(
                    "layers_pattern",
                    serde_json::to_string(l).unwrap_or_default(),
                    &format!("cannot be used when target_modules is a string ({p:?})"),
                ));
            }
        }
        if let Some(lp) = &self.layers_pattern {
            let nonempty = !lp.as_vec().iter().all(|s| s.is_empty());
            if nonempty && self.layers_to_transform.is_none() {
                return Err(cfg(
                    "layers_pattern",
                    serde_json::to_string(lp).unwrap_or_default(),
                    "layers_to_transform must also be specified",
                ));
            }
        }
        for (k, r) in self.rank_pattern.iter() {
            if *r == 0 {
                return Err(cfg(
                    "rank_pattern",
                    format!("{{{k:?}: 0}}"),
                    "ranks must be positive integers",
                ));
            }
            pattern_key_regex("rank_pattern", k)?;
        }
        for (k, a) in self.alpha_pattern.iter() {
            if !a.is_finite() {
                return Err(cfg(
                    "alpha_pattern",
                    format!("{{{k:?}: {a}}}"),
                    "expected a finite number",
                ));
            }
            pattern_key_regex("alpha_pattern", k)?;
        }
        for (field, t) in [
            ("target_modules", &self.target_modules),
            ("exclude_modules", &self.exclude_modules),
        ] {
            if let Some(TargetModules::Pattern(p)) = t {
                if !(field == "target_modules" && t.as_ref().is_some_and(|t| t.is_all_linear())) {
                    fullmatch_regex(field, p)?;
                }
            }
        }
        for m in self.modules_to_save.iter().flatten() {
            modules_to_save_regex(m)?;
        }
        layer_index_regexes(self.layers_pattern.as_ref())?;
        Ok(())
    }
}
