//! Fixture access for the lora-quant tests: safetensors files written by bitsandbytes with
//! `tests/fixtures/quant/make_quant_fixtures.py`.
#![allow(dead_code)]

use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

/// One fixture file, read into memory.
pub struct Fixture {
    bytes: Vec<u8>,
    name: String,
}

pub fn fixture(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/quant")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Fixture {
        bytes,
        name: name.to_string(),
    }
}

impl Fixture {
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors")
    }

    pub fn has(&self, key: &str) -> bool {
        self.st().tensor(key).is_ok()
    }

    pub fn shape(&self, key: &str) -> Vec<usize> {
        self.st()
            .tensor(key)
            .unwrap_or_else(|_| panic!("{}: no tensor {key}", self.name))
            .shape()
            .to_vec()
    }

    pub fn is_u8(&self, key: &str) -> bool {
        self.st()
            .tensor(key)
            .map(|t| t.dtype() == Dtype::U8)
            .unwrap_or(false)
    }

    fn raw(&self, key: &str, dtype: Dtype) -> Vec<u8> {
        let st = self.st();
        let t = st
            .tensor(key)
            .unwrap_or_else(|_| panic!("{}: no tensor {key}", self.name));
        assert_eq!(t.dtype(), dtype, "{}: dtype of {key}", self.name);
        t.data().to_vec()
    }

    pub fn f32(&self, key: &str) -> Vec<f32> {
        self.raw(key, Dtype::F32)
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn u8(&self, key: &str) -> Vec<u8> {
        self.raw(key, Dtype::U8)
    }

    pub fn i8(&self, key: &str) -> Vec<i8> {
        self.raw(key, Dtype::I8)
            .into_iter()
            .map(|b| b as i8)
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.st()
            .names()
            .into_iter()
            .map(|s| s.to_string())
            .collect()
    }
}

/// Asserts bit equality of two f32 slices, reporting the first difference and its size in ulps.
pub fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some((i, (g, w))) = got
        .iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g.to_bits() != w.to_bits())
    {
        let diffs = got
            .iter()
            .zip(want)
            .filter(|(g, w)| g.to_bits() != w.to_bits())
            .count();
        panic!(
            "{what}: {diffs} values differ; first at {i}: got {g:e} want {w:e} ({} ulp)",
            (g.to_bits() as i64 - w.to_bits() as i64).abs()
        );
    }
}
