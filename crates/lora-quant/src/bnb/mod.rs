//! The serialized (state-dict / `save_pretrained`) layouts of bitsandbytes' quantized linear
//! weights, as transformers + bitsandbytes 0.50 write them (`bitsandbytes/nn/modules.py`,
//! `bitsandbytes/functional.py`).
//!
//! **4-bit NF4** — `Linear4bit._save_to_state_dict` with `QuantState.as_dict(packed=True)`:
//!
//! | key | dtype, shape | content |
//! |---|---|---|
//! | `{p}` | U8 `[ceil(n/2), 1]` | packed codes |
//! | `{p}.absmax` | F32 `[blocks]`, or U8 `[blocks]` when double-quantized | block absmax |
//! | `{p}.quant_map` | F32 `[16]` | the NF4 code |
//! | `{p}.nested_absmax` | F32 `[ceil(blocks/256)]` | second-level absmax (double quant only) |
//! | `{p}.nested_quant_map` | F32 `[256]` | the 8-bit dynamic map (double quant only) |
//! | `{p}.quant_state.bitsandbytes__nf4` | U8 `[len]` | UTF-8 JSON (Python `json.dumps`): `quant_type`, `blocksize`, `dtype`, `shape`, and `nested_blocksize`, `nested_dtype`, `nested_offset` |
//!
//! `{p}` is the weight's key, for example `model.layers.0.self_attn.q_proj.weight`.
//!
//! **LLM.int8** — `Linear8bitLt._save_to_state_dict` (with `has_fp16_weights=False`, as
//! transformers' `load_in_8bit=True` sets it), module prefix `{m}` (`{m}.weight` is the weight key):
//!
//! | key | dtype, shape | content |
//! |---|---|---|
//! | `{m}.weight` | I8, the weight's shape | `CB`, row-wise codes |
//! | `{m}.SCB` | F32 `[rows]` | row absmax |
//! | `{m}.weight_format` | U8 `[]` (scalar) | 0 = row-major (the only format bitsandbytes ≥ 0.45 writes) |
//!
//! bitsandbytes' `Int8Params._quantize` casts the weight to float16 before
//! `int8_vectorwise_quant`; [`quantize_int8_bnb`] does the same, so that its output equals the
//! checkpoint transformers writes byte for byte.
//!
//! [`quantize_to_state_dict`] / [`find_bnb_entries`] + [`dequantize_entry`] are the whole-tensor
//! entry points used by the `quantize` example (any safetensors file ↔ bitsandbytes layout).
//!
//! One file per part: `tensor` (the serialized tensors), `quant_state` (the NF4 quant-state
//! JSON), `nf4` (`Linear4bit`), `int8` (`Linear8bitLt`), `entries` (whole tensors ↔ state dicts).

mod entries;
mod int8;
mod nf4;
mod quant_state;
mod tensor;

pub use entries::{
    dequantize_entry, find_bnb_entries, quantize_to_state_dict, BnbEntry, BnbEntryKind, BnbQuant,
    QuantizedTensor,
};
pub use int8::{
    int8_from_state_dict, int8_keys, int8_to_state_dict, quantize_int8_bnb, round_to_f16,
};
pub use nf4::{from_state_dict, to_state_dict};
pub use quant_state::python_float_repr;
pub use tensor::{BnbData, BnbTensor};

/// Key suffix of the NF4 quant-state JSON (`"quant_state.bitsandbytes__" + quant_type`).
pub const NF4_QUANT_STATE_SUFFIX: &str = ".quant_state.bitsandbytes__nf4";

/// Key prefix (after the weight key and a dot) of any 4-bit quant-state JSON, for spotting
/// `fp4` states, which are not supported.
const QUANT_STATE_PREFIX: &str = ".quant_state.bitsandbytes__";

/// The `weight_format` value of a row-major int8 weight (`Linear8bitLt`; bitsandbytes 0.45+ only
/// writes this one; older versions also wrote 1 = col32, 2 = col_turing, 3 = col_ampere).
pub const INT8_WEIGHT_FORMAT_ROW: u8 = 0;
