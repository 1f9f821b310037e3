//! Model paths that name a Hugging Face hub repository (`org/name`, `org/name@rev`), resolved
//! offline in the local hub cache, as `from_pretrained` does without a network.
//!
//! Source: huggingface_hub `constants.py` (the cache location: `HF_HUB_CACHE`, else the legacy
//! `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, where `HF_HOME` defaults to
//! `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`) and `file_download.py` (the
//! layout: `models--{org}--{name}/refs/{revision}` holds a commit hash, the files are in
//! `models--{org}--{name}/snapshots/{hash}/`, usually links into `../../blobs/{sha}`;
//! `try_to_load_from_cache` reads a ref, and takes a revision that is no ref as a commit hash).
use crate::ModelError;
use std::path::{Path, PathBuf};

/// The environment the hub cache is located from (huggingface_hub `constants.py`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubEnv {
    /// `$HF_HUB_CACHE`.
    pub hf_hub_cache: Option<PathBuf>,
    /// `$HUGGINGFACE_HUB_CACHE` (legacy name of `HF_HUB_CACHE`).
    pub huggingface_hub_cache: Option<PathBuf>,
    /// `$HF_HOME`.
    pub hf_home: Option<PathBuf>,
    /// `$XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl HubEnv {
    /// The variables of this process (empty ones count as unset).
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            hf_hub_cache: var("HF_HUB_CACHE"),
            huggingface_hub_cache: var("HUGGINGFACE_HUB_CACHE"),
            hf_home: var("HF_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            home: var("HOME"),
        }
    }

    /// The hub cache folder and the variable that chose it (for messages), or `None` when no
    /// variable gives one (no `HOME` either).
    pub fn cache_dir(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(p) = &self.hf_hub_cache {
            return Some((p.clone(), "HF_HUB_CACHE"));
        }
        if let Some(p) = &self.huggingface_hub_cache {
            return Some((p.clone(), "HUGGINGFACE_HUB_CACHE"));
        }
        if let Some(p) = &self.hf_home {
            return Some((p.join("hub"), "HF_HOME"));
        }
        if let Some(p) = &self.xdg_cache_home {
            return Some((p.join("huggingface/hub"), "XDG_CACHE_HOME"));
        }
        self.home
            .as_ref()
            .map(|h| (h.join(".cache/huggingface/hub"), "HOME"))
    }
}

/// A hub repository id with an optional revision, parsed from `org/name` or `org/name@rev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo_id: String,
    /// A branch or tag (a file under `refs/`) or a commit hash; `main` when not given.
    pub revision: String,
}

impl HubId {
    /// Parses `org/name[@rev]` with huggingface_hub's `validate_repo_id` rules for each part
    /// (letters, digits, `-`, `_`, `.`; at most 96 characters; no `--` or `..`; not starting or
    /// ending with `-` or `.`); `None` for anything else (a local path, an absolute path).
    pub fn parse(text: &str) -> Option<Self> {
        let (repo, rev) = match text.split_once('@') {
            Some((r, v)) => (r, Some(v)),
            None => (text, None),
        };
        let (org, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !p.contains("--")
                && !p.contains("..")
                && !p.starts_with(['-', '.'])
                && !p.ends_with(['-', '.'])
        };
        if !part_ok(org) || !part_ok(name) {
            return None;
        }
        // A revision is a ref name (may hold `/`, as `refs/pr/1`) or a hash; never a way out
        // of the repository folder.
        let revision = match rev {
            None => "main".to_string(),
            Some(v)
                if !v.is_empty()
                    && !v.starts_with('/')
                    && v.split('/').all(|s| !s.is_empty() && s != "." && s != "..") =>
            {
                v.to_string()
            }
            Some(_) => return None,
        };
        Some(Self {
            repo_id: repo.to_string(),
            revision,
        })
    }

    /// The repository's folder name in the cache (`models--org--name`).
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.repo_id.replace('/', "--"))
    }

    /// The snapshot folder of this revision in the cache `cache`: the hash in
    /// `refs/{revision}` when that file exists, else `revision` itself taken as a commit hash.
    ///
    /// # Errors
    /// The places looked (the ref file, the snapshot folder), in order, when no snapshot
    /// folder exists.
    pub fn snapshot_in(&self, cache: &Path) -> Result<PathBuf, Vec<PathBuf>> {
        let repo = cache.join(self.folder_name());
        let ref_file = repo.join("refs").join(&self.revision);
        let mut looked = vec![ref_file.clone()];
        if let Ok(text) = lora_io::read_regular_to_string(&ref_file) {
            let hash = text.trim();
            if is_hash_like(hash) {
                let snap = repo.join("snapshots").join(hash);
                if snap.is_dir() {
                    return Ok(snap);
                }
                looked.push(snap);
                return Err(looked);
            }
        }
        if is_hash_like(&self.revision) {
            let snap = repo.join("snapshots").join(&self.revision);
            if snap.is_dir() {
                return Ok(snap);
            }
            looked.push(snap);
        }
        Err(looked)
    }
}

/// A ref file's content or a revision that may name a snapshot folder: one path component.
fn is_hash_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// [`resolve_model_path_in`] with this process's environment ([`HubEnv::from_env`]).
///
/// # Errors
/// As [`resolve_model_path_in`].
pub fn resolve_model_path(path: &Path) -> Result<PathBuf, ModelError> {
    resolve_model_path_in(path, &HubEnv::from_env())
}

/// Where a `--model-path` value points: an existing local path as given (it always wins);
/// else, when it reads as a hub id `org/name[@rev]`, the snapshot folder of that revision in
/// the hub cache of `env` (`main` by default); else the path unchanged, for the caller's
/// checks to name.
///
/// # Errors
/// [`ModelError::NotInHubCache`] when the text is a hub id and neither a local path nor a
/// cached snapshot exists: its message lists every place looked and how to fill the cache.
pub fn resolve_model_path_in(path: &Path, env: &HubEnv) -> Result<PathBuf, ModelError> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let Some(id) = path.to_str().and_then(HubId::parse) else {
        return Ok(path.to_path_buf());
    };
    // The local path as the process saw it (relative to the working directory).
    let local = std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let mut looked = vec![local];
    let cache = env.cache_dir();
    if let Some((dir, _)) = &cache {
        match id.snapshot_in(dir) {
            Ok(snap) => return Ok(snap),
            Err(places) => looked.extend(places),
        }
    }
    let cache_text = match &cache {
        Some((dir, var)) => format!("{} (from {var})", dir.display()),
        None => "no hub cache (none of HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME is set)".into(),
    };
    Err(ModelError::NotInHubCache {
        repo_id: id.repo_id.clone(),
        revision: id.revision.clone(),
        looked,
        cache: cache_text,
    })
}
