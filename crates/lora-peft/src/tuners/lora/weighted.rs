//! A new LoRA adapter from a weighted combination of loaded ones (PEFT 0.21
//! `tuners/lora/model.py`: `add_weighted_adapter`, `_check_add_weighted_adapter`,
//! `_generalized_task_arithmetic_weighted_adapter`,
//! `_svd_generalized_task_arithmetic_weighted_adapter`).
//!
//! The new adapter's config is the first adapter's with `r = r'`, `lora_alpha = r'` (so its
//! scaling is 1, unless that config uses rsLoRA, whose `r'/√r'` PEFT keeps too), the union of
//! the target modules, and no rank or alpha patterns. On each layer it targets, only the
//! combined adapters present on that layer take part. With `wᵢ` the weights and `sᵢ` the
//! adapters' scalings (PEFT layout: `Aᵢ` `[rᵢ, d_in]`, `Bᵢ` `[d_out, rᵢ]`, `ΔW = s·B·A`):
//!
//! - `cat`: `r' = Σ rᵢ`; `A' = rows(wᵢ·sᵢ·Aᵢ)`, `B' = cols(Bᵢ)`, zero-padded to `r'` on layers
//!   where some adapter is absent. Exact: `B'·A' = Σ wᵢ·sᵢ·Bᵢ·Aᵢ`.
//! - `linear` (equal ranks): `r' = r`; `A' = Σ sign(wᵢsᵢ)·√|wᵢsᵢ|·Aᵢ`, `B' = Σ √|wᵢsᵢ|·Bᵢ`
//!   (the sign on `A` only); an approximation (cross terms), as in PEFT.
//! - `svd`: `r' = max rᵢ`; `ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ` truncated to its `r'` largest singular
//!   values, `B' = U_r'·S_r'`, `A' = V_r'ᵀ` (host f64, [`super::svd`]; PEFT uses
//!   `torch.linalg.svd` in f32). Singular vectors are unique only up to sign, so compare
//!   `B'·A'`.
//!
//! With one adapter PEFT always uses `linear`; so does this.
use super::svd::truncated_svd_of_product;
use super::LoraConfig;
use crate::adapter_dir::tensor_f32;
use crate::config_types::{PatternMap, TargetModules};
use crate::matching::resolve;
use crate::multi::NamedAdapters;
use crate::tuners::AdapterConfig;
use crate::PeftError;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lora_core::{LoraAdapter, LoraLinear, NamedLinears};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// How [`NamedAdapters::add_weighted_adapter`] combines adapters (PEFT `combination_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CombinationType {
    /// Concatenate the factors: exact, `r' = Σ rᵢ`.
    Cat,
    /// Weighted sums of the `A`s and of the `B`s: equal ranks only, approximate.
    Linear,
    /// Truncated SVD of the weighted sum of the updates, `r' = max rᵢ`.
    Svd,
}

/// PEFT's other combination types, refused as not implemented.
const OTHER_PEFT_TYPES: &[&str] = &[
    "ties",
    "ties_svd",
    "dare_ties",
    "dare_linear",
    "dare_ties_svd",
    "dare_linear_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
];

impl CombinationType {
    /// PEFT's name (`"cat"`, `"linear"`, `"svd"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cat => "cat",
            Self::Linear => "linear",
            Self::Svd => "svd",
        }
    }
}

impl fmt::Display for CombinationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CombinationType {
    type Err = PeftError;

    /// `"cat"`, `"linear"` or `"svd"`.
    ///
    /// # Errors
    /// [`PeftError::Unsupported`] for PEFT's TIES / DARE / magnitude-prune types,
    /// [`PeftError::Config`] for any other string.
    fn from_str(s: &str) -> Result<Self, PeftError> {
        match s {
            "cat" => Ok(Self::Cat),
            "linear" => Ok(Self::Linear),
            "svd" => Ok(Self::Svd),
            _ if OTHER_PEFT_TYPES.contains(&s) => Err(PeftError::Unsupported {
                field: "combination_type".into(),
                value: format!("{s:?}"),
                msg: "supported: \"cat\", \"linear\", \"svd\"".into(),
            }),
            _ => Err(PeftError::Config {
                field: "combination_type".into(),
                value: format!("{s:?}"),
                msg: "expected \"cat\", \"linear\" or \"svd\"".into(),
            }),
        }
    }
}

