//! Malformed Hugging Face tokenizer files give an error naming the file, never a panic (inputs
//! the fuzzer found; `tests/fixtures/fuzz/hf_tokenizer_json/`).

use lora_models::tokenizer::Tokenizer;
use std::path::Path;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

#[test]
fn tokenizer_json_with_a_broken_decoder_is_an_error() {
    // A control character inside the `decoder` object: tokenizers 0.22 `expect`s there.
    let bytes = std::fs::read(fixtures().join("fuzz/hf_tokenizer_json/decoder_helper_expect.json"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), bytes).unwrap();
    let e = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("cannot load tokenizer"),
        "{e}"
    );
}

#[test]
fn the_valid_seed_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let seed = fixtures().join("fuzz/seeds/hf_tokenizer/tokenizer.json");
    std::fs::copy(seed, dir.path().join("tokenizer.json")).unwrap();
    let t = Tokenizer::from_hf_dir(dir.path()).unwrap();
    let ids = t.encode("The capital of France").unwrap();
    assert_eq!(t.decode(&ids).unwrap(), "The capital of France");
}
