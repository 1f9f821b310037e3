//! A guard around third-party parsers that panic on some malformed inputs instead of returning
//! an error (the `tokenizers` crate 0.22 `expect`s while deserializing a bad `decoder` of a
//! `tokenizer.json`): the panic becomes a [`ModelError::Format`] naming the file.
use crate::ModelError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs `f`; a panic inside it becomes a [`ModelError::Format`] naming `path`, `what` was being
/// done and the panic message.
pub(crate) fn no_panic<T>(
    path: &Path,
    what: &str,
    f: impl FnOnce() -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        Err(ModelError::format(
            path,
            format!("{what}: the tokenizers library failed on this file ({msg})"),
        ))
    })
}
