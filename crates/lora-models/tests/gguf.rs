//! Tests of the GGUF reader against gguf-py (fixture `tests/fixtures/gguf_small.gguf` +
//! `gguf_small_ref.safetensors`, written by `tests/fixtures/make_fixtures.py`), against
//! hand-built blocks with closed-form values, and against corrupt files.

use lora_models::gguf::{
    dequantize_q4_0, dequantize_q4_1, dequantize_q8_0, GgufFile, GgufValue, GGML_TYPE_Q4_1,
    GGML_TYPE_Q8_0,
};
use lora_models::st::StFile;
use lora_models::ModelError;
use std::path::Path;

mod common;
use common::fixtures;

fn small() -> GgufFile {
    GgufFile::open(fixtures().join("gguf_small.gguf")).expect("open gguf_small.gguf")
}

fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// Minimal GGUF v3 writer for hand-built files (independent of gguf-py).
struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_t: u64,
    data: Vec<u8>,
    align: usize,
}

impl Writer {
    fn new(align: usize) -> Self {
        Self {
            kv: vec![],
            n_kv: 0,
            infos: vec![],
            n_t: 0,
            data: vec![],
            align,
        }
    }
    fn s(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }
    fn kv(&mut self, key: &str, ty: u32, payload: &[u8]) {
        Self::s(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(payload);
        self.n_kv += 1;
    }
    fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, bytes: &[u8]) {
        while self.data.len() % self.align != 0 {
            self.data.push(0);
        }
        Self::s(&mut self.infos, name);
        self.infos.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_t += 1;
    }
    fn finish(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_t.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        while out.len() % self.align != 0 {
            out.push(0);
        }
        out.extend(&self.data);
        out
    }
}

