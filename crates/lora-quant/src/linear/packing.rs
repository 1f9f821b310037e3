//! The I32 word storage of packed codes: packing bytes into big-endian words, uploading them
//! (and f32 scales) as frozen parameters, reading them back, and unpacking on the device.

use burn::module::{Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData};

use super::BYTES_PER_WORD;
use crate::QuantError;

/// Packs bytes into big-endian i32 words, four a word; missing trailing bytes are 0 (never read).
pub(super) fn pack_words(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks(BYTES_PER_WORD)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_be_bytes(b) as i32
        })
        .collect()
}

/// Uploads packed words as a frozen `Int` parameter of dtype I32.
pub(super) fn words_param<B: Backend>(
    bytes: &[u8],
    device: &B::Device,
) -> Param<Tensor<B, 1, Int>> {
    let words = pack_words(bytes);
    let n = words.len();
    let t = Tensor::<B, 1, Int>::from_data(TensorData::new(words, [n]), (device, DType::I32));
    Param::initialized(ParamId::new(), t)
}

/// A frozen f32 vector parameter (`require_grad = false`).
pub(super) fn frozen_f32<B: Backend>(v: Vec<f32>, device: &B::Device) -> Param<Tensor<B, 1>> {
    let n = v.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), device)).set_require_grad(false)
}

/// Reads the words back as bytes (big-endian), the first `n` of them.
pub(super) fn read_bytes<B: Backend>(
    words: &Param<Tensor<B, 1, Int>>,
    n: usize,
    what: &str,
) -> Result<Vec<u8>, QuantError> {
    let w = words
        .val()
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .map_err(|e| QuantError::Format {
            key: what.to_string(),
            message: format!("cannot read tensor data: {e:?}"),
        })?;
    Ok(w.iter()
        .flat_map(|&w| (w as u32).to_be_bytes())
        .take(n)
        .collect())
}

/// Reads a float tensor back as f32 values (row-major); `what` names it in the error.
pub(crate) fn read_f32<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    what: &str,
) -> Result<Vec<f32>, QuantError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| QuantError::Format {
            key: what.to_string(),
            message: format!("cannot read tensor data: {e:?}"),
        })
}

/// Unpacks I32 words into `codes_per_word` codes of `bits` bits each (most significant first),
/// `[n_words · codes_per_word]` Int.
pub(super) fn unpack<B: Backend>(words: Tensor<B, 1, Int>, bits: usize) -> Tensor<B, 1, Int> {
    let [n_words] = words.dims();
    let per = 32 / bits;
    let mask = ((1i64 << bits) - 1).elem::<B::IntElem>();
    let parts: Vec<Tensor<B, 1, Int>> = (0..per)
        .map(|k| {
            let shift = ((32 - bits * (k + 1)) as i64).elem::<B::IntElem>();
            words
                .clone()
                .bitwise_right_shift_scalar(shift)
                .bitwise_and_scalar(mask)
        })
        .collect();
    Tensor::stack::<2>(parts, 1).reshape([n_words * per])
}

/// `values` (length ≥ `n`) truncated to `n`, or zero-padded to `n`.
pub(super) fn fit<B: Backend>(values: Tensor<B, 1>, n: usize) -> Tensor<B, 1> {
    let [have] = values.dims();
    if have >= n {
        values.narrow(0, 0, n)
    } else {
        let device = values.device();
        Tensor::cat(vec![values, Tensor::zeros([n - have], &device)], 0)
    }
}
