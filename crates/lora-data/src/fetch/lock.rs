//! One exclusive lock per cached artifact, so that processes fetching the same file at once
//! take turns instead of writing over each other's archive.

use super::error::{io_err, FetchError};
// Called as `FileExt::…(&file)`: std's own `File::lock` (Rust 1.89) is newer than the MSRV.
use fs4::{FileExt, TryLockError};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// An exclusive advisory lock on `<dir>/.<name>.lock`, released when dropped (and by the
/// operating system when the process dies, so a crash never leaves the cache locked).
#[derive(Debug)]
pub(crate) struct ArtifactLock {
    file: File,
}

impl ArtifactLock {
    /// Locks `output`'s lock file, creating it; blocks (saying so on stderr) while another
    /// process or thread holds it.
    ///
    /// Errors: [`FetchError::Io`] naming the lock file.
    pub(crate) fn acquire(output: &Path) -> Result<Self, FetchError> {
        let path = lock_path(output);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                eprintln!(
                    "waiting for another process fetching {} (lock {})…",
                    output.display(),
                    path.display()
                );
                FileExt::lock(&file).map_err(io_err(&path))?;
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        Ok(Self { file })
    }
}

impl Drop for ArtifactLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first keeps the order explicit.
        let _ = FileExt::unlock(&self.file);
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
