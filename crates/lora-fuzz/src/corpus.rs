//! Where the seeds come from: the repository's fixtures (`tests/fixtures/`, with the fuzz seeds
//! in `tests/fixtures/fuzz/seeds/<target>/`) and, when present, the real inputs in the cache
//! (`lora_data::cache_dir()`: the SmolLM2 GGUF, the IMDB JSON), of which only a head is taken.

use std::path::{Path, PathBuf};

/// Seeds larger than this are left out (they slow every execution down).
pub const MAX_SEED_BYTES: usize = 300 << 10;

/// The repository's `tests/fixtures` (`$LORA_FUZZ_FIXTURES` overrides it).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("LORA_FUZZ_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures"),
    }
}

/// `tests/fixtures/fuzz/seeds/<target>`.
pub fn seed_dir(target: &str) -> PathBuf {
    fixtures_dir().join("fuzz/seeds").join(target)
}

/// `tests/fixtures/fuzz/<target>`: the inputs that once failed, replayed by the tests.
pub fn regression_dir(target: &str) -> PathBuf {
    fixtures_dir().join("fuzz").join(target)
}

/// The files under `dir` (recursively, sorted) whose name satisfies `keep`, each at most
/// [`MAX_SEED_BYTES`].
pub fn files_under(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    collect(dir, keep, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() <= MAX_SEED_BYTES)
        .collect()
}

fn collect(dir: &Path, keep: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, keep, out);
        } else if p.file_name().and_then(|n| n.to_str()).is_some_and(keep) {
            out.push(p);
        }
    }
}

/// The first `n` bytes of `path`, if it exists.
pub fn head(path: &Path, n: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(n);
    f.take(n as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The real SmolLM2 GGUF in the cache, if fetched.
pub fn real_gguf() -> PathBuf {
    lora_data::cache_dir()
        .join("smollm2")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The regression inputs of `target` (`tests/fixtures/fuzz/<target>/*`), sorted by name.
pub fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(regression_dir(target))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    out.sort();
    out
}
