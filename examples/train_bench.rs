//! Training-step speed benchmark: GPT-2 (random weights) + LoRA / QLoRA, one table.
//!
//! ```text
//! # CPU smoke test (tiny GPT-2):
//! cargo run --release --example train_bench -- --config tiny --batch 2 --seq 32 --warmup 1 \
//!     --steps 2 --configs c_attn:none:f32,all:nf4:f32
//! # GPU (built with --no-default-features --features cuda), all configurations in one process:
//! train_bench --config gpt2-124m --batch 8 --seq 1024 --warmup 3 --steps 8 \
//!     --configs c_attn:none:f32,all:none:f32,c_attn:nf4:f32,all:nf4:f32 --json ours.jsonl
//! ```
//!
//! One *training step* is: forward of the whole model (`lora_models::gpt2::Gpt2` through
//! `LanguageModel::forward`, adapters attached with `lora_peft::apply_lora`, QLoRA bases
//! quantized with `lora_peft::quantize_model` before the adapters, as in `finetune`) on random
//! token ids `[batch, seq]`, causal-LM cross-entropy (position t predicts token t+1, mean over
//! `batch·(seq−1)` positions, as transformers' `GPT2LMHeadModel(labels=input_ids)`), backward,
//! and one AdamW step on the LoRA parameters (`lora_train::train::adamw_optimizer`). LoRA:
//! r = 8, lora_alpha = 16, lora_dropout = 0. Targets `c_attn` (PEFT's GPT-2 default) or `all`
//! (`c_attn`, `c_proj`, `c_fc`: every linear layer of every block). QLoRA quantizes every
//! block linear layer (not the tied embedding / LM head), as bitsandbytes does.
//!
//! Timing: the device is synchronised (`Backend::sync`) before each clock read; `--warmup`
//! untimed steps first (they include CubeCL's kernel compilation and autotuning), then the
//! median (and min/max) of `--steps` timed steps. tokens/s = batch·seq / median step time.
//! A fresh batch of random ids is used per step (4 device batches in rotation, drawn up front).
//!
//! FLOPs per step (the model FLOP count of MFU; `benches/peft_bench.py` uses the same formula):
//! with `T = batch·seq`, `L` layers, width `d`, MLP width `f`, vocabulary `V`,
//! `N = L·(3d² + d² + 2·d·f)` block linear weights and `V·d` the tied LM head,
//!
//! ```text
//! forward  = 2·T·(N + V·d)  +  4·L·T·seq·d  +  Σ_adapted 2·T·r·(d_in + d_out)
//! backward = 2·T·(N + V·d)  +  8·L·T·seq·d  +  Σ_adapted 4·T·r·(d_in + d_out)
//! ```
//!
//! Backward computes activation gradients through every dense matmul (the same FLOPs as the
//! forward) but no weight gradient for the frozen base; attention's two matmuls have only
//! activation operands, so their backward is twice their forward (attention counted on the full
//! `seq×seq` square, no causal discount); each adapter matmul gets activation and weight
//! gradients. Element-wise work (softmax, LayerNorm, GELU, AdamW, NF4 dequantization) is not
//! counted. For GPT-2 124M at 8×1024 this is 4.99 (c_attn) to 5.03 (all) TFLOP a step. MFU = FLOPs / step time /
//! peak, with the peak given per precision by `--peak-tflops` (the GPU script passes the
//! measured dense matmul rate: TF32 for "f32", since burn's CUDA matmul uses TF32 tensor cores
//! for f32 inputs; bf16 for "bf16").
//!
//! Output: one JSON line per configuration (to `--json` and stdout, prefixed `JSON `), then a
//! short table. A configuration that fails (error or panic) gives a JSON line with `"error"` and
//! the run goes on with the next one.

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use clap::Parser;
use lora_burn::{backend_name, TrainBackend};
use lora_core::{count_parameters, NamedLinears, QuantKind};
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_models::LanguageModel;
use lora_peft::{apply_lora, quantize_model, LoraConfig};
use lora_train::train::{adamw_optimizer, TrainConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

type AnyError = Box<dyn std::error::Error>;
type Device = burn::tensor::Device<TrainBackend>;

/// LoRA rank of every configuration.
const R: usize = 8;
/// lora_alpha of every configuration.
const LORA_ALPHA: f64 = 16.0;

/// Training-step benchmark of GPT-2 + LoRA / QLoRA (see the module docs).
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Training-step speed benchmark: GPT-2 (random weights) + LoRA / QLoRA, one table"
)]
struct Args {
    /// Model shape: "gpt2-124m" (transformers' GPT2Config() defaults), "gpt2-narrow" (GPT-2
    /// 124M's 12 layers and 12 heads at width 96, vocab 1000, 128 positions: the same operations
    /// per step with negligible device work, for measuring per-step host cost) or "tiny" (vocab
    /// 1000, 128 positions, width 64, 2 layers, 4 heads: a few MB, for CPU smoke tests).
    #[arg(long, default_value = "gpt2-124m")]
    config: String,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence (≤ n_positions).
    #[arg(long, default_value_t = 1024)]
    seq: usize,
    /// LoRA targets when --configs is not given: "c_attn" or "all".
    #[arg(long, default_value = "c_attn")]
    targets: String,
    /// Base quantization when --configs is not given: "none", "nf4" or "nf4-dq".
    #[arg(long, default_value = "none")]
    quant: String,
    /// Compute precision when --configs is not given: "f32" or "bf16".
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Several configurations in one process, comma separated, each TARGETS:QUANT:PRECISION
    /// (e.g. "c_attn:none:f32,all:nf4:f32"); overrides --targets/--quant/--precision.
    #[arg(long)]
    configs: Option<String>,
    /// Untimed steps before timing (compilation, autotuning).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Append one JSON line per configuration to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Peak rate for MFU in TFLOP/s: one number for every precision, or "f32=X,bf16=Y".
    #[arg(long)]
    peak_tflops: Option<String>,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Seed of the backend generator (weights, adapters, token ids).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// After the timed steps, profile `--steps` more steps per configuration: (1) forward+loss,
    /// backward and optimizer step each followed by a device sync (ms each); (2) whole steps
    /// with no sync inside: the time until the host has queued the step ("enqueue") and the
    /// time the following sync waits for the device ("drain"), and the process CPU time per
    /// step (all threads, /proc/self/stat, Linux). enqueue ≈ step and drain ≈ 0 means the step
    /// is bound by host work (graph building, fusion, launches), not by the GPU.
    #[arg(long)]
    phases: bool,
    /// Only time single matrix products at this model's shapes (f32 and bf16, 2-D and the
    /// `linear` form the layers use) and print one JSON line each; no training.
    #[arg(long)]
    matmul_bench: bool,
}

