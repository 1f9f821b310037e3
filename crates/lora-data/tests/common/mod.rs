//! Helpers shared by lora-data's test files.
#![allow(dead_code)] // each test binary uses a subset

use lora_data::imdb::Review;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::PathBuf;

/// Lower-case hex sha256 of `bytes`.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    p
}

/// A review with the given text and label.
pub fn r(text: &str, label: u8) -> Review {
    Review {
        text: text.into(),
        label,
    }
}
