//! Reading input files: regular files only, never more than their size.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

/// What a path that exists but is no regular file is, for error messages.
pub(crate) fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "not a file"
}

/// The error for an existing `path` that is not a regular file: `"is not a regular file (a
/// FIFO)"` (or a device, socket, directory).
pub(crate) fn not_regular(meta: &fs::Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is not a regular file ({})", kind_of(meta)),
    )
}

/// Checks that `path` (symbolic links followed) is an existing regular file, without opening
/// it: a FIFO would block the open, and a device or `/proc` file would read without end.
///
/// # Errors
/// The I/O error of `fs::metadata` (missing file, ...) or `"is not a regular file (a FIFO)"`
/// (a device, socket, directory), without the path (the caller names it).
pub fn check_regular_file(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(not_regular(&meta))
    }
}

/// The bytes of the regular file `path` (symbolic links followed), read only after
/// [`check_regular_file`] and never more than the size the file had when opened (a file
/// growing meanwhile cannot exhaust memory). Every input file of the workspace is read
/// through this function or [`read_regular_to_string`].
///
/// # Errors
/// As [`check_regular_file`], or the I/O error of reading, without the path (the caller names
/// it, as it would for `std::fs::read`).
pub fn read_regular_file(path: &Path) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_regular_file`] as UTF-8 text.
///
/// # Errors
/// As [`read_regular_file`]; `InvalidData` when the bytes are not UTF-8.
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular_file(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Opens `path` only after checking that it is a regular file, and checks the opened file
/// again (the path could have been replaced in between).
fn open_regular(path: &Path) -> io::Result<File> {
    check_regular_file(path)?;
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_refuses_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        std::fs::write(&p, "héllo").unwrap();
        assert_eq!(read_regular_file(&p).unwrap(), "héllo".as_bytes());
        assert_eq!(read_regular_to_string(&p).unwrap(), "héllo");
        let e = read_regular_file(d.path()).unwrap_err().to_string();
        assert_eq!(e, "is not a regular file (a directory)");
        std::fs::write(&p, [0xffu8, 0xfe]).unwrap();
        assert!(read_regular_to_string(&p).is_err());
        assert_eq!(
            read_regular_file(&d.path().join("none"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[cfg(unix)]
    #[test]
    fn refuses_devices_and_fifos_without_blocking() {
        let e = read_regular_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.to_string(), "is not a regular file (a device)");
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_regular_file(&link).unwrap_err();
        assert_eq!(e.to_string(), "is not a regular file (a device)");
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo failed");
        // Opening a FIFO for reading would block until a writer comes: this must return.
        let e = read_regular_file(&fifo).unwrap_err();
        assert_eq!(e.to_string(), "is not a regular file (a FIFO)");
    }
}
