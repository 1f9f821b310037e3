//! sha256 of files and of streamed bytes, and the check against a pinned value.

use super::error::{io_err, FetchError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Lower-case hex sha256 of a file's bytes, streamed (constant memory).
///
/// Errors: [`FetchError::Io`] naming the file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    // A FIFO would block the open; a device would stream without end.
    lora_io::check_regular_file(path).map_err(io_err(path))?;
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

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `path` has sha256 `expected` (hex, case-insensitive).
///
/// Errors: [`FetchError::ChecksumMismatch`] naming the file, the expected and the actual hash;
/// [`FetchError::Io`] if it cannot be read.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_file(path)?;
    check_sha256(path, expected, actual)
}

/// `Ok` when `actual` equals `expected` (case-insensitive), else
/// [`FetchError::ChecksumMismatch`] naming `path`.
pub(crate) fn check_sha256(path: &Path, expected: &str, actual: String) -> Result<(), FetchError> {
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

/// A writer that hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner` with a fresh sha256.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Flushes the inner writer and returns the lower-case hex sha256 of everything written.
    pub(crate) fn finish(mut self) -> io::Result<String> {
        self.inner.flush()?;
        Ok(hex(&self.hasher.finalize()))
    }
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
