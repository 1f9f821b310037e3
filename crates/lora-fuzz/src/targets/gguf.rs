//! GGUF: the reader (header, metadata, tensor infos, every dequantized block type), the
//! tokenizer rebuilt from its metadata, and a Llama built from a whole file.

use super::tokenizer::exercise;
use super::{text, Target};
use crate::corpus::{files_under, fixtures_dir, head, real_gguf, seed_dir};
use lora_models::gguf::GgufFile;
use lora_models::llama::Llama;
use lora_models::tokenizer::Tokenizer;

const NAME: &str = "<fuzz input>.gguf";

fn is_gguf(n: &str) -> bool {
    n.ends_with(".gguf")
}

/// `GgufFile::parse`, every typed metadata getter on every key, `tensor_f32` of every tensor.
fn run_gguf(b: &[u8]) -> Result<(), String> {
    let g = GgufFile::parse(NAME, b.to_vec()).map_err(text)?;
    for key in g.metadata().keys() {
        let _ = g.get_u64(key);
        let _ = g.get_f32(key);
        let _ = g.get_bool(key);
        let _ = g.get_str(key);
        let _ = g.get_str_array(key);
        let _ = g.get_int_array(key);
    }
    let names: Vec<String> = g.tensors().iter().map(|t| t.name.clone()).collect();
    let mut last = Ok(());
    for n in &names {
        if let Err(e) = g.tensor_f32(n) {
            last = Err(text(e));
        }
    }
    last
}

fn seeds_gguf() -> Vec<Vec<u8>> {
    let mut s = vec![];
    s.extend(std::fs::read(fixtures_dir().join("gguf_small.gguf")));
    s.extend(files_under(&seed_dir("gguf"), &is_gguf));
    s.extend(files_under(&seed_dir("gguf_tokenizer"), &is_gguf));
    s.extend(files_under(&seed_dir("gguf_llama"), &is_gguf));
    // The real file's header and the start of its metadata (the whole file is 98 MB).
    s.extend(head(&real_gguf(), 256 << 10));
    s
}

/// GGUF header, metadata, tensor infos and data of every block type.
pub const GGUF: Target = Target {
    name: "gguf",
    about: "GgufFile::parse, typed metadata getters, tensor_f32 of every tensor",
    run: run_gguf,
    seeds: seeds_gguf,
    bounded_execs: 50_000,
};

/// `Tokenizer::from_gguf`, then an encode and decode.
fn run_gguf_tokenizer(b: &[u8]) -> Result<(), String> {
    let g = GgufFile::parse(NAME, b.to_vec()).map_err(text)?;
    let t = Tokenizer::from_gguf(&g).map_err(text)?;
    exercise(&t, "<|im_start|>user\nHello wörld 1234!<|im_end|>")
}

fn seeds_gguf_tokenizer() -> Vec<Vec<u8>> {
    files_under(&seed_dir("gguf_tokenizer"), &is_gguf)
}

/// The tokenizer in GGUF metadata.
pub const GGUF_TOKENIZER: Target = Target {
    name: "gguf_tokenizer",
    about: "Tokenizer::from_gguf (tokens, merges, token types, special ids), encode, decode",
    run: run_gguf_tokenizer,
    seeds: seeds_gguf_tokenizer,
    bounded_execs: 18_000,
};

type Cpu = burn_ndarray::NdArray<f32>;

/// `Llama::from_gguf` on the CPU backend (config keys, tensor shapes, dequantization).
fn run_gguf_llama(b: &[u8]) -> Result<(), String> {
    let g = GgufFile::parse(NAME, b.to_vec()).map_err(text)?;
    Llama::<Cpu>::from_gguf(&g, &Default::default()).map_err(text)?;
    Ok(())
}

fn seeds_gguf_llama() -> Vec<Vec<u8>> {
    files_under(&seed_dir("gguf_llama"), &is_gguf)
}

/// A Llama model from GGUF.
pub const GGUF_LLAMA: Target = Target {
    name: "gguf_llama",
    about: "Llama::from_gguf on a tiny model: config metadata, tensor shapes, dequantization",
    run: run_gguf_llama,
    seeds: seeds_gguf_llama,
    bounded_execs: 60_000,
};
