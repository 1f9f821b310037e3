//! `--matmul-bench`: single matrix products at the shapes of one GPT-2 training step.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use lora_models::gpt2::Gpt2Config;
use std::time::Instant;

use super::options::BenchOptions;
use super::report::JsonSink;
use super::timing::{panic_message, sync};
use crate::AnyError;

/// Times `x·w` at the matrix shapes of one GPT-2 training step (`M = batch·seq` rows), f32 and
/// bf16 inputs, in the two forms the model uses: 2-D `[M, K]·[K, N]` and
/// `burn::tensor::module::linear` on `[batch, seq, K]` (the LoRA layers' base product). 3
/// warm-up products, then 20 products (outputs kept alive until the sync) and one sync; prints
/// ms per product and TFLOP/s (2·M·K·N) as JSON lines (`"side": "ours", "kind": "matmul"`) on
/// stdout and to `json`. bf16 is skipped on a `backend` whose name starts with "ndarray".
///
/// # Errors
/// Serialising or writing a JSON line. A product that fails or panics is reported in its
/// line (`"error"`), and the bench goes on.
pub fn matmul_bench<B: AutodiffBackend>(
    opts: &BenchOptions,
    c: &Gpt2Config,
    device: &B::Device,
    backend: &str,
    json: &mut JsonSink,
) -> Result<(), AnyError> {
    let (b, s) = (opts.batch, opts.seq);
    let m = b * s;
    let (d, f, v) = (c.n_embd, 4 * c.n_embd, c.vocab_size);
    let shapes: Vec<(&str, usize, usize)> = vec![
        ("c_attn", d, 3 * d),
        ("attn.c_proj", d, d),
        ("c_fc", d, f),
        ("mlp.c_proj", f, d),
        ("lm_head", d, v),
        ("lm_head.grad_x", v, d),
        ("square", 8192, 8192),
    ];
    for (dt_name, dt) in [("f32", FloatDType::F32), ("bf16", FloatDType::BF16)] {
        if dt_name == "bf16" && backend.starts_with("ndarray") {
            eprintln!("   matmul bf16: skipped (the ndarray backend has no bf16)");
            continue;
        }
        for &(name, k, n) in &shapes {
            let rows = if name == "square" { 8192 } else { m };
            for form in ["2d", "linear"] {
                if name == "square" && form == "linear" {
                    continue;
                }
                let w = Tensor::<B, 2>::random([k, n], Distribution::Default, device).cast(dt);
                let x2 = Tensor::<B, 2>::random([rows, k], Distribution::Default, device).cast(dt);
                // Each product's output is kept alive until the sync, so that no lazy
                // (fusion) backend can skip a product whose result is never used.
                let run = |x2: &Tensor<B, 2>, w: &Tensor<B, 2>| {
                    if form == "2d" {
                        x2.clone().matmul(w.clone())
                    } else {
                        let x3 = x2.clone().reshape([b, rows / b, k]);
                        burn::tensor::module::linear(x3, w.clone(), None).reshape([rows, n])
                    }
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    || -> Result<f64, String> {
                        let warm: Vec<_> = (0..3).map(|_| run(&x2, &w)).collect();
                        sync::<B>(device)?;
                        drop(warm);
                        let t = Instant::now();
                        let outs: Vec<_> = (0..20).map(|_| run(&x2, &w)).collect();
                        sync::<B>(device)?;
                        let ms = t.elapsed().as_secs_f64() * 1e3 / 20.0;
                        drop(outs);
                        Ok(ms)
                    },
                ))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p.as_ref()))));
                drop((x2, w));
                B::memory_cleanup(device);
                let mut j = serde_json::json!({
                    "side": "ours", "kind": "matmul", "backend": backend, "name": name,
                    "form": form, "dtype": dt_name, "m": rows, "k": k, "n": n,
                });
                let o = j.as_object_mut().expect("json object");
                match r {
                    Ok(ms) => {
                        let tf = 2.0 * (rows * k * n) as f64 / (ms * 1e-3) / 1e12;
                        o.insert("ms".into(), ms.into());
                        o.insert("tflops".into(), tf.into());
                        eprintln!("   matmul {name:<15} {form:<6} {dt_name:<4} [{rows}x{k}]x[{k}x{n}]: {ms:.3} ms, {tf:.1} TFLOP/s");
                    }
                    Err(e) => {
                        eprintln!("   matmul {name} {form} {dt_name}: error: {e}");
                        o.insert("error".into(), e.into());
                    }
                }
                json.emit(&j)?;
            }
        }
    }
    Ok(())
}