/// The new adapter's factors on one layer, in this crate's layout: `a` `[d_in, r']`,
/// `b` `[r', d_out]`.
type Factors<B> = (Tensor<B, 2>, Tensor<B, 2>);

impl<M> NamedAdapters<M> {
    /// Adds adapter `name` combining the LoRA `adapters` with `weights` (PEFT
    /// `add_weighted_adapter`; see the module docs for each [`CombinationType`]). The new
    /// adapter is not activated. Weights may be negative.
    ///
    /// # Errors
    /// [`PeftError::State`] for a bad or taken `name` (PEFT silently returns there), no
    /// adapters, a layer the new config targets that holds none of them, or a merged layer;
    /// [`PeftError::UnknownAdapter`]; [`PeftError::Config`] for `weights` of another length or
    /// not finite, unequal ranks with `linear` (field `r`), target modules mixing a list and a
    /// regex (field `target_modules`), an `svd` rank above a layer's `min(d_in, d_out)`;
    /// [`PeftError::Unsupported`] for a non-LoRA adapter or `target_modules` null or
    /// `"all-linear"`.
    pub fn add_weighted_adapter<B: Backend>(
        &mut self,
        adapters: &[&str],
        weights: &[f64],
        name: &str,
        combination: CombinationType,
    ) -> Result<(), PeftError>
    where
        M: NamedLinears<B>,
    {
        self.check_new_name(name)?;
        let cfg_err = |field: &str, value: String, msg: String| PeftError::Config {
            field: field.into(),
            value,
            msg,
        };
        if adapters.is_empty() {
            return Err(PeftError::State(
                "add_weighted_adapter: expected at least one adapter".into(),
            ));
        }
        if weights.len() != adapters.len() || weights.iter().any(|w| !w.is_finite()) {
            return Err(cfg_err(
                "weights",
                format!("{weights:?}"),
                format!(
                    "expected {} finite numbers, one per adapter",
                    adapters.len()
                ),
            ));
        }
        let mut configs: Vec<&LoraConfig> = Vec::new();
        for a in adapters {
            #[allow(irrefutable_let_patterns)]
            let AdapterConfig::Lora(c) = self.require(a)?
            else {
                return Err(PeftError::Unsupported {
                    field: "peft_type".into(),
                    value: format!("{:?}", self.require(a)?.peft_type().as_str()),
                    msg: format!("add_weighted_adapter combines LoRA adapters only ({a:?})"),
                });
            };
            configs.push(c);
        }
        let combination = if adapters.len() == 1 {
            CombinationType::Linear
        } else {
            combination
        };
        // PEFT sizes the new adapter by each config's largest rank (rank_pattern included).
        let ranks: Vec<usize> = configs
            .iter()
            .map(|c| c.rank_pattern.iter().map(|(_, r)| *r).fold(c.r, usize::max))
            .collect();
        let new_rank = match combination {
            CombinationType::Linear => {
                if ranks.iter().any(|&r| r != ranks[0]) {
                    return Err(cfg_err(
                        "r",
                        format!("{ranks:?}"),
                        format!(
                            "combination_type \"linear\" needs adapters of one rank ({adapters:?})"
                        ),
                    ));
                }
                ranks[0]
            }
            CombinationType::Cat => ranks.iter().sum(),
            CombinationType::Svd => ranks.iter().copied().max().unwrap_or(0),
        };
        let target_modules = union_targets(&configs, adapters)?;
        let new_config = LoraConfig {
            r: new_rank,
            lora_alpha: new_rank as f64,
            target_modules: Some(target_modules),
            rank_pattern: PatternMap::default(),
            alpha_pattern: PatternMap::default(),
            ..configs[0].clone()
        };

        let model = self.model();
        let plan = resolve(&model.linear_names(), &new_config, false)?;
        let targets: HashMap<&str, &lora_core::LoraLayerConfig> =
            plan.targets.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let mut built: HashMap<String, LoraAdapter<B>> = HashMap::new();
        let mut err = None;
        model.visit_linears(&mut |layer, l| {
            let Some(lc) = targets.get(layer) else {
                return;
            };
            if err.is_some() {
                return;
            }
            if l.is_merged() {
                err = Some(PeftError::State(format!(
                    "add_weighted_adapter: layer `{layer}` is merged; unmerge first"
                )));
                return;
            }
            let res = combine_layer(l, layer, adapters, weights, combination, new_rank).and_then(
                |(a, b)| {
                    l.lora_from_tensors(a, b, lc)
                        .map_err(|source| PeftError::Lora {
                            name: layer.to_string(),
                            source,
                        })
                },
            );
            match res {
                Ok(adapter) => {
                    built.insert(layer.to_string(), adapter);
                }
                Err(e) => err = Some(e),
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let mut err = None;
        self.model_mut().visit_linears_mut(&mut |layer, l| {
            if let (None, Some(adapter)) = (&err, built.remove(layer)) {
                if let Err(source) = l.add_adapter(name, adapter) {
                    err = Some(PeftError::Lora {
                        name: layer.to_string(),
                        source,
                    });
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        self.push_config(name, AdapterConfig::Lora(new_config));
        Ok(())
    }
}

/// The new adapter's `target_modules` (PEFT `_check_add_weighted_adapter`): the union of the
/// lists (sorted), or the regexes joined as `(r1)|(r2)|…`.
fn union_targets(configs: &[&LoraConfig], names: &[&str]) -> Result<TargetModules, PeftError> {
    let mut list: Vec<String> = Vec::new();
    let mut patterns: Vec<String> = Vec::new();
    for (c, n) in configs.iter().zip(names) {
        match &c.target_modules {
            None => {
                return Err(PeftError::Unsupported {
                    field: "target_modules".into(),
                    value: "null".into(),
                    msg: format!("add_weighted_adapter needs explicit targets (adapter {n:?})"),
                })
            }
            Some(t) if t.is_all_linear() => {
                return Err(PeftError::Unsupported {
                    field: "target_modules".into(),
                    value: "\"all-linear\"".into(),
                    msg: format!("add_weighted_adapter needs explicit targets (adapter {n:?})"),
                })
            }
            Some(TargetModules::List(v)) => list.extend(v.iter().cloned()),
            Some(TargetModules::Pattern(p)) => patterns.push(format!("({p})")),
        }
    }
    match (list.is_empty(), patterns.is_empty()) {
        (_, true) => {
            list.sort();
            list.dedup();
            Ok(TargetModules::List(list))
        }
        (true, false) => Ok(TargetModules::Pattern(patterns.join("|"))),
        (false, false) => Err(PeftError::Config {
            field: "target_modules".into(),
            value: format!("{names:?}"),
            msg: "all adapters must give target_modules as a list, or all as a regex string \
                  (PEFT refuses the mix)"
                .into(),
        }),
    }
}

/// The combined factors on one layer from the combined adapters it holds.
fn combine_layer<B: Backend>(
    l: &LoraLinear<B>,
    layer: &str,
    adapters: &[&str],
    weights: &[f64],
    combination: CombinationType,
    new_rank: usize,
) -> Result<Factors<B>, PeftError> {
    let present: Vec<(f64, &LoraAdapter<B>)> = adapters
        .iter()
        .zip(weights)
        .filter_map(|(a, w)| l.lora_named(a).map(|lora| (*w, lora)))
        .collect();
    if present.is_empty() {
        return Err(PeftError::State(format!(
            "add_weighted_adapter: layer `{layer}` is targeted by the new config but holds none \
             of the adapters {adapters:?}"
        )));
    }
    let (d_in, d_out) = l.dims();
    let device = l.base().device();
    match combination {
        CombinationType::Cat => {
            // PEFT: A·weight·scaling in f32, in that order.
            let a: Vec<Tensor<B, 2>> = present
                .iter()
                .map(|(w, lora)| lora.lora_a().mul_scalar(*w).mul_scalar(lora.scaling()))
                .collect();
            let b: Vec<Tensor<B, 2>> = present.iter().map(|(_, lora)| lora.lora_b()).collect();
            let used: usize = present.iter().map(|(_, lora)| lora.r()).sum();
            let (mut a, mut b) = (Tensor::cat(a, 1), Tensor::cat(b, 0));
            if used < new_rank {
                a = Tensor::cat(vec![a, Tensor::zeros([d_in, new_rank - used], &device)], 1);
                b = Tensor::cat(vec![b, Tensor::zeros([new_rank - used, d_out], &device)], 0);
            }
            Ok((a, b))
        }
        CombinationType::Linear => {
            let terms = present.iter().map(|(w, lora)| {
                let ws = w * lora.scaling();
                let root = ws.abs().sqrt();
                let signed = if ws >= 0.0 { root } else { -root };
                // PEFT keeps these weights as an f32 tensor.
                (
                    lora.lora_a().mul_scalar(signed as f32),
                    lora.lora_b().mul_scalar(root as f32),
                )
            });
            terms
                .reduce(|(a, b), (ta, tb)| (a + ta, b + tb))
                .ok_or_else(|| PeftError::State(format!("layer `{layer}`: nothing to combine")))
        }
        CombinationType::Svd => {
            if new_rank > d_in.min(d_out) {
                return Err(PeftError::Config {
                    field: "r".into(),
                    value: new_rank.to_string(),
                    msg: format!(
                        "svd combination: layer `{layer}` ({d_in}→{d_out}) has at most {} \
                         singular values",
                        d_in.min(d_out)
                    ),
                });
            }
            // ΔW = P·Q with P = [wᵢ·sᵢ·Bᵢ] `[d_out, k]` and Q = [Aᵢ] `[k, d_in]`.
            let k: usize = present.iter().map(|(_, lora)| lora.r()).sum();
            let mut p = vec![0.0; d_out * k];
            let mut q = vec![0.0; k * d_in];
            let mut off = 0;
            for (w, lora) in &present {
                let r = lora.r();
                let f = w * lora.scaling();
                let b = tensor_f32(lora.lora_b(), layer)?; // [r, d_out]
                let a = tensor_f32(lora.lora_a(), layer)?; // [d_in, r]
                for j in 0..r {
                    for o in 0..d_out {
                        p[o * k + off + j] = f * f64::from(b[j * d_out + o]);
                    }
                    for i in 0..d_in {
                        q[(off + j) * d_in + i] = f64::from(a[i * r + j]);
                    }
                }
                off += r;
            }
            let (us, vt) = truncated_svd_of_product(&p, &q, (d_out, k, d_in), new_rank);
            // Our layout: a = Vtᵀ `[d_in, r']`, b = (U·S)ᵀ `[r', d_out]`.
            let us: Vec<f32> = us.iter().map(|&v| v as f32).collect();
            let vt: Vec<f32> = vt.iter().map(|&v| v as f32).collect();
            let b = Tensor::<B, 2>::from_data(TensorData::new(us, [d_out, new_rank]), &device);
            let a = Tensor::<B, 2>::from_data(TensorData::new(vt, [new_rank, d_in]), &device);
            Ok((a.transpose(), b.transpose()))
        }
    }
}
