//! What a conversion did, per tensor and in total.

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorReport {
    /// Tensor name (the weight key).
    pub name: String,
    /// Shape of the (unquantized) tensor.
    pub shape: Vec<usize>,
    /// `"nf4"`, `"nf4-dq"`, `"int8"` (quantized or dequantized from), or `"copied"`.
    pub layout: String,
    /// Bytes of the tensor's data in the input (all its entries for a quantized input).
    pub bytes_before: usize,
    /// Bytes of the tensor's data in the output.
    pub bytes_after: usize,
    /// Bits per value of the quantized form (all its serialized entries), for quantized tensors.
    pub bits_per_param: Option<f64>,
    /// `(max |x − deq|, RMS)` against the original values, where known.
    pub error: Option<(f64, f64)>,
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// One entry per output tensor, in name order.
    pub tensors: Vec<TensorReport>,
    /// Bytes of the output file.
    pub file_bytes: usize,
}

impl Report {
    /// Total tensor-data bytes before and after.
    pub fn totals(&self) -> (usize, usize) {
        self.tensors
            .iter()
            .fold((0, 0), |(b, a), t| (b + t.bytes_before, a + t.bytes_after))
    }
}
