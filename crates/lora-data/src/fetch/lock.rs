//! One exclusive lock per cached artifact, so that processes fetching the same file at once
//! take turns instead of writing over each other's archive.

use super::error::{io_err, FetchError};
use lora_io::FileLock;
use std::path::{Path, PathBuf};

/// An exclusive advisory lock on `<dir>/.<name>.lock` ([`FileLock`]), released when dropped
/// (and by the operating system when the process dies, so a crash never leaves the cache
/// locked).
#[derive(Debug)]
pub(crate) struct ArtifactLock {
    _lock: FileLock,
}

impl ArtifactLock {
    /// Locks `output`'s lock file, creating it; blocks (saying so on stderr) while another
    /// process or thread holds it.
    ///
    /// Errors: [`FetchError::Io`] naming the lock file.
    pub(crate) fn acquire(output: &Path) -> Result<Self, FetchError> {
        let path = lock_path(output);
        let lock = match FileLock::try_lock(&path).map_err(io_err(&path))? {
            Some(lock) => lock,
            None => {
                eprintln!(
                    "waiting for another process fetching {} (lock {})…",
                    output.display(),
                    path.display()
                );
                FileLock::lock(&path).map_err(io_err(&path))?
            }
        };
        Ok(Self { _lock: lock })
    }
}

/// `<dir>/.<file name>.lock` for the artifact `output`.
pub(crate) fn lock_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map_or_else(|| "artifact".into(), |n| n.to_string_lossy().into_owned());
    output
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(format!(".{name}.lock"))
}
