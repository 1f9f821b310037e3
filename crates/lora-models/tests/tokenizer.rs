//! Tests of the tokenizers: GPT-2 `r50k_base`, a hand-built GGUF byte-level BPE with
//! closed-form expected ids, and the real SmolLM2 GGUF against transformers' ids
//! (`tests/fixtures/smollm2_tokens.json`, written by `tests/fixtures/make_fixtures.py`).
use lora_models::gguf::GgufFile;
use lora_models::tokenizer::Tokenizer;
use lora_models::ModelError;

mod common;
use common::fixtures;

use common::real_gguf;

#[test]
fn gpt2_hello_world() {
    let t = Tokenizer::gpt2().unwrap();
    assert_eq!(t.encode("Hello world").unwrap(), [15496, 995]);
    assert_eq!(t.decode(&[15496, 995]).unwrap(), "Hello world");
    assert_eq!(t.encode("<|endoftext|>").unwrap(), [50256]);
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.eos_id(), Some(50256));
    assert_eq!(t.pad_id(), None);
    let text = "  Spaces, ünïcödé and 12345\n";
    assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
    assert!(matches!(t.decode(&[50257]), Err(ModelError::Config { .. })));
}

/// GGUF v3 bytes with the given metadata (key, type, payload) and no tensors.
fn gguf_bytes(kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, ty, payload) in kvs {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
        out.extend(ty.to_le_bytes());
        out.extend(payload);
    }
    out
}

fn gstr(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend(s.as_bytes());
    v
}

fn str_array(items: &[String]) -> Vec<u8> {
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for s in items {
        v.extend(gstr(s));
    }
    v
}

fn i32_array(items: &[i32]) -> Vec<u8> {
    let mut v = 5u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for x in items {
        v.extend(x.to_le_bytes());
    }
    v
}

/// GPT-2's byte → character table, written out independently of the crate: printable bytes map
/// to themselves, the others to U+0100.. in byte order.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        b as char
    } else {
        char::from_u32(256 + (0..b).filter(|&x| !printable(x)).count() as u32).unwrap()
    }
}

/// A toy byte-level vocabulary: ids 0..256 the bytes, 256 "ab", 257 "abc", 258 "Ġa",
/// 259 "<|end|>" (control), 260 "12".
fn toy(pre: &str, add_bos: bool, model: &str) -> GgufFile {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.extend(["ab", "abc", "Ġa", "<|end|>", "12"].map(String::from));
    let mut types = vec![1i32; tokens.len()];
    types[259] = 3;
    let merges: Vec<String> = ["a b", "ab c", "Ġ a", "1 2"].map(String::from).to_vec();
    let bytes = gguf_bytes(&[
        ("tokenizer.ggml.model", 8, gstr(model)),
        ("tokenizer.ggml.pre", 8, gstr(pre)),
        ("tokenizer.ggml.tokens", 9, str_array(&tokens)),
        ("tokenizer.ggml.token_type", 9, i32_array(&types)),
        ("tokenizer.ggml.merges", 9, str_array(&merges)),
        (
            "tokenizer.ggml.bos_token_id",
            4,
            259u32.to_le_bytes().to_vec(),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            4,
            259u32.to_le_bytes().to_vec(),
        ),
        ("tokenizer.ggml.add_bos_token", 7, vec![add_bos as u8]),
    ]);
    GgufFile::parse("toy.gguf", bytes).unwrap()
}

#[test]
fn toy_gguf_bpe_closed_form() {
    assert_eq!(byte_char(b' '), 'Ġ');
    let t = Tokenizer::from_gguf(&toy("smollm", false, "gpt2")).unwrap();
    assert_eq!(t.vocab_size(), 261);
    assert_eq!((t.eos_id(), t.pad_id()), (Some(259), None));
    // "abc ab" → ["abc", "Ġab"]: a+b (rank 0) then ab+c; in "Ġab", a+b (rank 0) beats Ġ+a
    // (rank 2) and leaves [Ġ, ab]. "<|end|>" is matched whole. "ca" has no merge.
    let text = "abc ab<|end|>ca";
    let ids = t.encode(text).unwrap();
    assert_eq!(ids, [257, 32, 256, 259, 99, 97]);
    assert_eq!(t.decode(&ids).unwrap(), text);
    // "smollm" splits digits one by one, so the merge "1 2" never applies; " a" merges to Ġa.
    assert_eq!(t.encode("x12 a").unwrap(), [120, 49, 50, 258]);
    // Non-ASCII goes byte by byte: "é" = C3 A9.
    assert_eq!(t.encode("é").unwrap(), [0xC3, 0xA9]);
    assert_eq!(t.decode(&[0xC3, 0xA9]).unwrap(), "é");
    assert!(matches!(t.decode(&[261]), Err(ModelError::Config { .. })));
    // Plain GPT-2 pre-tokenizer keeps "12" together, so the merge applies.
    let t = Tokenizer::from_gguf(&toy("gpt2", false, "gpt2")).unwrap();
    assert_eq!(t.encode("x12 a").unwrap(), [120, 260, 258]);
    // add_bos_token = true prepends bos.
    let t = Tokenizer::from_gguf(&toy("smollm", true, "gpt2")).unwrap();
    assert_eq!(t.encode("ab").unwrap(), [259, 256]);
}

