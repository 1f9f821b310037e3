#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! A frozen base linear map `y = x·W + b` (W stored `[d_in, d_out]`, burn's and GPT-2 Conv1D's
//! layout) with an optional low-rank adapter beside it:
//!
//! ```text
//! y = x·W + b + scaling · B(A(dropout(x)))        (Hu et al. 2021, "LoRA", §4.1)
//! ```
//!
//! computed in factored form (`(x·A)·B`), never by building the dense `ΔW = A·B` in the forward
//! pass. Scaling is `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA (Kalajdzievski 2023).
//! Semantics follow Hugging Face PEFT's `peft/tuners/lora/layer.py` (`Linear.forward`,
//! `update_layer`, `reset_lora_parameters`, `merge`, `unmerge`).
//!
//! Layout note: PEFT stores `lora_A.weight` as `[r, d_in]` and `lora_B.weight` as `[d_out, r]`
//! (PyTorch `nn.Linear` layout). Here A is `[d_in, r]` and B is `[r, d_out]` so the forward is two
//! plain matmuls; `lora-peft` transposes when it reads and writes PEFT files.
//!
//! QLoRA (Dettmers et al. 2023): the frozen base of any [`LoraLinear`] can be quantized in place
//! ([`LoraLinear::quantize`] with a [`QuantKind`]: NF4, NF4 with double-quantized statistics, or
//! LLM.int8 vector-wise). The codes stay packed on the device (crate `lora-quant`, re-exported as
//! [`quant`]); the forward pass dequantizes the base weight and the adapter trains beside it
//! exactly as on a dense base. Merging into a quantized base requantizes, as PEFT does for
//! bitsandbytes layers.
//!
//! Mixed precision (Micikevicius et al. 2018, "Mixed Precision Training", §3; PyTorch
//! `torch.autocast`): [`LoraLinear::set_compute_dtype`] (one layer) and
//! [`NamedLinears::set_compute_dtype`] (a whole model) store the frozen base in bf16 or f16 and
//! run the layer's matmuls in that dtype, while the LoRA factors stay f32 *master weights*, so
//! gradients and AdamW state are f32. Each layer takes and returns f32 activations; embeddings,
//! norms, softmax, attention scores and the loss stay f32. [`Precision`] parses the
//! `--precision f32|bf16|f16` flag of the examples.
//!
//! Bottleneck adapters (Houlsby et al. 2019; AdapterHub `adapters` 1.3 `Adapter`):
//! [`BottleneckAdapter`] (`up(act(down(h)))·scaling` with AdapterHub's residual wiring) and the
//! [`BottleneckLayers`] seam through which a model family exposes its per-layer
//! `attention_adapters` / `output_adapters` slots.
//!
//! The layer is cut into pieces, one a file: [`FrozenLinear`] (the base, dense or quantized),
//! [`Adapter`] (the method seam: LoRA's [`LoraAdapter`], DoRA's [`DoraAdapter`], (IA)³'s
//! [`Ia3Adapter`]) and [`LoraLinear`] (the base with named adapters, merge and unload; several
//! adapters, the active set and the per-row choice of PEFT's `adapter_names` in
//! `named_adapters.rs`). This crate does no file I/O.
//!
//! (IA)³ (Liu et al. 2022, §3.3; PEFT `tuners/ia3/layer.py`) scales a layer's output (bias
//! included), or its input for a feed-forward module, by a learned vector `ia3_l`, and merges as
//! `W ⊙ l` (and `b ⊙ l` for output scaling).

mod adapter;
mod base;
mod bottleneck;
mod bottleneck_slots;
mod config;
mod dora;
mod error;
mod ia3;
mod linear;
mod lora;
mod named;
mod named_adapters;
mod params;
mod precision;

pub use adapter::{Adapter, BaseTensors};
pub use base::FrozenLinear;
pub use bottleneck::{BottleneckActivation, BottleneckAdapter, BottleneckConfig, BottleneckInit};
pub use bottleneck_slots::{check_bottleneck_slot, BottleneckLayers, BottleneckLocation};
pub use config::{scaling, LoraInit, LoraLayerConfig};
pub use dora::DoraAdapter;
pub use error::LoraError;
pub use ia3::{Ia3Adapter, IA3_UNMERGE_EPS};
pub use linear::{LoraLinear, DEFAULT_ADAPTER};
pub use lora::LoraAdapter;
pub use named::{NamedLinears, PrecisionReport};
pub use named_adapters::BASE_ROW;
pub use params::{count_parameters, ParamCount};
pub use precision::{master_dtype, Precision};

pub use lora_quant as quant;
pub use lora_quant::{QuantBase, QuantError, QuantKind, QuantStats};
