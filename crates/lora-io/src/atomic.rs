//! Atomic writes: temporary file in the target's directory, fsync, rename, fsync the directory.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

fn with_path(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `e` without the `"{path}: "` prefix that [`atomic_write_with`] gives its errors, for a
/// caller whose own message already names `path` (so that it appears once).
pub fn without_path_prefix(path: &Path, e: io::Error) -> io::Error {
    let prefix = format!("{}: ", path.display());
    match e.to_string().strip_prefix(&prefix) {
        Some(rest) => io::Error::new(e.kind(), rest.to_string()),
        None => e,
    }
}

/// Writes `bytes` to `path` atomically (see [`atomic_write_with`]).
///
/// # Errors
/// The I/O error, its message prefixed with `path`.
pub fn atomic_write(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Creates `path` atomically from what `fill` writes into a fresh temporary file in the same
/// directory: the file is given mode 0644 (Unix), fsynced and renamed over `path`, then the
/// directory is fsynced (best effort), so a crash leaves either the old file or the complete new
/// one, never half a file. When `fill` fails the temporary file is removed and `path` is
/// untouched. Returns what `fill` returned. An existing `path` must be a regular file (symbolic
/// links followed; a link is replaced by the new file, its target is left alone): a directory,
/// device, FIFO or socket is refused before anything is written, as the rename would replace it.
///
/// # Errors
/// `fill`'s error, the refusal of an existing `path` that is not a regular file (or of a path
/// ending in a separator), or the I/O error of creating, syncing or renaming, prefixed with
/// `path`.
pub fn atomic_write_with<T>(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let path = path.as_ref();
    let ctx = with_path(path);
    crate::writable::check_replaceable(path).map_err(&ctx)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(&ctx)?;
    let out = fill(tmp.as_file_mut()).map_err(&ctx)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; give the result ordinary file permissions.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(&ctx)?;
    }
    tmp.as_file().sync_all().map_err(&ctx)?;
    tmp.persist(path).map_err(|e| ctx(e.error))?;
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"first version, longer").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"old").unwrap();
        let r = atomic_write_with(&p, |f| {
            f.write_all(b"partial")?;
            Err::<(), _>(io::Error::other("interrupted"))
        });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("a.bin") && e.contains("interrupted"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_to_replace_a_device_or_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let e = atomic_write(&link, b"x").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: exists and is not a regular file (a device); refusing to replace it",
                link.display()
            )
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let e = atomic_write(d.path(), b"x").unwrap_err().to_string();
        assert!(e.ends_with("is a directory, expected a file name"), "{e}");
        let slash = format!("{}/x.bin/", d.path().display());
        let e = atomic_write(&slash, b"x").unwrap_err().to_string();
        assert!(
            e.ends_with("ends in a path separator, expected a file name"),
            "{e}"
        );
        // A symbolic link to a regular file is replaced by the new file; its target is kept.
        let target = d.path().join("target.bin");
        std::fs::write(&target, b"old").unwrap();
        let l2 = d.path().join("file-link");
        std::os::unix::fs::symlink(&target, &l2).unwrap();
        atomic_write(&l2, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read(&l2).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&l2).unwrap().is_file());
    }

    #[test]
    fn prefix_is_removed_once() {
        let p = Path::new("/x/y.bin");
        let e = io::Error::other("/x/y.bin: No space left on device");
        assert_eq!(
            without_path_prefix(p, e).to_string(),
            "No space left on device"
        );
        let e = io::Error::other("other: /x/y.bin: z");
        assert_eq!(without_path_prefix(p, e).to_string(), "other: /x/y.bin: z");
    }

    #[test]
    fn missing_directory_names_the_path() {
        let e = atomic_write("/nonexistent-dir-lora-io/x.bin", b"x").unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-dir-lora-io/x.bin"),
            "{e}"
        );
    }
}
