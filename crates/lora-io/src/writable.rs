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

/// `path` names a file that may be created or replaced: no trailing separator, and missing or
/// a regular file (symbolic links followed).
///
/// # Errors
/// `InvalidInput` ("ends in a path separator, expected a file name", "is a directory, expected
/// a file name", "exists and is not a regular file (a device); refusing to replace it"), without
/// the path.
pub(crate) fn check_replaceable(path: &Path) -> io::Result<()> {
    let text = path.as_os_str().as_encoded_bytes();
    if text
        .last()
        .is_some_and(|&b| std::path::is_separator(b as char))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ends in a path separator, expected a file name",
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory, expected a file name",
        )),
        Ok(m) if !m.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "exists and is not a regular file ({}); refusing to replace it",
                crate::read::kind_of(&m)
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks that the file `path` can be written: it does not end in a path separator, it is
/// missing or a regular file (symbolic links followed: a link to a regular file is accepted, and
/// the write replaces the link), never a directory, device, FIFO or socket (the atomic rename
/// would replace it), and its parent directory exists and accepts a new file (a temporary probe
/// file, removed at once). Nothing is created under `path`.
///
/// # Errors
/// The I/O error, without the path (the caller names the flag and the path).
pub fn check_writable_file(path: &Path) -> io::Result<()> {
    check_replaceable(path)?;
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

/// Whether `a` and `b` both exist and are the same file or directory (symbolic links followed,
/// hard links included on Unix): an output that is one of the inputs would overwrite it.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (ma.dev(), ma.ino()) == (mb.dev(), mb.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_follows_links_and_dot_segments() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(same_file(&f, &d.path().join(".").join("f")));
        assert!(same_file(d.path(), &d.path().join("./")));
        assert!(!same_file(&f, d.path()));
        assert!(!same_file(&f, &d.path().join("missing")));
        #[cfg(unix)]
        {
            let l = d.path().join("l");
            std::os::unix::fs::symlink(&f, &l).unwrap();
            assert!(same_file(&f, &l));
            let h = d.path().join("h");
            std::fs::hard_link(&f, &h).unwrap();
            assert!(same_file(&h, &l));
        }
    }
}
