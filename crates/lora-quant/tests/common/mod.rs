//! Shared helpers of the lora-quant tests: fixture access (safetensors files written by
//! bitsandbytes with `tests/fixtures/quant/make_quant_fixtures.py`, and the transformers
//! checkpoints of `tests/fixtures/quant/bnb_interop.py`), bit-exact comparison, scratch
//! directories.
#![allow(dead_code)]

use lora_quant::bnb::{BnbData, BnbTensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

// ---- whole safetensors files (transformers checkpoints, converted files) -----------------------

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn quant_dir() -> PathBuf {
    root().join("tests/fixtures/quant")
}

/// A safetensors tensor: dtype, shape, raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

pub fn load(path: &Path) -> BTreeMap<String, Raw> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.iter()
        .map(|(k, t)| {
            (
                k.to_string(),
                Raw {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    bytes: t.data().to_vec(),
                },
            )
        })
        .collect()
}

pub fn f32s(r: &Raw) -> Vec<f32> {
    assert_eq!(r.dtype, Dtype::F32);
    r.bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn to_bnb(r: &Raw) -> BnbTensor {
    let data = match r.dtype {
        Dtype::U8 => BnbData::U8(r.bytes.clone()),
        Dtype::I8 => BnbData::I8(r.bytes.iter().map(|&b| b as i8).collect()),
        Dtype::F32 => BnbData::F32(f32s(r)),
        d => panic!("unexpected dtype {d:?}"),
    };
    BnbTensor {
        shape: r.shape.clone(),
        data,
    }
}

pub fn to_raw(t: &BnbTensor) -> Raw {
    let (dtype, bytes) = match &t.data {
        BnbData::U8(v) => (Dtype::U8, v.clone()),
        BnbData::I8(v) => (Dtype::I8, v.iter().map(|&x| x as u8).collect()),
        BnbData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    Raw {
        dtype,
        shape: t.shape.clone(),
        bytes,
    }
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lora-quant-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
