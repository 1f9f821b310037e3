//! Parity of the feature-selected backend (`lora_burn::Backend`: ndarray, wgpu or cuda) with the
//! reference libraries, from one test binary that also runs on a GPU host:
//!
//! - GPT-2 and Llama logits vs transformers (`tests/fixtures/*/io.safetensors`, written by
//!   `tests/fixtures/make_fixtures.py`);
//! - PEFT-written adapters loaded and applied, and merged (`merge_and_unload`), vs PEFT's logits;
//! - NF4 (plain and double-quantized) and LLM.int8 dequantization on the device vs bitsandbytes
//!   (`tests/fixtures/quant/*.safetensors`, `make_quant_fixtures.py`).
//!
//! Error measure: `rel = ‖out − ref‖₂ / ‖ref‖₂` (relative L2 error), with the max |diff| printed
//! too. Bounds per precision of the matrix products:
//!
//! | precision | where | bound on rel |
//! |---|---|---|
//! | f32  | ndarray; wgpu (no TF32 units there) | 1e-5 |
//! | tf32 | cuda: cubek-matmul runs f32 inputs on the tensor cores as TF32 (10-bit mantissa) | 3e-3 |
//! | bf16 | `--precision bf16` compute (8-bit mantissa) | 3e-2 |
//!
//! Quantized dequantization is a table lookup times a scale: exact on every backend for plain
//! NF4 and int8; for double quantization the GPU compilers may fuse the absmax reconstruction
//! (`code2[q]·absmax2 + offset`) into one FMA, so the bound there is 1 ulp (rel 2e-7).
//!
//! On a GPU: `cargo test --release --no-default-features --features cuda --test backend_parity`
//! (or build it with `--no-run` and copy the binary to a GPU host without a Rust toolchain; run
//! it from the repository root, as it reads `tests/fixtures` relative to the working directory).
//! `LORA_BURN_PARITY_PRECISION=tf32|f32` overrides the bound chosen from the backend.

use burn::tensor::{Int, Tensor, TensorData};
use lora_burn::Backend as B;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{load_adapter, merge_and_unload};
use lora_quant::{quantize_int8_vectorwise, quantize_nf4_shaped, Int8Linear, QuantLinear};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    let local = PathBuf::from("tests/fixtures");
    if local.join("gpt2_a").is_dir() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }
}

/// The precision of f32 matrix products on this backend, and its bound on `rel`.
fn precision() -> (&'static str, f64) {
    let p = std::env::var("LORA_BURN_PARITY_PRECISION").unwrap_or_else(|_| {
        if cfg!(feature = "cuda-base") {
            "tf32".into()
        } else {
            "f32".into()
        }
    });
    match p.as_str() {
        "tf32" => ("tf32", 3e-3),
        "bf16" => ("bf16", 3e-2),
        _ => ("f32", 1e-5),
    }
}

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// (`rel`, max |diff|).
fn errors(got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "length");
    let (mut num, mut den, mut max) = (0.0f64, 0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g}");
        let d = (g as f64 - w as f64).abs();
        num += d * d;
        den += (w as f64) * (w as f64);
        max = max.max(d);
    }
    ((num / den.max(1e-300)).sqrt(), max)
}

fn check(case: &str, got: &[f32], want: &[f32], bound: f64, prec: &str) {
    let (rel, max) = errors(got, want);
    println!(
        "PARITY {:<8} {:<8} {case:<34} rel {rel:.2e}  max|diff| {max:.2e}  (bound {bound:.0e})",
        lora_burn::backend_name(),
        prec
    );
    assert!(rel <= bound, "{case}: rel {rel:e} > {bound:e} ({prec})");
}

fn io(fx: &str) -> (Tensor<B, 2, Int>, StFile) {
    let st = StFile::open(fixtures().join(fx).join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st)
}

/// Base logits vs transformers; then the PEFT adapter `adapter` (if any) vs PEFT, and merged.
fn model_case<M: LanguageModel<B>>(mut m: M, base_fx: &str, adapter: Option<&str>) {
    let (prec, bound) = precision();
    let (ids, st) = io(base_fx);
    let (want, _) = st.f32("logits").unwrap();
    check(
        &format!("{base_fx} logits vs transformers"),
        &to_vec(m.forward(ids)),
        &want,
        bound,
        prec,
    );
    if let Some(a) = adapter {
        let dir = fixtures().join(a);
        load_adapter(&mut m, &dir, &Default::default()).unwrap();
        let (ids, st) = io(a);
        let (want, _) = st.f32("logits").unwrap();
        check(
            &format!("{a} vs PEFT"),
            &to_vec(m.forward(ids.clone())),
            &want,
            bound,
            prec,
        );
        let (want_m, _) = st.f32("logits_merged").unwrap();
        assert!(merge_and_unload(&mut m).unwrap() > 0);
        check(
            &format!("{a} merged vs PEFT"),
            &to_vec(m.forward(ids)),
            &want_m,
            bound,
            prec,
        );
    }
}

#[test]
fn gpt2_and_peft_adapter() {
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_a"), &Default::default()).unwrap();
    model_case(m, "gpt2_a", Some("gpt2_a_lora"));
    let (m, _) = Gpt2::<B>::load(&fixtures().join("gpt2_b"), &Default::default()).unwrap();
    model_case(m, "gpt2_b", None);
}

#[test]
fn llama_and_peft_adapter() {
    let (m, _) = Llama::<B>::load_hf(&fixtures().join("llama_a"), &Default::default()).unwrap();
    model_case(m, "llama_a", Some("llama_a_lora"));
}

#[test]
fn nf4_and_int8_dequantization_vs_bitsandbytes() {
    let dev = Default::default();
    let q = fixtures().join("quant");
    let nf = StFile::open(q.join("nf4.safetensors")).unwrap();
    let dq = StFile::open(q.join("dq.safetensors")).unwrap();
    let (w, _) = nf.f32("w33x70").unwrap();
    for bs in [32usize, 64, 128, 256, 4096] {
        let t = quantize_nf4_shaped(&w, &[33, 70], bs, false).unwrap();
        let l = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
        // dequantize_weight is [d_out, d_in] = the torch layout of the fixture
        let (want, _) = nf.f32(&format!("w33x70.b{bs}.deq")).unwrap();
        check(
            &format!("nf4 bs{bs} dequant vs bnb"),
            &to_vec(l.dequantize_weight()),
            &want,
            0.0,
            "exact",
        );
    }
    let t = quantize_nf4_shaped(&w, &[33, 70], 64, true).unwrap();
    let l = QuantLinear::<B>::from_nf4(&t, &dev).unwrap();
    let (want, _) = dq.f32("w33x70.b64.dq.deq").unwrap();
    check(
        "nf4-dq bs64 dequant vs bnb",
        &to_vec(l.dequantize_weight()),
        &want,
        2e-7,
        "1 ulp",
    );

    let i8f = StFile::open(q.join("int8.safetensors")).unwrap();
    let (a, _) = i8f.f32("a").unwrap();
    let host = quantize_int8_vectorwise(&a, 33, 70).unwrap();
    let l = Int8Linear::<B>::from_int8(&host, &dev).unwrap();
    let (want, _) = i8f.f32("a.deq").unwrap();
    check(
        "int8 vectorwise dequant vs bnb",
        &to_vec(l.dequantize_weight()),
        &want,
        0.0,
        "exact",
    );
}
