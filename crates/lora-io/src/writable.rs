//! Checks, before any work, that an output location will accept a file.

use std::io;
use std::path::Path;

/// Creates the directory `dir` (with its parents) if it is missing and checks that a new file
/// can be created in it, by creating and removing a temporary file (permission bits alone do
/// not tell: root ignores them, and a read-only mount refuses every user).
///
/// # Errors
/// The I/O error of creating the directory or the probe file, without the path (the caller
/// names the flag and the path).
pub fn ensure_writable_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        ));
    }
    std::fs::create_dir_all(dir)?;
    tempfile::Builder::new()
        .prefix(".probe-")
        .tempfile_in(dir)
        .map(drop)
}

/// Checks that the file `path` can be written: it is not a directory, and its parent directory
/// exists and accepts a new file (a temporary probe file, removed at once). Nothing is created
/// under `path`.
///
/// # Errors
/// The I/O error, without the path (the caller names the flag and the path).
pub fn check_writable_file(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "is a directory, expected a file name",
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not an existing directory", dir.display()),
        ));
    }
    tempfile::Builder::new()
        .prefix(".probe-")
        .tempfile_in(dir)
        .map(drop)
}