/// Q4_1 block: d = 0.5, m = -1, qs[j] = j | (15 - j) << 4.
fn q4_1_block() -> (Vec<u8>, Vec<f32>) {
    let mut b = f16(0.5).to_vec();
    b.extend(f16(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut want: Vec<f32> = (0..16).map(|j| j as f32 * 0.5 - 1.0).collect();
    want.extend((0..16).map(|j| (15 - j) as f32 * 0.5 - 1.0));
    (b, want)
}

/// Q8_0 block: d = 0.25, q[j] = 3j - 50 (covers negatives).
fn q8_0_block() -> (Vec<u8>, Vec<f32>) {
    let mut b = f16(0.25).to_vec();
    b.extend((0..32i32).map(|j| (3 * j - 50) as i8 as u8));
    (b, (0..32).map(|j| (3 * j - 50) as f32 * 0.25).collect())
}

#[test]
fn fixture_tensors_match_gguf_py() {
    let g = small();
    let r = StFile::open(fixtures().join("gguf_small_ref.safetensors")).unwrap();
    assert_eq!(g.version(), 3);
    let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["q4_1", "q8_0", "f16", "f32"]);
    let types: Vec<u32> = g.tensors().iter().map(|t| t.ggml_type).collect();
    assert_eq!(types, [3, 8, 1, 0]);
    for name in names {
        let (got, shape) = g.tensor_f32(name).unwrap();
        let (want, want_shape) = r.f32(name).unwrap();
        assert_eq!(shape, want_shape, "{name}: shape (PyTorch order)");
        assert_eq!(got.len(), want.len());
        let (mut max_abs, mut max_rel) = (0f32, 0f32);
        for (a, b) in got.iter().zip(&want) {
            max_abs = max_abs.max((a - b).abs());
            max_rel = max_rel.max((a - b).abs() / b.abs().max(1e-30));
        }
        println!("{name} {shape:?}: max |diff| {max_abs:e}, max rel {max_rel:e}");
        if name == "q4_1" {
            assert!(max_rel <= 1e-6, "{name}: max relative difference {max_rel}");
        } else {
            assert_eq!(got, want, "{name}: expected bit-exact values");
        }
    }
    // The fixture has an outlier (~40) somewhere: make sure a large value survived.
    let (q8, _) = g.tensor_f32("q8_0").unwrap();
    assert!(q8.iter().any(|v| v.abs() > 10.0));
}

#[test]
fn fixture_metadata() {
    let g = small();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get("test.u32"), Some(&GgufValue::U32(4_000_000_000)));
    assert_eq!(g.get_u64("test.u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get_f32("test.f32").unwrap(), 0.15625);
    assert_eq!(g.get_str("test.string").unwrap(), "héllo, wörld");
    assert_eq!(
        g.get_str_array("test.str_array").unwrap(),
        ["alpha", "", "gamma δ"]
    );
    assert!(g.get_bool("test.bool").unwrap());
    assert_eq!(g.metadata().len(), 6);

    let p = fixtures().join("gguf_small.gguf");
    match g.get_u64("test.nope") {
        Err(ModelError::MissingKey { path, key }) => {
            assert_eq!(path, p);
            assert_eq!(key, "test.nope");
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    for e in [
        g.get_u64("test.string").unwrap_err(),
        g.get_f32("test.u32").unwrap_err(),
        g.get_str("test.bool").unwrap_err(),
        g.get_str_array("test.string").unwrap_err(),
    ] {
        assert!(
            matches!(&e, ModelError::Config { path, .. } if *path == p),
            "{e:?}"
        );
        assert!(e.to_string().contains("gguf_small.gguf"), "{e}");
    }
    match g.tensor_f32("missing") {
        Err(ModelError::MissingKey { key, .. }) => assert_eq!(key, "missing"),
        other => panic!("expected MissingKey, got {other:?}"),
    }
}

#[test]
fn hand_built_blocks_closed_form() {
    let (b, want) = q4_1_block();
    assert_eq!(dequantize_q4_1(&b, 32), want);
    let (b, want) = q8_0_block();
    assert_eq!(dequantize_q8_0(&b, 32), want);
    // Q4_0: d = 2, qs[j] = j | (15 - j) << 4 → (j - 8) * 2, (7 - j) * 2.
    let mut b = f16(2.0).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut want: Vec<f32> = (0..16).map(|j| (j - 8) as f32 * 2.0).collect();
    want.extend((0..16).map(|j| (7 - j) as f32 * 2.0));
    assert_eq!(dequantize_q4_0(&b, 32), want);
}

#[test]
fn large_tensors_split_over_threads_match_per_block() {
    // 8192 blocks (262,144 values): the threaded path; each block has its own d, m, qs.
    let blocks = 8192;
    let mut b = Vec::new();
    let mut want = Vec::new();
    let mut seed = 12345u32;
    for k in 0..blocks {
        let d = (k % 97) as f32 / 64.0;
        let m = -((k % 13) as f32) / 8.0;
        b.extend(f16(d));
        b.extend(f16(m));
        let mut qs = [0u8; 16];
        for q in &mut qs {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *q = (seed >> 16) as u8;
        }
        b.extend(qs);
        let (d, m) = (
            half::f16::from_f32(d).to_f32(),
            half::f16::from_f32(m).to_f32(),
        );
        let lo = qs.iter().map(|q| (q & 0xF) as f32 * d + m);
        let hi = qs.iter().map(|q| (q >> 4) as f32 * d + m);
        want.extend(lo.chain(hi));
    }
    assert_eq!(dequantize_q4_1(&b, blocks * 32), want);
}

#[test]
fn hand_built_file_alignment_offsets_and_types() {
    let mut w = Writer::new(64);
    w.kv("general.alignment", 4, &64u32.to_le_bytes());
    w.kv("x.i8", 1, &[0xFE]); // -2
    w.kv("x.f64", 12, &0.1f64.to_le_bytes());
    let mut arr = 5u32.to_le_bytes().to_vec(); // array of i32
    arr.extend(3u64.to_le_bytes());
    for v in [-1i32, 0, 7] {
        arr.extend(v.to_le_bytes());
    }
    w.kv("x.ints", 9, &arr);
    let (q41, q41_want) = q4_1_block();
    let mut q41_2 = q41.clone();
    q41_2.extend(&q41); // ne = [64, 1]: two blocks in one row
    w.tensor("a", &[64, 1], GGML_TYPE_Q4_1, &q41_2);
    let (q80, q80_want) = q8_0_block();
    w.tensor("b", &[32], GGML_TYPE_Q8_0, &q80);
    let bf: Vec<u8> = [1.5f32, -2.0, 3.0e5, 0.0, 1.0, -0.5]
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    w.tensor("c", &[3, 2], 30, &bf); // BF16, numpy shape [2, 3]
    w.tensor("k", &[256], 12, &[0u8; 144]); // Q4_K: known size, not dequantized here
    let bytes = w.finish();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hand.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let g = GgufFile::open(&p).unwrap();
    assert_eq!(g.data_start() % 64, 0);
    assert_eq!(
        g.get_u64("x.i8").unwrap_err().to_string(),
        format!(
            "{}: bad config value `x.i8`: is -2, expected a non-negative integer",
            p.display()
        )
    );
    assert_eq!(g.get_f32("x.f64").unwrap(), 0.1f64 as f32);
    assert_eq!(g.get_int_array("x.ints").unwrap(), [-1, 0, 7]);
    let (a, shape) = g.tensor_f32("a").unwrap();
    assert_eq!(shape, [1, 64]);
    assert_eq!(a[..32], q41_want[..]);
    assert_eq!(a[32..], q41_want[..]);
    let (b, shape) = g.tensor_f32("b").unwrap();
    assert_eq!((b, shape), (q80_want, vec![32]));
    let (c, shape) = g.tensor_f32("c").unwrap();
    assert_eq!(shape, [2, 3]);
    assert_eq!(c, [1.5, -2.0, 299008.0, 0.0, 1.0, -0.5]); // 3e5 rounds to bf16 299008
    match g.tensor_f32("k") {
        Err(ModelError::Dtype { key, dtype, path }) => {
            assert_eq!((key.as_str(), path), ("k", p.clone()));
            assert!(dtype.contains("Q4_K"), "{dtype}");
        }
        other => panic!("expected Dtype, got {other:?}"),
    }
    // Every strict prefix of this file is refused too (the last tensor's bytes are the end).
    for cut in 0..bytes.len() {
        let r = GgufFile::parse(&p, bytes[..cut].to_vec());
        assert!(
            matches!(r, Err(ModelError::Format { .. })),
            "prefix of {cut} bytes: {r:?}"
        );
    }
}

fn expect_format(r: Result<GgufFile, ModelError>, file: &Path, needle: &str) {
    match r {
        Err(e @ ModelError::Format { .. }) => {
            let s = e.to_string();
            assert!(s.contains(&file.display().to_string()), "{s}");
            assert!(s.contains(needle), "`{s}` should mention `{needle}`");
        }
        other => panic!("expected a Format error mentioning {needle}, got {other:?}"),
    }
}

#[test]
fn truncated_and_bad_magic_files_are_errors_naming_the_file() {
    let bytes = std::fs::read(fixtures().join("gguf_small.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // gguf-py pads the file after the last tensor (f32, 6 values) to the 32-byte alignment.
    let g = small();
    let last = g.tensors().last().unwrap();
    let data_end = g.data_start() + last.offset as usize + 4 * last.n_elements();
    assert_eq!(bytes.len().div_ceil(32) * 32, bytes.len());
    assert!(data_end <= bytes.len() && bytes.len() - data_end < 32);
    let p = dir.path().join("trunc.gguf");
    std::fs::write(&p, &bytes[..data_end - 1]).unwrap();
    expect_format(GgufFile::open(&p), &p, "truncated GGUF file: tensor `f32`");
    std::fs::write(&p, &bytes[..100]).unwrap();
    expect_format(GgufFile::open(&p), &p, "truncated");
    // Every prefix, through `parse` (no disk): all errors, none panics; only the trailing
    // padding may be cut.
    for cut in 0..bytes.len() {
        let r = GgufFile::parse(&p, bytes[..cut].to_vec());
        if cut < data_end {
            assert!(
                matches!(r, Err(ModelError::Format { .. })),
                "prefix of {cut} bytes: {r:?}"
            );
        } else {
            assert_eq!(
                r.unwrap().tensor_f32("f32").unwrap(),
                g.tensor_f32("f32").unwrap()
            );
        }
    }

    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"GGML");
    let p = dir.path().join("magic.gguf");
    std::fs::write(&p, &bad).unwrap();
    expect_format(GgufFile::open(&p), &p, "magic");

    let mut v1 = bytes.clone();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    expect_format(GgufFile::parse(&p, v1), &p, "version");

    // Unknown metadata value type: the type of the first KV (after 24-byte header + key).
    let key_len = u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize;
    let at = 32 + key_len;
    let mut badty = bytes.clone();
    badty[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    expect_format(GgufFile::parse(&p, badty), &p, "unknown value type 13");

    // A huge array length must be refused before allocating.
    let mut w = Writer::new(32);
    let mut arr = 8u32.to_le_bytes().to_vec();
    arr.extend(u64::MAX.to_le_bytes());
    w.kv("x.arr", 9, &arr);
    expect_format(
        GgufFile::parse(&p, w.finish()),
        &p,
        "length of array `x.arr`",
    );

    let missing = dir.path().join("absent.gguf");
    assert!(matches!(
        GgufFile::open(&missing),
        Err(ModelError::Io { .. })
    ));
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = std::fs::read(fixtures().join("gguf_small.gguf")).unwrap();
    let mut seed = 7u64;
    for i in 0..bytes.len() {
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut b = bytes.clone();
            b[i] = (seed >> 56) as u8;
            if let Ok(g) = GgufFile::parse("corrupt.gguf", b) {
                for t in g.tensors() {
                    let _ = g.tensor_f32(&t.name);
                }
            }
        }
    }
}

use common::real_gguf;

/// Dequantizes every tensor of the real model and checks five against gguf-py. Expected values
/// from gguf-py 0.x (`GGUFReader` + `gguf.quants.dequantize`, reshaped to reversed `t.shape`):
/// the f64 sum and elements 0, 1, 12345 % n and n - 1 of the flattened tensor.
#[test]
#[allow(clippy::excessive_precision)] // the exact decimal expansions gguf-py printed
fn real_smollm2_tensors_match_gguf_py() {
    let Some(p) = real_gguf() else { return };
    let t0 = std::time::Instant::now();
    let g = GgufFile::open(&p).unwrap();
    assert_eq!(g.tensors().len(), 272);
    let mut n_params = 0;
    for t in g.tensors() {
        let (v, shape) = g.tensor_f32(&t.name).unwrap();
        assert_eq!(v.len(), shape.iter().product::<usize>());
        n_params += v.len();
    }
    println!(
        "opened and dequantized {n_params} values in {:.2?}",
        t0.elapsed()
    );
    assert_eq!(n_params, 134_515_008);
    let cases: [(&str, &[usize], f64, [f32; 4]); 5] = [
        (
            "token_embd.weight",
            &[49152, 576],
            -15353.04449415207,
            [
                -0.10654449462890625,
                0.032978057861328125,
                0.031005859375,
                -0.0417022705078125,
            ],
        ),
        (
            "blk.0.attn_norm.weight",
            &[576],
            0.6129436492919922,
            [
                0.01397705078125,
                0.0238037109375,
                0.05810546875,
                -0.038330078125,
            ],
        ),
        (
            "blk.0.attn_q.weight",
            &[576, 576],
            59.22322082519531,
            [-0.0963134765625, 0.1573486328125, 0.12109375, -0.255859375],
        ),
        (
            "blk.29.ffn_down.weight",
            &[576, 1536],
            49.83570861816406,
            [
                -0.2733154296875,
                0.186279296875,
                -0.04498291015625,
                0.056640625,
            ],
        ),
        (
            "output_norm.weight",
            &[576],
            1038.33203125,
            [1.7578125, 1.8203125, 1.8046875, 1.984375],
        ),
    ];
    for (name, shape, sum, elems) in cases {
        let (v, s) = g.tensor_f32(name).unwrap();
        assert_eq!(s, shape, "{name}");
        let n = v.len();
        assert_eq!([v[0], v[1], v[12345 % n], v[n - 1]], elems, "{name}");
        let got: f64 = v.iter().map(|&x| x as f64).sum();
        assert!(
            (got - sum).abs() <= 1e-9 * sum.abs().max(1.0),
            "{name}: sum {got} vs {sum}"
        );
    }
}
