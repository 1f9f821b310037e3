//! The crate's error type and the input checks shared by the quantizers.

/// Errors of the quantizers and the quantized layers.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuantError {
    /// A block size bitsandbytes does not accept (`quantize_4bit` raises
    /// `ValueError("invalid blocksize …")` outside 32, 64, …, 4096).
    #[error("invalid blocksize {blocksize} for {what}: expected one of {allowed:?}")]
    BadBlocksize {
        /// What was being quantized (for example `"nf4"`).
        what: &'static str,
        /// The block size that was given.
        blocksize: usize,
        /// The accepted block sizes.
        allowed: &'static [usize],
    },
    /// An input with no elements.
    #[error("{0}: empty tensor (0 elements), nothing to quantize")]
    Empty(String),
    /// A NaN or infinite input value (bitsandbytes would write meaningless codes).
    #[error("{what}: non-finite value {value} at flat index {index}")]
    NonFinite {
        /// Which tensor.
        what: String,
        /// Flat (row-major) index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A shape that does not fit the data or the layer.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which tensor.
        what: String,
        /// The shape (or length) needed.
        expected: Vec<usize>,
        /// The shape (or length) given.
        got: Vec<usize>,
    },
    /// A malformed serialized quantization state (key, and what is wrong with it).
    #[error("bitsandbytes state `{key}`: {message}")]
    Format {
        /// The state-dict key (for example `weight.quant_state.bitsandbytes__nf4`).
        key: String,
        /// What was expected.
        message: String,
    },
    /// A quantization scheme name other than `nf4`, `nf4-dq` and `int8`.
    #[error("unknown quantization {0:?}: expected one of \"nf4\", \"nf4-dq\", \"int8\"")]
    UnknownKind(String),
}

/// Checks that `values` is non-empty and finite; `what` names the tensor in the error.
pub(crate) fn check_values(values: &[f32], what: &str) -> Result<(), QuantError> {
    if values.is_empty() {
        return Err(QuantError::Empty(what.to_string()));
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(QuantError::NonFinite {
            what: what.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

/// Checks that `shape` multiplies out to `len`.
pub(crate) fn check_shape(shape: &[usize], len: usize, what: &str) -> Result<(), QuantError> {
    let n: usize = shape.iter().product();
    if shape.is_empty() || n != len {
        return Err(QuantError::Shape {
            what: format!("{what} (shape vs number of values)"),
            expected: vec![len],
            got: shape.to_vec(),
        });
    }
    Ok(())
}