/// LoRA targets of one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Targets {
    CAttn,
    All,
}

impl Targets {
    fn name(self) -> &'static str {
        match self {
            Targets::CAttn => "c_attn",
            Targets::All => "all",
        }
    }
    fn modules(self) -> &'static [&'static str] {
        match self {
            Targets::CAttn => &["c_attn"],
            Targets::All => &lora_models::gpt2::LORA_TARGETS,
        }
    }
}

/// Compute precision of one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Precision {
    F32,
    Bf16,
}

impl Precision {
    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone)]
struct BenchConfig {
    targets: Targets,
    quant: Option<QuantKind>,
    quant_name: String,
    precision: Precision,
}

fn parse_one(targets: &str, quant: &str, precision: &str) -> Result<BenchConfig, String> {
    let targets = match targets.trim() {
        "c_attn" => Targets::CAttn,
        "all" => Targets::All,
        t => return Err(format!("targets {t:?}: expected \"c_attn\" or \"all\"")),
    };
    let quant_name = quant.trim().to_ascii_lowercase();
    let quant = match quant_name.as_str() {
        "none" => None,
        "nf4" | "nf4-dq" => Some(
            quant_name
                .parse::<QuantKind>()
                .map_err(|e| format!("quant: {e}"))?,
        ),
        q => {
            return Err(format!(
                "quant {q:?}: expected \"none\", \"nf4\" or \"nf4-dq\""
            ))
        }
    };
    let precision = match precision.trim() {
        "f32" => Precision::F32,
        "bf16" => Precision::Bf16,
        p => return Err(format!("precision {p:?}: expected \"f32\" or \"bf16\"")),
    };
    Ok(BenchConfig {
        targets,
        quant,
        quant_name,
        precision,
    })
}

