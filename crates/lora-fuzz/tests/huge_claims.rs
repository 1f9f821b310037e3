//! Headers that claim more than the file holds (2^60 tensors, a 2^40-byte tensor, a 2^40-byte
//! safetensors header, an array of 2^60 strings) are errors naming what was claimed, and
//! nothing close to the claim is allocated: each input runs through its fuzz target under the
//! counting allocator, whose largest single request must stay under 1 MiB.

use lora_fuzz::{replay, target, Outcome};
use std::time::Duration;

#[global_allocator]
static ALLOC: lora_fuzz::CountingAlloc = lora_fuzz::CountingAlloc;

/// The error of `input` through target `name`, checking the largest allocation.
fn error_of(name: &str, input: Vec<u8>) -> String {
    assert!(lora_fuzz::alloc::is_installed());
    match replay(target(name).unwrap(), input, Duration::from_secs(20)) {
        Outcome::Returned {
            error: Some(e),
            peak,
        } => {
            assert!(
                peak < 1 << 20,
                "{name}: allocated {peak} bytes at once ({e})"
            );
            e
        }
        o => panic!("{name}: expected an error, got {o:?}"),
    }
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A GGUF v3 header: magic, version, tensor count, metadata count.
fn gguf_header(tensors: u64, kvs: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(tensors.to_le_bytes());
    b.extend(kvs.to_le_bytes());
    b
}

#[test]
fn gguf_tensor_count_of_2_pow_60() {
    let e = error_of("gguf", gguf_header(1 << 60, 0));
    assert!(e.contains("tensor_count = 1152921504606846976"), "{e}");
}

#[test]
fn gguf_metadata_count_and_array_length_of_2_pow_60() {
    let e = error_of("gguf", gguf_header(0, 1 << 60));
    assert!(e.contains("kv_count = 1152921504606846976"), "{e}");
    let mut b = gguf_header(0, 1);
    gguf_string(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes()); // array
    b.extend(8u32.to_le_bytes()); // of strings
    b.extend((1u64 << 60).to_le_bytes());
    b.extend([0u8; 64]);
    let e = error_of("gguf", b);
    assert!(
        e.contains("length of array `tokenizer.ggml.tokens` = 1152921504606846976"),
        "{e}"
    );
}

#[test]
fn gguf_tensor_of_2_pow_40_bytes() {
    let mut b = gguf_header(1, 0);
    gguf_string(&mut b, "w");
    b.extend(2u32.to_le_bytes()); // n_dims
    b.extend((1u64 << 19).to_le_bytes());
    b.extend((1u64 << 19).to_le_bytes()); // 2^38 f32 values = 2^40 bytes
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().div_ceil(32) * 32 + 64, 0);
    let e = error_of("gguf", b);
    assert!(
        e.contains("tensor `w`") && e.contains("needs 1099511627776 bytes"),
        "{e}"
    );
}

/// A safetensors file: `header` JSON, then `data`.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header.as_bytes());
    b.extend(data);
    b
}

#[test]
fn safetensors_header_length_and_tensor_of_2_pow_40_bytes() {
    let mut b = (1u64 << 40).to_le_bytes().to_vec();
    b.extend(b"{}");
    let e = error_of("safetensors", b);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let h = r#"{"w":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}}"#;
    let e = error_of("safetensors", safetensors(h, &[0; 16]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
    // Shape and offsets that disagree, and a shape whose byte size overflows.
    let h = r#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#;
    let e = error_of("safetensors", safetensors(h, &[0; 16]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn quant_state_shape_of_2_pow_40_values() {
    let json = r#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [1048576, 1048576], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5}"#;
    let e = error_of("bnb_quant_state", json.as_bytes().to_vec());
    assert!(e.contains("w.quant_state.bitsandbytes__nf4"), "{e}");
}
