//! A per-thread scratch directory for the targets whose reader takes only a path.

use std::cell::RefCell;
use std::path::PathBuf;

use crate::targets::text;

thread_local! {
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// A fresh empty temporary directory for this thread's current input (in `/dev/shm` when it
/// exists: nothing of it needs to reach a disk).
///
/// # Errors
/// The text of the I/O error creating or emptying it.
pub fn scratch_dir() -> Result<PathBuf, String> {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            let shm = std::path::Path::new("/dev/shm");
            let d = if shm.is_dir() {
                tempfile::Builder::new().prefix("lora-fuzz").tempdir_in(shm)
            } else {
                tempfile::Builder::new().prefix("lora-fuzz").tempdir()
            };
            *s = Some(d.map_err(|e| e.to_string())?);
        }
        let root = s.as_ref().expect("set above").path().join("in");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        Ok(root)
    })
}

/// [`scratch_dir`] holding `files` (name, bytes): the input of a reader that takes a directory.
///
/// # Errors
/// The text of the I/O error.
pub fn scratch_files(files: &[(&str, &[u8])]) -> Result<PathBuf, String> {
    let dir = scratch_dir()?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).map_err(text)?;
    }
    Ok(dir)
}