fn parse_configs(args: &Args) -> Result<Vec<BenchConfig>, String> {
    match &args.configs {
        None => Ok(vec![parse_one(
            &args.targets,
            &args.quant,
            &args.precision,
        )?]),
        Some(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|item| {
                let parts: Vec<&str> = item.split(':').collect();
                match parts.as_slice() {
                    [t, q, p] => parse_one(t, q, p).map_err(|e| format!("--configs {item:?}: {e}")),
                    _ => Err(format!(
                        "--configs {item:?}: expected TARGETS:QUANT:PRECISION, e.g. c_attn:nf4:f32"
                    )),
                }
            })
            .collect(),
    }
}

/// `--peak-tflops` → (f32 peak, bf16 peak), each optional.
fn parse_peaks(s: &Option<String>) -> Result<(Option<f64>, Option<f64>), String> {
    let Some(s) = s else { return Ok((None, None)) };
    let num = |v: &str| -> Result<f64, String> {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("--peak-tflops: {v:?} is not a positive number"))
    };
    if !s.contains('=') {
        let x = num(s)?;
        return Ok((Some(x), Some(x)));
    }
    let (mut f, mut b) = (None, None);
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("f32", v)) => f = Some(num(v)?),
            Some(("bf16", v)) => b = Some(num(v)?),
            _ => {
                return Err(format!(
                    "--peak-tflops: bad entry {part:?}, expected f32=X or bf16=Y"
                ))
            }
        }
    }
    Ok((f, b))
}

fn model_config(name: &str) -> Result<Gpt2Config, AnyError> {
    Ok(match name {
        "gpt2-124m" => Gpt2Config::gpt2_124m(),
        "tiny" => Gpt2Config::sized(1000, 128, 64, 2, 4)?,
        // GPT-2 124M's graph (12 layers, 12 heads, the same operations per step) at a width
        // and vocabulary that make the device work negligible: measures per-step host cost.
        "gpt2-narrow" => Gpt2Config::sized(1000, 128, 96, 12, 12)?,
        other => {
            return Err(format!(
                "--config {other:?}: expected \"gpt2-124m\", \"gpt2-narrow\" or \"tiny\""
            )
            .into())
        }
    })
}

/// Model FLOPs of one training step (formula in the module docs). `adapted` lists the
/// `(d_in, d_out)` of every layer with an adapter of rank `r`.
fn train_flops(
    c: &Gpt2Config,
    batch: usize,
    seq: usize,
    r: usize,
    adapted: &[(usize, usize)],
) -> f64 {
    let t = (batch * seq) as f64;
    let (l, d, f, v) = (
        c.n_layer as f64,
        c.n_embd as f64,
        c.n_inner as f64,
        c.vocab_size as f64,
    );
    let n = l * (3.0 * d * d + d * d + 2.0 * d * f);
    let dense = 2.0 * t * (n + v * d);
    let attn = 4.0 * l * t * seq as f64 * d;
    let lora: f64 = adapted
        .iter()
        .map(|&(i, o)| 2.0 * t * r as f64 * (i + o) as f64)
        .sum();
    2.0 * dense + 3.0 * attn + 3.0 * lora
}

/// Sets the compute precision of the model's linear layers (lora-core mixed precision:
/// `NamedLinears::set_compute_dtype`; bf16 base weights and matmuls, f32 LoRA master weights,
/// f32 everything else). f32 is the default of every layer.
fn set_precision(
    mut model: Gpt2<TrainBackend>,
    p: Precision,
) -> Result<Gpt2<TrainBackend>, String> {
    match p {
        Precision::F32 => Ok(model),
        Precision::Bf16 => {
            let report = model
                .set_compute_dtype(burn::tensor::FloatDType::BF16)
                .map_err(|e| format!("bf16: {e}"))?;
            eprintln!("   {report}");
            Ok(model)
        }
    }
}

