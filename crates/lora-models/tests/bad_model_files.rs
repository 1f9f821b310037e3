//! Model files whose layer counts claim more than the file holds give an error naming the file
//! and the count (GGUF) or the missing tensor (Hugging Face), before allocating for the claim
//! (inputs the fuzzer found; `tests/fixtures/fuzz/gguf_llama/`).

use lora_models::gguf::GgufFile;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::ModelError;
use std::path::Path;

type B = burn_ndarray::NdArray<f32>;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

#[test]
fn gguf_block_count_beyond_the_tensors_is_an_error() {
    // The 1-layer seed with `llama.block_count` = 23553: the layers used to be allocated first.
    let p = fixtures().join("fuzz/gguf_llama/oversize_1.gguf");
    let g = GgufFile::open(&p).unwrap();
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 23553);
    match Llama::<B>::from_gguf(&g, &Default::default()) {
        Err(ModelError::Config { path, key, msg }) => {
            assert_eq!(path, p);
            assert_eq!(key, "llama.block_count");
            assert!(
                msg.starts_with("is 23553, but the file has no tensors of block 1"),
                "{msg}"
            );
        }
        other => panic!("expected a block_count error, got {:?}", other.map(|_| ())),
    }
    // The same with u32::MAX blocks: allocating for them would abort the process.
    let mut bytes = std::fs::read(&p).unwrap();
    let key = b"llama.block_count";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes()); // value type u32
    bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let g = GgufFile::parse(&p, bytes).unwrap();
    assert_eq!(g.get_u64("llama.block_count").unwrap(), u32::MAX as u64);
    match Llama::<B>::from_gguf(&g, &Default::default()) {
        Err(ModelError::Config { key, msg, .. }) => {
            assert_eq!(key, "llama.block_count");
            assert!(msg.starts_with("is 4294967295, but"), "{msg}");
        }
        other => panic!("expected a block_count error, got {:?}", other.map(|_| ())),
    }
}

/// A copy of fixture `name` with `key` of its `config.json` set to `value`.
fn with_config(name: &str, key: &str, value: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(f), dir.path().join(f)).unwrap();
    }
    let p = dir.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v[key] = value.into();
    std::fs::write(&p, v.to_string()).unwrap();
    dir
}

#[test]
fn hf_layer_counts_beyond_the_tensors_are_missing_tensors() {
    let huge = 1u64 << 40;
    let d = with_config("llama_a", "num_hidden_layers", huge);
    match Llama::<B>::load_hf(d.path(), &Default::default()) {
        Err(ModelError::MissingKey { key, .. }) => {
            assert!(key.contains("layers.2."), "{key}")
        }
        other => panic!("expected a missing layer 2, got {:?}", other.map(|_| ())),
    }
    let d = with_config("gpt2_a", "n_layer", huge);
    match Gpt2::<B>::load(d.path(), &Default::default()) {
        Err(ModelError::MissingKey { key, .. }) => assert!(key.contains("h.2."), "{key}"),
        other => panic!("expected a missing block 2, got {:?}", other.map(|_| ())),
    }
}
