//! A whole benchmark run: checks, every configuration in turn, its JSON line, the table.

use burn::tensor::backend::AutodiffBackend;
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::config::{
    model_config, parse_configs, parse_peaks, BenchConfig, BenchPrecision, LORA_ALPHA, R,
};
use super::flops::train_flops;
use super::matmul::matmul_bench;
use super::options::BenchOptions;
use super::step::{run_config, Measured};
use super::timing::{median, now_epoch, panic_message};
use crate::checks::{at_least_one, positive};
use crate::AnyError;

/// Where JSON lines go: stdout (prefixed `JSON `) and, with `--json`, appended to a file.
/// The file is rewritten atomically (`lora_io::atomic_write`: its previous lines, then this
/// run's) after every line, so a full disk or a crash never leaves a torn line in it.
#[derive(Debug)]
pub struct JsonSink {
    /// The `--json` file and its whole content so far.
    file: Option<(PathBuf, Vec<u8>)>,
}

impl JsonSink {
    /// Checks that `path` can be written and reads the lines it already holds (appended to);
    /// `None` writes to stdout only.
    ///
    /// # Errors
    /// A message naming `--json` and the file.
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        let file = match path {
            Some(p) => {
                lora_io::check_writable_file(p)
                    .map_err(|e| format!("--json {}: cannot write there ({e})", p.display()))?;
                let mut old = match lora_io::read_regular_file(p) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(format!("--json {}: {e}", p.display())),
                };
                if !old.is_empty() && !old.ends_with(b"\n") {
                    old.push(b'\n');
                }
                Some((p.to_path_buf(), old))
            }
            None => None,
        };
        Ok(Self { file })
    }

    /// Prints `j` as one line and adds it to the file (rewritten atomically).
    ///
    /// # Errors
    /// Serialisation; a write error naming `--json` and the file.
    pub fn emit(&mut self, j: &Value) -> Result<(), AnyError> {
        let line = serde_json::to_string(j)?;
        println!("JSON {line}");
        if let Some((path, content)) = self.file.as_mut() {
            content.extend_from_slice(line.as_bytes());
            content.push(b'\n');
            lora_io::atomic_write(&*path, content).map_err(|e| format!("--json: {e}"))?;
        }
        Ok(())
    }
}

/// The run-wide values a configuration's report needs.
struct RunInfo<'a> {
    opts: &'a BenchOptions,
    c: &'a lora_models::gpt2::Gpt2Config,
    peaks: (Option<f64>, Option<f64>),
}

/// Adds the measured numbers of one configuration to its JSON object `o` and returns its table
/// row (`label`, matmul precision `matmul`).
fn measured_row(
    info: &RunInfo<'_>,
    bc: &BenchConfig,
    m: &Measured,
    o: &mut serde_json::Map<String, Value>,
    label: &str,
    matmul: &str,
) -> String {
    let (args, c) = (info.opts, info.c);
    let med = median(&m.step_ms);
    let tokens = (args.batch * args.seq) as f64;
    let flops = train_flops(c, args.batch, args.seq, R, &m.adapted);
    let peak = match bc.precision {
        BenchPrecision::F32 => info.peaks.0,
        BenchPrecision::Bf16 => info.peaks.1,
    };
    let achieved = flops / (med * 1e-3) / 1e12;
    let mfu = peak.map(|p| achieved / p);
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

/// Runs the benchmark of `opts` on backend `B` (named `backend` in the output: "cuda",
/// "ndarray (CPU)", ...): checks the options, then either the matmul bench (`--matmul-bench`)
/// or every configuration in turn (a failing or panicking one gives a JSON line with
/// `"error"`), then the table on stdout.
///
/// # Errors
/// A message naming the flag at fault (`--configs`, `--peak-tflops`, `--config`, `--batch`,
/// `--seq`, `--steps`, `--json`); JSON writing errors.
pub fn run_bench<B: AutodiffBackend>(opts: &BenchOptions, backend: &str) -> Result<(), AnyError> {
    let args = opts;
    at_least_one("--batch", args.batch)?;
    if args.seq < 2 {
        return Err(format!("--seq {}: must be at least 2", args.seq).into());
    }
    at_least_one("--steps", args.steps)?;
    positive("--lr", args.lr)?;
    let configs = parse_configs(args)?;
    let peaks = parse_peaks(&args.peak_tflops)?;
    let c = model_config(&args.config)?;
    if args.seq > c.n_positions {
        return Err(format!(
            "--seq {} exceeds n_positions = {} of --config {}",
            args.seq, c.n_positions, args.config
        )
        .into());
    }
    let mut json = JsonSink::open(args.json.as_deref())?;
    let device: B::Device = Default::default();
    if args.matmul_bench {
        return matmul_bench::<B>(args, &c, &device, backend, &mut json);
    }
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
    let info = RunInfo {
        opts: args,
        c: &c,
        peaks,
    };
    let mut rows = Vec::new();
    for bc in &configs {
        let label = bc.label();
        eprintln!("== {label}");
        let t_start = now_epoch();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_config::<B>(args, &c, bc, &device)
        }))
        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p.as_ref()))));
        // Give the memory of this configuration back before the next one.
        B::memory_cleanup(&device);
        let t_end = now_epoch();
        let matmul = match bc.precision {
            BenchPrecision::F32 => f32_matmul,
            BenchPrecision::Bf16 => "bf16",
        };
        let mut j = serde_json::json!({
            "side": "ours",
            "backend": backend,
            "model": args.config,
            "targets": bc.targets.name(),
            "quant": bc.quant_name,
            "precision": bc.precision.name(),
            "matmul": matmul,
            "lm_loss": format!("{:?}", args.lm_loss).to_lowercase(),
            "batch": args.batch,
            "seq": args.seq,
            "r": R,
            "lora_alpha": LORA_ALPHA,
            "warmup": args.warmup,
            "steps": args.steps,
            "t_start": t_start,
            "t_end": t_end,
        });
        let o = j.as_object_mut().expect("json object");
        let row = match result {
            Ok(m) => measured_row(&info, bc, &m, o, &label, matmul),
            Err(e) => {
                eprintln!("   error: {e}");
                o.insert("error".into(), e.clone().into());
                format!("| {label} | {matmul} | error: {e} | | | | |")
            }
        };
        json.emit(&j)?;
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
