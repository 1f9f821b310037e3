//! The classification recipe (PEFT task type SEQ_CLS): a `score` head on the last real token,
//! trained fully (`modules_to_save`) beside the adapters; held-out accuracy before and after.

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use lora_core::count_parameters;
use lora_models::classify::SequenceClassifier;
use lora_peft::merge_and_unload;
// The IMDB pipeline (one import site; the crate that holds it may change).
use lora_data::imdb::{self as data, make_batches, Batch, Review};
use lora_train::{train_data_parallel, Evaluation, Progress};
use std::time::Instant;

use crate::devices::{check_shardable, split_batch, train_devices};
use crate::encode::encode_cls;
use crate::eval::accuracy;
use crate::method::{attach, save_method};
use crate::output::{
    dump_data, eval_record, finish_metrics, open_metrics, training_line, write_heldout, DumpMeta,
};
use crate::run::{set_precision, Inputs, Prepared, RecipeModel};
use crate::score::{init_classifier, verbalizer_ids};
use crate::{AnyError, FinetuneOptions};

/// Tokenizes and batches the reviews (training order kept), writes `--dump-data`, builds the
/// classifier ([`init_classifier`]), attaches the adapters, applies `--precision`, evaluates,
/// trains with cross-entropy, evaluates on merged weights (a quantized base stays unmerged:
/// merging would requantize it), writes the adapter and `heldout_logits.safetensors` (the
/// logits of the first held-out batch) to `--output-dir`, with `metrics.jsonl` (each step and
/// each `eval_accuracy`) and `loss.png`.
///
/// # Errors
/// A `--suffix` that leaves no room in `--max-length`; tokenizer, batching, LoRA, training and
/// file errors.
pub fn run_classify<B, M>(
    opts: &FinetuneOptions,
    model: M,
    inputs: &Inputs<'_>,
    prep: &Prepared,
    device: &B::Device,
) -> Result<(), AnyError>
where
    B: AutodiffBackend,
    M: RecipeModel<B>,
{
    let (tok, test_set, pad, cfg) = (inputs.tok, inputs.test_set, prep.pad, &prep.method);
    let model_name = inputs.model_name;
    let train_slice: &[Review] = &prep.train_slice;
    // Appended after the review's own tokens: no BOS/EOS of its own.
    let suffix = tok.encode_with(&opts.suffix, false)?;
    if suffix.len() >= opts.max_length {
        return Err(format!(
            "--suffix {:?} is {} tokens, so no review token fits in --max-length {}",
            opts.suffix,
            suffix.len(),
            opts.max_length
        )
        .into());
    }
    let t = Instant::now();
    let train_ids = encode_cls(tok, train_slice, &suffix, opts.max_length, opts.truncation)?;
    let test_ids = encode_cls(tok, test_set, &suffix, opts.max_length, opts.truncation)?;
    eprintln!(
        "tokenized {} train + {} test reviews in {:.1}s",
        train_ids.len(),
        test_ids.len(),
        t.elapsed().as_secs_f64()
    );
    let labels: Vec<u8> = train_slice.iter().map(|r| r.label).collect();
    let test_labels: Vec<u8> = test_set.iter().map(|r| r.label).collect();
    let (bs, ml) = (opts.batch_size, opts.max_length);
    let mut train_batches = make_batches(&train_ids, &labels, bs, ml, pad, None)?;
    let mut test_batches =
        make_batches(&test_ids, &test_labels, opts.eval_batch_size, ml, pad, None)?;
    data::pad_batches_to_multiple(&mut train_batches, opts.pad_multiple, ml, pad);
    data::pad_batches_to_multiple(&mut test_batches, opts.pad_multiple, ml, pad);
    check_shardable(&train_batches, opts.devices)?;
    let devices = train_devices::<B>(device, opts.devices)?;
    if let Some(p) = &opts.dump_data {
        let meta = DumpMeta {
            pad,
            neg_pos: verbalizer_ids(tok)?,
            max_length: ml,
            batch_size: bs,
            seed: opts.seed,
        };
        dump_data(p, (&train_ids, &labels), (&test_ids, &test_labels), &meta)?;
    }

    let mut clf = init_classifier(model, tok, opts.score_init, device)?;
    eprintln!("{}", attach(&mut clf, cfg, device)?);
    set_precision(&mut clf, opts, device)?;
    println!("{}", count_parameters(&clf));

    let mut metrics = open_metrics(opts)?;
    // A resumed run's model is only restored inside the loop: nothing to evaluate before.
    if !opts.no_eval_before && opts.resume.is_none() {
        let t = Instant::now();
        let (acc, tps) = accuracy(&clf.valid(), &test_batches, device);
        metrics.record_eval(eval_record(0, &[("eval_accuracy", acc)], t))?;
        println!(
            "held-out accuracy before: {:.2}% on {} reviews ({:.0} tok/s eval, adapters not merged)",
            acc * 100.0,
            test_set.len(),
            tps
        );
    }
    // Each replica's loss puts its shard on the replica's own device.
    let loss_fn =
        |m: &SequenceClassifier<B, M>, b: &Batch| -> Result<(Tensor<B, 1>, usize), String> {
            let device = m.devices()[0].clone();
            let (ids, labels) = b.to_tensors::<B>(&device);
            let logits = m.forward(ids, &b.lengths);
            let ce = CrossEntropyLossConfig::new().init(&device);
            Ok((ce.forward(logits, labels), b.num_tokens()))
        };
    let (clf, stats) = train_data_parallel(
        clf,
        &prep.train,
        &devices,
        |i| train_batches[i % train_batches.len()].clone(),
        split_batch,
        loss_fn,
        |m, _step| {
            let (acc, _) = accuracy(&m.valid(), &test_batches, device);
            Evaluation::new(format!("held-out accuracy {:.2}%", acc * 100.0))
                .with("eval_accuracy", acc)
        },
        |m, _step, dir| {
            let head = Some(m.score.base_weight());
            save_method(m, &m.model, cfg, head, Some(model_name), dir).map_err(|e| e.to_string())
        },
        &mut metrics,
    )?;
    // Inference on merged weights (W + scaling·A·B, PEFT merge_and_unload): one matmul per
    // layer instead of three. A quantized base is left unmerged (merging would requantize
    // it, changing the model), as with bitsandbytes bases in PEFT; prefix, prompt and
    // bottleneck adapters do not fold into the weights.
    let merged = opts.quant_kind()?.is_none() && cfg.mergeable();
    let eval_model = {
        let mut m = clf.valid();
        if merged {
            let progress = Progress::spinner("merging the adapters into the base weights");
            merge_and_unload(&mut m)?;
            progress.finish();
        }
        m
    };
    let t = Instant::now();
    let (acc, tps) = accuracy(&eval_model, &test_batches, device);
    metrics.record_eval(eval_record(stats.steps, &[("eval_accuracy", acc)], t))?;
    drop(eval_model);
    println!(
        "held-out accuracy after: {:.2}% on {} reviews ({:.0} tok/s eval{})",
        acc * 100.0,
        test_set.len(),
        tps,
        if merged {
            ", adapters merged into the weights"
        } else {
            ", adapters not merged"
        }
    );
    println!("{}", training_line(&stats));
    finish_metrics(&metrics)?;
    let head = Some(clf.score.base_weight());
    save_method(
        &clf,
        &clf.model,
        cfg,
        head,
        Some(model_name),
        &opts.output_dir,
    )?;
    println!("adapter written to {}", opts.output_dir.display());
    // Our logits on the first held-out batch, for comparison with PEFT
    // (tests/fixtures/check_smollm2_adapter.py).
    let first = &test_batches[0];
    let (ids, _) = first.to_tensors::<B::InnerBackend>(device);
    let logits = clf.valid().forward(ids, &first.lengths);
    write_heldout(
        &opts.output_dir.join("heldout_logits.safetensors"),
        first,
        logits,
    )?;
    Ok(())
}
