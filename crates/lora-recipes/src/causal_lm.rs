//! The causal-LM recipe (PEFT task type CAUSAL_LM): next-token loss on the review text;
//! held-out perplexity before and after.

use burn::tensor::backend::AutodiffBackend;
use lora_core::count_parameters;

// The IMDB pipeline (one import site; the crate that holds it may change).
use lora_data::imdb::{make_batches, Batch};
use lora_train::{train_data_parallel, Evaluation};
use std::time::Instant;

use crate::devices::{check_shardable, split_batch, train_devices};
use crate::encode::encode_lm;
use crate::eval::mean_nll;
use crate::lm_loss::{next_token_loss_sum, next_token_mask};
use crate::method::{attach, save_method};
use crate::output::{eval_record, finish_metrics, open_metrics, training_line};
use crate::run::{set_precision, Inputs, Prepared, RecipeModel};
use crate::{AnyError, FinetuneOptions};

/// Held-out reviews per perplexity batch.
const EVAL_BATCH: usize = 16;

/// Attaches the adapters, applies `--precision`, tokenizes (first `--max-length` tokens of each
/// review) and batches, evaluates perplexity, trains on the mean next-token loss of each batch,
/// evaluates again and writes the adapter to `--output-dir`, with `metrics.jsonl` (each step,
/// each `eval_loss` and `eval_perplexity`) and `loss.png`.
///
/// # Errors
/// LoRA, tokenizer, batching, training and file errors.
pub fn run_causal_lm<B, M>(
    opts: &FinetuneOptions,
    mut model: M,
    inputs: &Inputs<'_>,
    prep: &Prepared,
    device: &B::Device,
) -> Result<(), AnyError>
where
    B: AutodiffBackend,
    M: RecipeModel<B>,
{
    let (tok, pad, cfg) = (inputs.tok, prep.pad, &prep.method);
    let model_name = inputs.model_name;
    eprintln!("{}", attach(&mut model, cfg, device)?);
    set_precision(&mut model, opts, device)?;
    println!("{}", count_parameters(&model));
    let train_ids = encode_lm(tok, &prep.train_slice, opts.max_length)?;
    let test_ids = encode_lm(tok, inputs.test_set, opts.max_length)?;
    let zeros = |n: usize| vec![0u8; n];
    let ml = opts.max_length;
    let train_zeros = zeros(train_ids.len());
    let train_batches = make_batches(&train_ids, &train_zeros, opts.batch_size, ml, pad, None)?;
    let test_zeros = zeros(test_ids.len());
    let test_batches = make_batches(&test_ids, &test_zeros, EVAL_BATCH, ml, pad, None)?;
    check_shardable(&train_batches, opts.devices)?;
    let devices = train_devices::<B>(device, opts.devices)?;
    let mut metrics = open_metrics(opts)?;
    // A resumed run's model is only restored inside the loop: nothing to evaluate before.
    if !opts.no_eval_before && opts.resume.is_none() {
        let t = Instant::now();
        let nll = mean_nll(&model.valid(), &test_batches, device);
        metrics.record_eval(eval_record(0, &lm_metrics(nll), t))?;
        println!("held-out perplexity before: {:.3}", nll.exp());
    }
    let (model, stats) = train_data_parallel(
        model,
        &prep.train,
        &devices,
        |i| train_batches[i % train_batches.len()].clone(),
        split_batch,
        |m: &M, b: &Batch| {
            // Each replica's shard goes to the replica's own device.
            let device = &m.devices()[0];
            let (ids, _) = b.to_tensors::<B>(device);
            let (mask, count) = next_token_mask::<B>(b, device);
            let sum = next_token_loss_sum(m, ids, mask, opts.lm_loss)?;
            Ok((sum.div_scalar(count.max(1) as f64), count))
        },
        |m, _| {
            let nll = mean_nll(&m.valid(), &test_batches, device);
            let e = Evaluation::new(format!("held-out perplexity {:.3}", nll.exp()));
            lm_metrics(nll)
                .into_iter()
                .fold(e, |e, (k, v)| e.with(k, v))
        },
        |m, _step, dir| {
            save_method::<B, _, _>(m, m, cfg, None, Some(model_name), dir)
                .map_err(|e| e.to_string())
        },
        &mut metrics,
    )?;
    let t = Instant::now();
    let nll = mean_nll(&model.valid(), &test_batches, device);
    metrics.record_eval(eval_record(stats.steps, &lm_metrics(nll), t))?;
    println!("held-out perplexity after: {:.3}", nll.exp());
    println!("{}", training_line(&stats));
    finish_metrics(&metrics)?;
    save_method::<B, _, _>(
        &model,
        &model,
        cfg,
        None,
        Some(model_name),
        &opts.output_dir,
    )?;
    println!("adapter written to {}", opts.output_dir.display());
    Ok(())
}

/// transformers' evaluation metrics of a causal LM from its mean next-token loss.
fn lm_metrics(nll: f64) -> [(&'static str, f64); 2] {
    [("eval_loss", nll), ("eval_perplexity", nll.exp())]
}
