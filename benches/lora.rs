//! Criterion benchmarks of the LoRA building blocks on the feature-selected backend
//! ([`lora_burn::Backend`]: ndarray by default, `--features wgpu` or `--features cuda`):
//!
//! 1. `linear`: forward + backward of a frozen 768→768 linear layer on `x` `[8, 64, 768]`, plain
//!    against `LoraLinear` with an r = 8 adapter (the gradient flows to `x` in both, and to the
//!    adapter's A and B in the LoRA case).
//! 2. `merge`: `LoraLinear::merge` of an r = 8 adapter into a 768×2304 base (GPT-2 `c_attn`).
//! 3. `quant`: NF4 (block 64) and LLM.int8 quantize / dequantize of a 768×3072 weight (GPT-2
//!    `c_fc`): the host codecs of `lora-quant` and the on-device dequantization of
//!    `QuantLinear` / `Int8Linear`, against a plain `[512, 768]·[768, 3072]` matmul of the
//!    same weight.
//! 4. `gpt2_step`: one training step (forward, next-token cross-entropy, backward, AdamW) of a
//!    small random GPT-2 (2 layers, n_embd 128, 4 heads, vocab 1000, batch 4 × seq 64) with
//!    LoRA r = 8 on `c_attn`.
//!
//! Run: `cargo bench --bench lora` (add `--no-default-features --features cuda` for CUDA). GPU
//! backends are asynchronous, so every timed iteration ends with `Backend::sync`. Each
//! benchmark also records its own per-iteration times (criterion's measured samples, not its
//! warm-up), and after the criterion run a summary prints the medians and the ratios between
//! benchmarks measured in this same run (a ratio whose benchmarks were filtered out is shown as
//! `n/a`).

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend as BackendTrait;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use criterion::{Bencher, Criterion};
use lora_burn::{backend_name, Backend, TrainBackend};
use lora_core::{LoraInit, LoraLayerConfig, LoraLinear};
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_models::LanguageModel;
use lora_quant::{
    dequantize_nf4, quantize_int8_vectorwise, quantize_nf4_shaped, Int8Linear, QuantLinear,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Criterion samples per benchmark (its minimum); the summary reads the last this many calls.
const SAMPLE_SIZE: usize = 10;

type Dev = burn::tensor::Device<Backend>;

/// Per benchmark id: every `(iterations, elapsed)` call criterion made of the routine.
static TIMES: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

/// Memory lines for the summary: `(what, bytes, baseline bytes, baseline name)`.
static MEMORY: Mutex<Vec<(String, usize, usize, &'static str)>> = Mutex::new(Vec::new());

fn record_memory(what: &str, bytes: usize, base: usize, base_name: &'static str) {
    MEMORY
        .lock()
        .expect("memory table poisoned")
        .push((what.to_string(), bytes, base, base_name));
}

/// Waits for the device to finish the queued work (a no-op on ndarray).
fn sync(device: &Dev) {
    <Backend as BackendTrait>::sync(device).expect("device sync failed");
}

/// Times `routine(setup())` per iteration (setup not timed, the device synchronised inside the
/// timed part) and records the total under `id` for the summary.
fn timed<S, O>(
    b: &mut Bencher,
    id: &str,
    device: &Dev,
    mut setup: impl FnMut() -> S,
    mut routine: impl FnMut(S) -> O,
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let s = setup();
            let t0 = Instant::now();
            let out = routine(s);
            sync(device);
            total += t0.elapsed();
            drop(black_box(out));
        }
        TIMES
            .lock()
            .expect("timing table poisoned")
            .entry(id.to_string())
            .or_default()
            .push((iters, total));
        total
    });
}

/// A group named after the benchmark and the backend, with settings that keep the whole run
/// within a few minutes on a 2-core CPU.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    measure_s: u64,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(format!("{name} [{}]", backend_name()));
    g.sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(measure_s));
    g
}

fn uniform<B: BackendTrait, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Uniform(-0.05, 0.05), device)
}