/// Causal-LM loss: mean over `batch·(seq−1)` positions of `−log softmax(logits[t])[ids[t+1]]`.
fn lm_loss(
    logits: Tensor<TrainBackend, 3>,
    ids: Tensor<TrainBackend, 2, Int>,
) -> Tensor<TrainBackend, 1> {
    let [b, s, v] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits.slice([0..b, 0..s - 1, 0..v]), 2);
    let target = ids.slice([0..b, 1..s]).reshape([b, s - 1, 1]);
    logp.gather(2, target).mean().neg()
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn sync(device: &Device) -> Result<(), String> {
    TrainBackend::sync(device).map_err(|e| format!("device sync failed: {e:?}"))
}

/// Random token ids `[batch, seq]` in `[0, vocab)` from a host generator (splitmix64).
fn random_ids(
    batch: usize,
    seq: usize,
    vocab: usize,
    seed: u64,
    device: &Device,
) -> Tensor<TrainBackend, 2, Int> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let ids: Vec<i64> = (0..batch * seq)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z % vocab as u64) as i64
        })
        .collect();
    Tensor::from_data(TensorData::new(ids, [batch, seq]), device)
}

/// The measured numbers of one configuration.
struct Measured {
    step_ms: Vec<f64>,
    loss_first: f64,
    loss_last: f64,
    trainable: usize,
    all: usize,
    adapted: Vec<(usize, usize)>,
    quant_mb: Option<f64>,
    setup_s: f64,
    warmup_s: f64,
    /// `--phases`: medians in ms of forward+loss, backward, optimizer, enqueue, drain, and
    /// CPU ms per step.
    phases: Option<[f64; 6]>,
}

