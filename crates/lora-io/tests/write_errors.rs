//! Failed writes: the error names the path, nothing appears under the final name and no
//! temporary file is left behind — for a read-only directory, a failing write (a full disk,
//! simulated) and a rename that cannot happen.

use lora_io::{atomic_write, atomic_write_with, write_safetensors, StTensor};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Names in `dir` (none expected besides `keep`).
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A directory that refuses new files for this user: mode 0555 when that is enough (not root);
/// for root, which ignores permission bits, `/proc`, where no user can create a file.
/// Returns the directory and the temporary folder keeping it alive.
fn read_only_dir() -> (PathBuf, tempfile::TempDir) {
    let t = tempfile::tempdir().unwrap();
    let ro = t.path().join("ro");
    fs::create_dir(&ro).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let probe = ro.join("probe");
        if fs::write(&probe, b"x").is_err() {
            return (ro, t);
        }
        fs::remove_file(&probe).unwrap();
    }
    (PathBuf::from("/proc"), t)
}

#[test]
fn read_only_directory_names_the_path_and_leaves_nothing() {
    let (dir, _keep) = read_only_dir();
    let target = dir.join("adapter_model.safetensors");
    let e = atomic_write(&target, b"weights").unwrap_err();
    assert!(e.to_string().contains(&*target.to_string_lossy()), "{e}");
    assert!(!target.exists());
    if dir != Path::new("/proc") {
        assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    }
    let t = vec![("w".to_string(), StTensor::f32(vec![2], &[1.0, 2.0]))];
    let e = write_safetensors(&target, &t, None).unwrap_err();
    assert!(e.to_string().contains(&*target.to_string_lossy()), "{e}");
    assert!(!target.exists());
}

#[test]
fn directory_below_a_file_names_the_path() {
    // ENOTDIR refuses root as well as anyone.
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let target = file.join("config.json");
    let e = atomic_write(&target, b"{}").unwrap_err();
    assert!(e.to_string().contains(&*target.to_string_lossy()), "{e}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
    assert_eq!(entries(t.path()), vec!["plain".to_string()]);
}

#[test]
fn full_disk_mid_write_leaves_no_partial_file() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("model.safetensors");
    let r = atomic_write_with(&target, |f| {
        f.write_all(&[7u8; 4096])?;
        // What a full disk answers (ENOSPC) once part of the file is written.
        Err::<(), _>(io::Error::from_raw_os_error(28))
    });
    let e = r.unwrap_err();
    let m = e.to_string();
    assert!(m.contains(&*target.to_string_lossy()), "{m}");
    assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{m}");
    assert!(!target.exists());
    assert!(entries(t.path()).is_empty(), "{:?}", entries(t.path()));
}

#[test]
fn full_disk_keeps_the_previous_version() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("checkpoint.safetensors");
    atomic_write(&target, b"previous complete file").unwrap();
    let e = atomic_write_with(&target, |f| {
        f.write_all(b"half of the new")?;
        Err::<(), _>(io::Error::from_raw_os_error(28))
    })
    .unwrap_err();
    assert!(e.to_string().contains("checkpoint.safetensors"), "{e}");
    assert_eq!(fs::read(&target).unwrap(), b"previous complete file");
    assert_eq!(
        entries(t.path()),
        vec!["checkpoint.safetensors".to_string()]
    );
}

#[test]
fn rename_onto_a_directory_fails_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("out");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("inside"), b"kept").unwrap();
    let e = atomic_write(&target, b"new").unwrap_err();
    assert!(e.to_string().contains(&*target.to_string_lossy()), "{e}");
    assert!(target.is_dir());
    assert_eq!(entries(t.path()), vec!["out".to_string()]);
    assert_eq!(fs::read(target.join("inside")).unwrap(), b"kept");
}