fn lora_cfg(r: usize) -> LoraLayerConfig {
    LoraLayerConfig {
        r,
        lora_alpha: 16.0,
        init: LoraInit::NoZero,
        ..LoraLayerConfig::default()
    }
}

/// 1. Forward + backward of a frozen linear layer, plain vs LoRA r = 8.
fn bench_linear(c: &mut Criterion) {
    let device = Dev::default();
    <Backend as BackendTrait>::seed(&device, 0);
    let (d, batch, tokens) = (768, 8, 64);
    let plain = LoraLinear::<TrainBackend>::new(
        uniform([d, d], &device),
        Some(uniform([d], &device)),
        false,
    )
    .expect("plain linear");
    let mut lora = plain.clone();
    lora.attach(&lora_cfg(8), &device).expect("attach r=8");
    // f32 bytes of the trainable A [768, 8] + B [8, 768] against the frozen W [768, 768].
    record_memory("LoRA r8 A+B", 4 * 2 * 8 * d, 4 * d * d, "W");
    let x = uniform::<TrainBackend, 3>([batch, tokens, d], &device);

    let mut g = group(c, "linear 768x768 x[8,64] fwd+bwd", 3);
    for (name, layer) in [("plain", &plain), ("lora_r8", &lora)] {
        let id = format!("linear/{name}");
        g.bench_function(name, |b| {
            timed(
                b,
                &id,
                &device,
                || x.clone().detach().require_grad(),
                |x| {
                    let y = layer.forward(x.clone());
                    let grads = y.sum().backward();
                    x.grad(&grads)
                },
            )
        });
    }
    g.finish();
}

/// 2. Merging an r = 8 adapter into a 768×2304 base.
fn bench_merge(c: &mut Criterion) {
    let device = Dev::default();
    <Backend as BackendTrait>::seed(&device, 1);
    let mut layer =
        LoraLinear::<Backend>::new(uniform([768, 2304], &device), None, true).expect("layer");
    layer.attach(&lora_cfg(8), &device).expect("attach r=8");
    let mut g = group(c, "merge 768x2304 r8", 2);
    g.bench_function("merge", |b| {
        timed(
            b,
            "merge",
            &device,
            || layer.clone(),
            |mut l| {
                l.merge().expect("merge");
                l
            },
        )
    });
    g.finish();
}