#[test]
fn toy_gguf_errors_name_the_key() {
    let e = Tokenizer::from_gguf(&toy("smollm", false, "llama")).unwrap_err();
    assert!(
        matches!(&e, ModelError::Config { key, .. } if key == "tokenizer.ggml.model"),
        "{e:?}"
    );
    let e = Tokenizer::from_gguf(&toy("qwen2-unknown", false, "gpt2")).unwrap_err();
    assert!(
        matches!(&e, ModelError::Config { key, .. } if key == "tokenizer.ggml.pre"),
        "{e:?}"
    );
    assert!(e.to_string().contains("toy.gguf"), "{e}");
    let small = GgufFile::open(fixtures().join("gguf_small.gguf")).unwrap();
    let e = Tokenizer::from_gguf(&small).unwrap_err();
    assert!(matches!(&e, ModelError::MissingKey { key, .. } if key.starts_with("tokenizer.ggml")));
}

#[test]
fn real_smollm2_matches_transformers_ids() {
    let Some(p) = real_gguf() else { return };
    let g = GgufFile::open(&p).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smollm2_tokens.json")).unwrap(),
    )
    .unwrap();
    let cases = json.as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(t.encode(text).unwrap(), want, "{text:?}");
        assert_eq!(t.decode(&want).unwrap(), text, "{want:?}");
    }
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.pad_id(), Some(2));
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
}

#[test]
fn real_smollm2_header() {
    let Some(p) = real_gguf() else { return };
    let g = GgufFile::open(&p).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_u64("llama.embedding_length").unwrap(), 576);
    assert_eq!(g.get_u64("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(g.get_u64("llama.attention.head_count").unwrap(), 9);
    assert_eq!(g.get_u64("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        g.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        48900
    );
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    let theta = g.get_f32("llama.rope.freq_base").unwrap();
    let eps = g.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap();
    println!("llama.rope.freq_base = {theta}, llama.attention.layer_norm_rms_epsilon = {eps:e}");
    assert_eq!(theta, 100000.0);
    assert_eq!(eps, 1e-5);
    let emb = g.tensor_info("token_embd.weight").unwrap();
    assert_eq!(
        (emb.shape.as_slice(), emb.ggml_type),
        (&[49152usize, 576][..], 8)
    );
    assert!(
        g.tensor_info("output.weight").is_none(),
        "output tied to token_embd"
    );
}

/// A Hugging Face directory's `vocab.json` + `merges.txt` (byte-level BPE): ids by hand from
/// the merges, `Ġ` for the space byte.
#[test]
fn hf_dir_vocab_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = r#"{"h": 0, "i": 1, "Ġ": 2, "t": 3, "hi": 4, "Ġt": 5, "<|endoftext|>": 6}"#;
    std::fs::write(tmp.path().join("vocab.json"), vocab).unwrap();
    std::fs::write(tmp.path().join("merges.txt"), "#version: 0.2\nh i\nĠ t\n").unwrap();
    let t = Tokenizer::from_hf_dir(tmp.path()).unwrap();
    assert_eq!(t.encode("hi t<|endoftext|>").unwrap(), [4, 5, 6]);
    assert_eq!(t.decode(&[4, 5, 6]).unwrap(), "hi t<|endoftext|>");
    assert_eq!(t.vocab_size(), 7);
    let empty = tempfile::tempdir().unwrap();
    let e = Tokenizer::from_hf_dir(empty.path()).unwrap_err();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    // A GPT-2 directory without tokenizer files gets r50k only with the full vocabulary.
    assert!(Tokenizer::from_model_path(&fixtures().join("gpt2_a")).is_err());
}
