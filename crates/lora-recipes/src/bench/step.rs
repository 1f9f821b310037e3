//! One benchmark configuration: build the model, then the warm-up, timed and profiled step
//! loops.

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use lora_core::{count_parameters, NamedLinears};
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_peft::{apply_lora, quantize_model, LoraConfig};
use lora_train::{adamw_optimizer, TrainConfig};
use std::time::Instant;

use crate::lm_loss::{next_token_loss_sum, LmLoss};

use super::config::{BenchConfig, BenchPrecision, LORA_ALPHA, R};
use super::options::BenchOptions;
use super::timing::{median, process_cpu_secs, sync};

/// The measured numbers of one configuration.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Wall time of each timed step, ms.
    pub step_ms: Vec<f64>,
    /// Loss of the first step (the first warm-up step; the last step without warm-up).
    pub loss_first: f64,
    /// Loss of the last timed step.
    pub loss_last: f64,
    /// Trainable parameters.
    pub trainable: usize,
    /// All parameters.
    pub all: usize,
    /// `(d_in, d_out)` of every layer with an adapter.
    pub adapted: Vec<(usize, usize)>,
    /// Size of the quantized base weights in MB (10⁶ bytes), when quantized.
    pub quant_mb: Option<f64>,
    /// Seconds from the start to the first step (model, quantization, adapters, batches).
    pub setup_s: f64,
    /// Seconds of the warm-up steps.
    pub warmup_s: f64,
    /// `--phases`: medians in ms of forward+loss, backward, optimizer, enqueue, drain, and
    /// CPU ms per step.
    pub phases: Option<[f64; 6]>,
}

/// Sets the compute precision of the model's linear layers (lora-core mixed precision:
/// `NamedLinears::set_compute_dtype`; bf16 base weights and matmuls, f32 LoRA master weights,
/// f32 everything else). f32 is the default of every layer.
fn set_precision<B: AutodiffBackend>(
    mut model: Gpt2<B>,
    p: BenchPrecision,
) -> Result<Gpt2<B>, String> {
    match p {
        BenchPrecision::F32 => Ok(model),
        BenchPrecision::Bf16 => {
            let report = model
                .set_compute_dtype(burn::tensor::FloatDType::BF16)
                .map_err(|e| format!("bf16: {e}"))?;
            eprintln!("   {report}");
            Ok(model)
        }
    }
}

/// Causal-LM loss of `model` on `ids`: the mean over `batch·(seq−1)` positions of
/// `−log softmax(logits[t])[ids[t+1]]`, computed as `how` says ([`next_token_loss_sum`]).
///
/// # Shapes
/// `ids` `[batch, seq]` (seq ≥ 2) → `[1]`.
///
/// # Errors
/// `seq < 2`, as text.
pub fn lm_loss<B: AutodiffBackend>(
    model: &Gpt2<B>,
    ids: Tensor<B, 2, Int>,
    how: LmLoss,
) -> Result<Tensor<B, 1>, String> {
    let [b, s] = ids.dims();
    let mask = Tensor::ones([b, s.saturating_sub(1)], &ids.device());
    let sum = next_token_loss_sum(model, ids, mask, how)?;
    Ok(sum.div_scalar((b * s.saturating_sub(1)).max(1) as f64))
}

/// Random token ids `[batch, seq]` in `[0, vocab)` from a host generator (splitmix64).
pub fn random_ids<B: AutodiffBackend>(
    batch: usize,
    seq: usize,
    vocab: usize,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
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

/// Runs one configuration: seeds the backend, builds a random GPT-2 of shape `c`, quantizes it
/// (QLoRA), attaches the adapters (r = [`R`], lora_alpha = [`LORA_ALPHA`], no dropout), sets
/// the precision, draws 4 batches of ids, then `--warmup` untimed and `--steps` timed steps
/// (and with `--phases` the profiled steps).
///
/// # Errors
/// Model, quantization, adapter, precision or sync errors as text; a non-finite loss.
pub fn run_config<B: AutodiffBackend>(
    opts: &BenchOptions,
    c: &Gpt2Config,
    bc: &BenchConfig,
    device: &B::Device,
) -> Result<Measured, String> {
    let t0 = Instant::now();
    B::seed(device, opts.seed);
    let mut model = Gpt2::<B>::random(c, device).map_err(|e| e.to_string())?;
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
        lr: opts.lr,
        ..TrainConfig::default()
    };
    let mut optim = adamw_optimizer::<B, Gpt2<B>>(&train_cfg);
    let batches: Vec<_> = (0..4)
        .map(|i| {
            random_ids::<B>(
                opts.batch,
                opts.seq,
                c.vocab_size,
                opts.seed * 1000 + i,
                device,
            )
        })
        .collect();
    sync::<B>(device)?;
    let setup_s = t0.elapsed().as_secs_f64();

    let mut step = |model: Gpt2<B>, i: usize| -> Result<(Gpt2<B>, Tensor<B, 1>), String> {
        let ids = batches[i % batches.len()].clone();
        let loss = lm_loss(&model, ids, opts.lm_loss)?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(opts.lr, model, grads);
        Ok((model, loss.detach()))
    };
    let t1 = Instant::now();
    let mut loss_first = f64::NAN;
    for i in 0..opts.warmup {
        let (m, loss) = step(model, i)?;
        model = m;
        if i == 0 {
            loss_first = loss.into_scalar().elem::<f64>();
        }
        // Progress while kernels compile (the first GPU steps can take minutes).
        sync::<B>(device)?;
        eprintln!(
            "   warmup step {} done at {:.1}s",
            i + 1,
            t1.elapsed().as_secs_f64()
        );
    }
    sync::<B>(device)?;
    let warmup_s = t1.elapsed().as_secs_f64();
    let mut step_ms = Vec::with_capacity(opts.steps);
    let mut last = None;
    for i in 0..opts.steps {
        let t = Instant::now();
        let (m, loss) = step(model, opts.warmup + i)?;
        model = m;
        sync::<B>(device)?;
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(loss);
    }
    let loss_last = last.map_or(f64::NAN, |l| l.into_scalar().elem::<f64>());
    let mut phases = None;
    if opts.phases {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let (mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..opts.steps {
            let ids = batches[i % batches.len()].clone();
            let t = Instant::now();
            let loss = lm_loss(&model, ids, opts.lm_loss)?;
            sync::<B>(device)?;
            fwd.push(ms(t));
            let t = Instant::now();
            let g = loss.backward();
            sync::<B>(device)?;
            bwd.push(ms(t));
            let t = Instant::now();
            let grads = GradientsParams::from_grads(g, &model);
            model = optim.step(opts.lr, model, grads);
            sync::<B>(device)?;
            opt.push(ms(t));
        }
        let (mut enq, mut drain) = (Vec::new(), Vec::new());
        let cpu0 = process_cpu_secs();
        let t_all = Instant::now();
        for i in 0..opts.steps {
            let ids = batches[i % batches.len()].clone();
            let t = Instant::now();
            let loss = lm_loss(&model, ids, opts.lm_loss)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(opts.lr, model, grads);
            enq.push(ms(t));
            let t = Instant::now();
            sync::<B>(device)?;
            drain.push(ms(t));
        }
        let wall = t_all.elapsed().as_secs_f64();
        let cpu = process_cpu_secs().map_or(f64::NAN, |c1| {
            (c1 - cpu0.unwrap_or(f64::NAN)) / opts.steps as f64 * 1e3
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
            wall / opts.steps as f64 * 1e3
        );
        phases = Some(p);
    }
    if opts.warmup == 0 {
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