fn run_config(
    args: &Args,
    c: &Gpt2Config,
    bc: &BenchConfig,
    device: &Device,
) -> Result<Measured, String> {
    let t0 = Instant::now();
    TrainBackend::seed(device, args.seed);
    let mut model = Gpt2::<TrainBackend>::random(c, device).map_err(|e| e.to_string())?;
    let mut quant_mb = None;
    if let Some(kind) = &bc.quant {
        let report = quantize_model(&mut model, kind, &[]).map_err(|e| e.to_string())?;
        quant_mb = Some(report.quant_bytes() as f64 / 1e6);
    }
    let mut cfg = LoraConfig::new(R, LORA_ALPHA, bc.targets.modules());
    cfg.fan_in_fan_out = true;
    cfg.lora_dropout = 0.0;
    apply_lora(&mut model, &cfg, device).map_err(|e| e.to_string())?;
    let mut adapted = Vec::new();
    model.visit_linears(&mut |_, l| {
        if l.has_adapter() {
            adapted.push(l.dims());
        }
    });
    let count = count_parameters(&model);
    let mut model = set_precision(model, bc.precision)?;
    let train_cfg = TrainConfig {
        lr: args.lr,
        ..TrainConfig::default()
    };
    let mut optim = adamw_optimizer::<TrainBackend, Gpt2<TrainBackend>>(&train_cfg);
    let batches: Vec<_> = (0..4)
        .map(|i| {
            random_ids(
                args.batch,
                args.seq,
                c.vocab_size,
                args.seed * 1000 + i,
                device,
            )
        })
        .collect();
    sync(device)?;
    let setup_s = t0.elapsed().as_secs_f64();

    let mut step =
        |model: Gpt2<TrainBackend>, i: usize| -> (Gpt2<TrainBackend>, Tensor<TrainBackend, 1>) {
            let ids = batches[i % batches.len()].clone();
            let logits = model.forward(ids.clone());
            let loss = lm_loss(logits, ids);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = optim.step(args.lr, model, grads);
            (model, loss.detach())
        };
    let t1 = Instant::now();
    let mut loss_first = f64::NAN;
    for i in 0..args.warmup {
        let (m, loss) = step(model, i);
        model = m;
        if i == 0 {
            loss_first = loss.into_scalar().elem::<f64>();
        }
        // Progress while kernels compile (the first GPU steps can take minutes).
        sync(device)?;
        eprintln!(
            "   warmup step {} done at {:.1}s",
            i + 1,
            t1.elapsed().as_secs_f64()
        );
    }
    sync(device)?;
    let warmup_s = t1.elapsed().as_secs_f64();
    let mut step_ms = Vec::with_capacity(args.steps);
    let mut last = None;
    for i in 0..args.steps {
        let t = Instant::now();
        let (m, loss) = step(model, args.warmup + i);
        model = m;
        sync(device)?;
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(loss);
    }
    let loss_last = last.map_or(f64::NAN, |l| l.into_scalar().elem::<f64>());
    let mut phases = None;
    if args.phases {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let (mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..args.steps {
            let ids = batches[i % batches.len()].clone();
            let t = Instant::now();
            let loss = lm_loss(model.forward(ids.clone()), ids);
            sync(device)?;
            fwd.push(ms(t));
            let t = Instant::now();
            let g = loss.backward();
            sync(device)?;
            bwd.push(ms(t));
            let t = Instant::now();
            let grads = GradientsParams::from_grads(g, &model);
            model = optim.step(args.lr, model, grads);
            sync(device)?;
            opt.push(ms(t));
        }
        let (mut enq, mut drain) = (Vec::new(), Vec::new());
        let cpu0 = process_cpu_secs();
        let t_all = Instant::now();
        for i in 0..args.steps {
            let ids = batches[i % batches.len()].clone();
            let t = Instant::now();
            let loss = lm_loss(model.forward(ids.clone()), ids);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(args.lr, model, grads);
            enq.push(ms(t));
            let t = Instant::now();
            sync(device)?;
            drain.push(ms(t));
        }
        let wall = t_all.elapsed().as_secs_f64();
        let cpu = process_cpu_secs().map_or(f64::NAN, |c1| {
            (c1 - cpu0.unwrap_or(f64::NAN)) / args.steps as f64 * 1e3
        });
        let p = [
            median(&fwd),
            median(&bwd),
            median(&opt),
            median(&enq),
            median(&drain),
            cpu,
        ];
        eprintln!(
            "   phases (median ms): forward+loss {:.2}, backward {:.2}, optimizer {:.2}; \
             no inner sync: enqueue {:.2} + drain {:.2}; CPU {:.1} ms/step over {:.1} ms/step wall",
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            p[5],
            wall / args.steps as f64 * 1e3
        );
        phases = Some(p);
    }
    if args.warmup == 0 {
        loss_first = loss_last;
    }
    if !loss_last.is_finite() || !loss_first.is_finite() {
        return Err(format!(
            "non-finite loss: first {loss_first}, last {loss_last}"
        ));
    }
    drop(model);
    Ok(Measured {
        step_ms,
        loss_first,
        loss_last,
        trainable: count.trainable,
        all: count.all,
        adapted,
        quant_mb,
        setup_s,
        warmup_s,
        phases,
    })
}

/// CPU seconds used so far by this process, all threads (utime + stime of /proc/self/stat, in
/// clock ticks of 1/100 s, the Linux USER_HZ); None where /proc is missing.
fn process_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `--matmul-bench`: times `x·w` at the matrix shapes of one GPT-2 training step
/// (`M = batch·seq` rows), f32 and bf16 inputs, in the two forms the model uses: 2-D
/// `[M, K]·[K, N]` and `burn::tensor::module::linear` on `[batch, seq, K]` (the LoRA layers'
/// base product). 3 warm-up products, then 20 products (outputs kept alive until the sync) and
/// one sync; prints ms per product and TFLOP/s (2·M·K·N) as JSON lines (`"side": "ours",
/// "kind": "matmul"`).
fn matmul_bench(
    args: &Args,
    c: &Gpt2Config,
    device: &Device,
    json_out: &mut Option<std::fs::File>,
) -> Result<(), AnyError> {
    use burn::tensor::{Distribution, FloatDType};
    let (b, s) = (args.batch, args.seq);
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
        if dt_name == "bf16" && backend_name().starts_with("ndarray") {
            eprintln!("   matmul bf16: skipped (the ndarray backend has no bf16)");
            continue;
        }
        for &(name, k, n) in &shapes {
            let rows = if name == "square" { 8192 } else { m };
            for form in ["2d", "linear"] {
                if name == "square" && form == "linear" {
                    continue;
                }
                let w = Tensor::<TrainBackend, 2>::random([k, n], Distribution::Default, device)
                    .cast(dt);
                let x2 =
                    Tensor::<TrainBackend, 2>::random([rows, k], Distribution::Default, device)
                        .cast(dt);
                // Each product's output is kept alive until the sync, so that no lazy
                // (fusion) backend can skip a product whose result is never used.
                let run = |x2: &Tensor<TrainBackend, 2>, w: &Tensor<TrainBackend, 2>| {
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
                        sync(device)?;
                        drop(warm);
                        let t = Instant::now();
                        let outs: Vec<_> = (0..20).map(|_| run(&x2, &w)).collect();
                        sync(device)?;
                        let ms = t.elapsed().as_secs_f64() * 1e3 / 20.0;
                        drop(outs);
                        Ok(ms)
                    },
                ))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p.as_ref()))));
                drop((x2, w));
                <TrainBackend as burn::tensor::backend::Backend>::memory_cleanup(device);
                let mut j = serde_json::json!({
                    "side": "ours", "kind": "matmul", "backend": backend_name(), "name": name,
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
                let line = serde_json::to_string(&j)?;
                println!("JSON {line}");
                if let Some(f) = json_out.as_mut() {
                    writeln!(f, "{line}").map_err(|e| format!("--json: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic (no message)".into()
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), AnyError> {
    let args = Args::parse();
    let configs = parse_configs(&args)?;
    let (peak_f32, peak_bf16) = parse_peaks(&args.peak_tflops)?;
    let c = model_config(&args.config)?;
    if args.batch == 0 || args.seq < 2 {
        return Err(format!(
            "--batch must be ≥ 1 and --seq ≥ 2 (got {} and {})",
            args.batch, args.seq
        )
        .into());
    }
    if args.seq > c.n_positions {
        return Err(format!(
            "--seq {} exceeds n_positions = {} of --config {}",
            args.seq, c.n_positions, args.config
        )
        .into());
    }
    if args.steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    let mut json_out = match &args.json {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("--json {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let device: Device = Default::default();
    if args.matmul_bench {
        return matmul_bench(&args, &c, &device, &mut json_out);
    }
    let backend = backend_name();
    // burn's CUDA matmul runs f32 inputs on TF32 tensor cores (cubek-matmul adjust_dtypes).
    let f32_matmul = if backend.starts_with("cuda") {
        "tf32"
    } else {
        "f32"
    };
    eprintln!(
        "train_bench: backend {backend}, config {} (n_layer {}, n_embd {}, vocab {}), batch {} x seq {}, warmup {}, steps {}",
        args.config, c.n_layer, c.n_embd, c.vocab_size, args.batch, args.seq, args.warmup, args.steps
    );
    let mut rows = Vec::new();
    for bc in &configs {
        let label = format!(
            "{}:{}:{}",
            bc.targets.name(),
            bc.quant_name,
            bc.precision.name()
        );
        eprintln!("== {label}");
        let t_start = now_epoch();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_config(&args, &c, bc, &device)
        }))
        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p.as_ref()))));
        // Give the memory of this configuration back before the next one.
        <TrainBackend as burn::tensor::backend::Backend>::memory_cleanup(&device);
        let t_end = now_epoch();
        let matmul = match bc.precision {
            Precision::F32 => f32_matmul,
            Precision::Bf16 => "bf16",
        };
        let mut j = serde_json::json!({
            "side": "ours",
            "backend": backend,
            "model": args.config,
            "targets": bc.targets.name(),
            "quant": bc.quant_name,
            "precision": bc.precision.name(),
            "matmul": matmul,
            "batch": args.batch,
            "seq": args.seq,
            "r": R,
            "lora_alpha": LORA_ALPHA,
            "warmup": args.warmup,
            "steps": args.steps,
            "t_start": t_start,
            "t_end": t_end,
        });
        let row = match result {
            Ok(m) => {
                let med = median(&m.step_ms);
                let tokens = (args.batch * args.seq) as f64;
                let flops = train_flops(&c, args.batch, args.seq, R, &m.adapted);
                let peak = match bc.precision {
                    Precision::F32 => peak_f32,
                    Precision::Bf16 => peak_bf16,
                };
                let achieved = flops / (med * 1e-3) / 1e12;
                let mfu = peak.map(|p| achieved / p);
                let o = j.as_object_mut().expect("json object");
                o.insert("step_ms_median".into(), med.into());
                o.insert(
                    "step_ms_min".into(),
                    m.step_ms
                        .iter()
                        .cloned()
                        .fold(f64::INFINITY, f64::min)
                        .into(),
                );
                o.insert(
                    "step_ms_max".into(),
                    m.step_ms.iter().cloned().fold(0.0, f64::max).into(),
                );
                o.insert("step_ms_all".into(), m.step_ms.clone().into());
                o.insert("tokens_per_s".into(), (tokens / (med * 1e-3)).into());
                o.insert("flops_per_step".into(), flops.into());
                o.insert("achieved_tflops".into(), achieved.into());
                o.insert("peak_tflops".into(), peak.into());
                o.insert("mfu".into(), mfu.into());
                o.insert("trainable_params".into(), m.trainable.into());
                o.insert("all_params".into(), m.all.into());
                o.insert("adapted_layers".into(), m.adapted.len().into());
                o.insert("quant_weight_mb".into(), m.quant_mb.into());
                o.insert("loss_first".into(), m.loss_first.into());
                o.insert("loss_last".into(), m.loss_last.into());
                o.insert("setup_s".into(), m.setup_s.into());
                o.insert("warmup_s".into(), m.warmup_s.into());
                if let Some(p) = m.phases {
                    for (k, x) in [
                        "phase_forward_ms",
                        "phase_backward_ms",
                        "phase_optimizer_ms",
                        "enqueue_ms",
                        "drain_ms",
                        "cpu_ms_per_step",
                    ]
                    .iter()
                    .zip(p)
                    {
                        o.insert((*k).into(), x.into());
                    }
                }
                eprintln!(
                    "   median step {med:.2} ms, {:.0} tok/s, {achieved:.2} TFLOP/s, loss {:.4} -> {:.4} (setup {:.1}s, warmup {:.1}s)",
                    tokens / (med * 1e-3),
                    m.loss_first,
                    m.loss_last,
                    m.setup_s,
                    m.warmup_s
                );
                format!(
                    "| {label} | {matmul} | {:.0} | {med:.2} | {achieved:.2} | {} | {} |",
                    tokens / (med * 1e-3),
                    mfu.map_or("n/a".into(), |x| format!("{:.1}%", 100.0 * x)),
                    m.trainable
                )
            }
            Err(e) => {
                eprintln!("   error: {e}");
                j.as_object_mut()
                    .expect("json object")
                    .insert("error".into(), e.clone().into());
                format!("| {label} | {matmul} | error: {e} | | | | |")
            }
        };
        let line = serde_json::to_string(&j)?;
        println!("JSON {line}");
        if let Some(f) = json_out.as_mut() {
            writeln!(f, "{line}").map_err(|e| format!("--json: {e}"))?;
            f.flush().map_err(|e| format!("--json: {e}"))?;
        }
        rows.push(row);
    }
    println!();
    println!(
        "train_bench ({backend}, {}, batch {} x seq {}, median of {} steps after {} warm-up)",
        args.config, args.batch, args.seq, args.steps, args.warmup
    );
    println!("| targets:quant:precision | matmul | tok/s | step ms | TFLOP/s | MFU | trainable |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