/// 3. NF4 and int8 quantize / dequantize of a 768×3072 weight, and a plain matmul baseline.
fn bench_quant(c: &mut Criterion) {
    let device = Dev::default();
    <Backend as BackendTrait>::seed(&device, 2);
    let (d_in, d_out) = (768, 3072);
    let w: Tensor<Backend, 2> = uniform([d_in, d_out], &device);
    // The PyTorch-layout [d_out, d_in] values that the host quantizers take.
    let values: Vec<f32> = w
        .clone()
        .transpose()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("weight values");
    let x: Tensor<Backend, 2> = uniform([8 * 64, d_in], &device);
    let nf4 = quantize_nf4_shaped(&values, &[d_out, d_in], 64, false).expect("nf4");
    let int8 = quantize_int8_vectorwise(&values, d_out, d_in).expect("int8");
    let qlin = QuantLinear::<Backend>::from_nf4(&nf4, &device).expect("QuantLinear");
    let ilin = Int8Linear::<Backend>::from_int8(&int8, &device).expect("Int8Linear");
    let nf4dq = quantize_nf4_shaped(&values, &[d_out, d_in], 64, true).expect("nf4-dq");
    let qlin_dq = QuantLinear::<Backend>::from_nf4(&nf4dq, &device).expect("QuantLinear dq");
    let f32_bytes = 4 * d_in * d_out;
    record_memory(
        "NF4 weight on device",
        qlin.storage_bytes(),
        f32_bytes,
        "f32",
    );
    record_memory(
        "NF4-DQ weight on device",
        qlin_dq.storage_bytes(),
        f32_bytes,
        "f32",
    );
    record_memory(
        "int8 weight on device",
        ilin.storage_bytes(),
        f32_bytes,
        "f32",
    );

    let mut g = group(c, "quant 768x3072", 2);
    g.bench_function("matmul_f32 x[512,768]", |b| {
        timed(
            b,
            "quant/matmul",
            &device,
            || (),
            |_| x.clone().matmul(w.clone()),
        )
    });
    g.bench_function("nf4_quantize_host", |b| {
        timed(
            b,
            "quant/nf4_q",
            &device,
            || (),
            |_| quantize_nf4_shaped(&values, &[d_out, d_in], 64, false).expect("nf4"),
        )
    });
    g.bench_function("nf4_dq_quantize_host", |b| {
        timed(
            b,
            "quant/nf4dq_q",
            &device,
            || (),
            |_| quantize_nf4_shaped(&values, &[d_out, d_in], 64, true).expect("nf4-dq"),
        )
    });
    g.bench_function("nf4_dequantize_host", |b| {
        timed(
            b,
            "quant/nf4_dq_host",
            &device,
            || (),
            |_| dequantize_nf4(&nf4).expect("dequantize"),
        )
    });
    g.bench_function("nf4_dequantize_device", |b| {
        timed(
            b,
            "quant/nf4_dq_dev",
            &device,
            || (),
            |_| qlin.dequantize_weight(),
        )
    });
    g.bench_function("nf4_forward x[512,768]", |b| {
        timed(
            b,
            "quant/nf4_fwd",
            &device,
            || (),
            |_| qlin.forward(x.clone()),
        )
    });
    g.bench_function("int8_quantize_host", |b| {
        timed(
            b,
            "quant/int8_q",
            &device,
            || (),
            |_| quantize_int8_vectorwise(&values, d_out, d_in).expect("int8"),
        )
    });
    g.bench_function("int8_dequantize_host", |b| {
        timed(
            b,
            "quant/int8_dq_host",
            &device,
            || (),
            |_| int8.dequantize(),
        )
    });
    g.bench_function("int8_dequantize_device", |b| {
        timed(
            b,
            "quant/int8_dq_dev",
            &device,
            || (),
            |_| ilin.dequantize_weight(),
        )
    });
    g.bench_function("int8_forward x[512,768]", |b| {
        timed(
            b,
            "quant/int8_fwd",
            &device,
            || (),
            |_| ilin.forward(x.clone()),
        )
    });
    g.finish();
}

/// 4. One LoRA training step of a small random GPT-2.
fn bench_gpt2_step(c: &mut Criterion) {
    let device = Dev::default();
    <Backend as BackendTrait>::seed(&device, 3);
    let (n_layer, d, n_head, vocab, batch, seq) = (2, 128, 4, 1000, 4, 64);
    let config = Gpt2Config::sized(vocab, seq, d, n_layer, n_head).expect("GPT-2 config");
    let mut model = Gpt2::<TrainBackend>::random(&config, &device).expect("random GPT-2");
    let mut cfg = lora_peft::LoraConfig::new(8, 16.0, &["c_attn"]);
    cfg.fan_in_fan_out = true; // GPT-2 Conv1D layout, as PEFT sets it for GPT-2
    lora_peft::apply_lora(&mut model, &cfg, &device).expect("apply_lora");
    // Deterministic token ids in [0, vocab).
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| ((i as u64 * 2_654_435_761) % vocab as u64) as i64)
        .collect();
    let ids =
        Tensor::<TrainBackend, 2, Int>::from_data(TensorData::new(ids, [batch, seq]), &device);
    let train_cfg = lora_train::TrainConfig::default();
    let mut optim = lora_train::adamw_optimizer::<TrainBackend, Gpt2<TrainBackend>>(&train_cfg);
    let mut model = Some(model);

    let mut g = group(c, "gpt2 step L2 d128 v1000 b4x64 lora c_attn", 5);
    g.bench_function("train_step", |b| {
        timed(
            b,
            "gpt2_step",
            &device,
            || (),
            |_| {
                let m = model.take().expect("model");
                let logits = m.forward(ids.clone()); // [batch, seq, vocab]
                let logp = burn::tensor::activation::log_softmax(
                    logits.slice([0..batch, 0..seq - 1, 0..vocab]),
                    2,
                );
                let target = ids
                    .clone()
                    .slice([0..batch, 1..seq])
                    .reshape([batch, seq - 1, 1]);
                let loss = logp.gather(2, target).mean().neg();
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                model = Some(optim.step(1e-4, m, grads));
            },
        )
    });
    g.finish();
}

