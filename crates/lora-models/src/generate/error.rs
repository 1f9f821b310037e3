//! Errors of text generation.

/// A generation setting or prompt that cannot be used. Each variant names the field (as in
/// transformers' `GenerationConfig`) or the prompt property that was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    /// A [`super::GenerationConfig`] field is out of range.
    #[error("generation config: `{field}` is {value}, expected {expected}")]
    Config {
        /// The field (`temperature`, `top_p`, `repetition_penalty`, `max_new_tokens`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// The prompt batch cannot be decoded (empty, rows of unequal length, an id outside the
    /// vocabulary, longer than the model's positions).
    #[error("prompt: {0}")]
    Prompt(String),
    /// The backend returned logits that cannot be read on the host.
    #[error("backend: {0}")]
    Backend(String),
}

impl GenerateError {
    /// Shorthand for [`GenerateError::Config`].
    pub(crate) fn config(
        field: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        GenerateError::Config {
            field,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
