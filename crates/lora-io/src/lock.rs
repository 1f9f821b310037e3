//! Exclusive advisory locks on a lock file, for processes that must take turns on a path.

// Called as `FileExt::…(&file)`: std's own `File::lock` (Rust 1.89) is newer than the MSRV.
use fs4::{FileExt, TryLockError};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// An exclusive lock held on a lock file, released when dropped (and by the operating system
/// when the process dies, so a crash never leaves the path locked). The lock file itself stays:
/// removing it would race with a process waiting on it.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Opens `path` (creating it) and takes the lock without waiting; `Ok(None)` when another
    /// process or thread holds it.
    ///
    /// # Errors
    /// The I/O error of opening or locking, without the path (the caller names it).
    pub fn try_lock(path: &Path) -> io::Result<Option<Self>> {
        let file = open(path)?;
        match FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(Self { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Opens `path` (creating it) and takes the lock, waiting while another holds it.
    ///
    /// # Errors
    /// The I/O error of opening or locking, without the path (the caller names it).
    pub fn lock(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        FileExt::lock(&file)?;
        Ok(Self { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first keeps the order explicit.
        let _ = FileExt::unlock(&self.file);
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".lock");
        let held = FileLock::try_lock(&p).unwrap().expect("free at first");
        assert!(FileLock::try_lock(&p).unwrap().is_none(), "held twice");
        drop(held);
        let again = FileLock::lock(&p).unwrap();
        assert!(FileLock::try_lock(&p).unwrap().is_none());
        drop(again);
        assert!(p.is_file(), "the lock file stays");
    }
}