/// Median seconds per iteration over the last `SAMPLE_SIZE` recorded calls of `id`.
fn median_s(times: &BTreeMap<String, Vec<(u64, Duration)>>, id: &str) -> Option<f64> {
    let calls = times.get(id)?;
    let mut per: Vec<f64> = calls[calls.len().saturating_sub(SAMPLE_SIZE)..]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, t)| t.as_secs_f64() / *n as f64)
        .collect();
    if per.is_empty() {
        return None;
    }
    per.sort_by(f64::total_cmp);
    Some(per[per.len() / 2])
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Prints the medians and the ratios between benchmarks of this run.
fn summary() {
    let times = TIMES.lock().expect("timing table poisoned");
    if times.is_empty() {
        return;
    }
    println!(
        "\n== lora-burn bench summary, backend {} ==",
        backend_name()
    );
    println!("median time per iteration (criterion's measured samples of this run):");
    for id in times.keys() {
        if let Some(s) = median_s(&times, id) {
            println!("  {id:<22} {:>12}", fmt_time(s));
        }
    }
    println!("ratios (same run):");
    let ratios = [
        (
            "LoRA r8 fwd+bwd / plain fwd+bwd",
            "linear/lora_r8",
            "linear/plain",
        ),
        (
            "merge 768x2304 / LoRA fwd+bwd 768x768",
            "merge",
            "linear/lora_r8",
        ),
        (
            "NF4 dequantize (device) / f32 matmul",
            "quant/nf4_dq_dev",
            "quant/matmul",
        ),
        ("NF4 forward / f32 matmul", "quant/nf4_fwd", "quant/matmul"),
        (
            "int8 dequantize (device) / f32 matmul",
            "quant/int8_dq_dev",
            "quant/matmul",
        ),
        (
            "int8 forward / f32 matmul",
            "quant/int8_fwd",
            "quant/matmul",
        ),
        (
            "NF4 quantize (host) / f32 matmul",
            "quant/nf4_q",
            "quant/matmul",
        ),
        (
            "NF4-DQ quantize / NF4 quantize (host)",
            "quant/nf4dq_q",
            "quant/nf4_q",
        ),
        (
            "NF4 dequantize host / device",
            "quant/nf4_dq_host",
            "quant/nf4_dq_dev",
        ),
        (
            "int8 quantize (host) / f32 matmul",
            "quant/int8_q",
            "quant/matmul",
        ),
        (
            "int8 dequantize host / device",
            "quant/int8_dq_host",
            "quant/int8_dq_dev",
        ),
    ];
    for (label, num, den) in ratios {
        match (median_s(&times, num), median_s(&times, den)) {
            (Some(a), Some(b)) if b > 0.0 => println!("  {label:<40} {:>8.2}x", a / b),
            _ => println!("  {label:<40} {:>9}", "n/a"),
        }
    }
    for (what, bytes, base, base_name) in MEMORY.lock().expect("memory table poisoned").iter() {
        println!(
            "  {:<40} {:>8.3}x  ({bytes} B / {base} B {base_name})",
            format!("{what} / {base_name}"),
            *bytes as f64 / *base as f64
        );
    }
    if let Some(s) = median_s(&times, "gpt2_step") {
        let tokens = 4.0 * 64.0;
        println!(
            "  gpt2 train step: {} ({:.0} tokens/s)",
            fmt_time(s),
            tokens / s
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_linear(&mut c);
    bench_merge(&mut c);
    bench_quant(&mut c);
    bench_gpt2_step(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--test") {
        // `cargo test --benches` / `-- --test`: each routine ran once, untimed; no ratios.
        println!("test mode: every benchmark ran once; no timing summary");
    } else {
        summary();
    }
}
