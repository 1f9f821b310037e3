//! Where fetched inputs live.

use std::path::PathBuf;

/// The cache folder for real inputs: `$LORA_BURN_CACHE` if set and non-empty, else
/// `$HOME/.cache/lora-burn` (falling back to `./.cache/lora-burn` when `HOME` is unset).
/// The folder is not created here.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LORA_BURN_CACHE") {
        if !dir.is_empty() {
            return PathBuf::from(dir);
        }
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".cache").join("lora-burn"),
        _ => PathBuf::from(".cache").join("lora-burn"),
    }
}
