//! The training loop on two CPU replicas (`train_data_parallel`) against the same loop on one
//! model (`train_observed`) with each micro-batch whole: gradient accumulation, loss scaling,
//! clipping, the warmup schedule and checkpoints all on. The weights, per-step losses and
//! gradient norms agree within 1e-6, and a data-parallel run resumed from its checkpoint ends
//! where the uninterrupted one does. One test function: the collective is process-global.
#![cfg(feature = "parallel")]

mod common;

use common::tiny_lora::{batch, halves, loss, max_diff, model, within_a_minute, Batch, Lora};
use common::{quiet, vals, AD};
use lora_train::{train_data_parallel, train_observed, LossScaleConfig, TrainConfig, TrainStats};
use std::path::Path;

fn config(out: &Path) -> TrainConfig {
    TrainConfig {
        lr: 0.05,
        warmup_steps: 1,
        weight_decay: 0.01,
        grad_accum: 2,
        // Below the first steps' gradient norms: clipping acts.
        max_grad_norm: Some(0.08),
        loss_scale: Some(LossScaleConfig {
            init_scale: 1024.0,
            ..LossScaleConfig::default()
        }),
        checkpoint_every: Some(2),
        output_dir: Some(out.to_path_buf()),
        ..quiet(4)
    }
}

/// Micro-batch `i` of the run: [`batch`]`(i + 1)`, four rows.
fn next(i: usize) -> Batch {
    batch(i + 1)
}

fn split(b: &Batch, n: usize) -> Result<Vec<Batch>, String> {
    assert_eq!(n, 2);
    Ok(halves(b).to_vec())
}

fn none(_: &Lora<AD>, _: usize) -> String {
    String::new()
}

fn no_files(_: &Lora<AD>, _: usize, _: &Path) -> Result<(), String> {
    Ok(())
}

fn two_devices(cfg: &TrainConfig) -> (Lora<AD>, TrainStats) {
    let dev = burn::backend::ndarray::NdArrayDevice::Cpu;
    train_data_parallel(
        model(),
        cfg,
        &[dev, dev],
        next,
        split,
        loss,
        none,
        no_files,
        (),
    )
    .expect("data-parallel run")
}

fn weights(m: &Lora<AD>) -> Vec<f64> {
    [vals(m.a.val().inner()), vals(m.b.val().inner())].concat()
}

#[test]
fn the_loop_on_two_replicas_equals_the_loop_on_one_model() {
    within_a_minute(check_loop);
}

fn check_loop() {
    let one_dir = tempfile::tempdir().unwrap();
    let two_dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    let (one, one_stats) = train_observed(
        model(),
        &config(one_dir.path()),
        &dev,
        next,
        loss,
        none,
        no_files,
        (),
    )
    .expect("one-model run");
    let (two, two_stats) = two_devices(&config(two_dir.path()));
    assert_eq!(one_stats.steps, 4);
    assert_eq!(two_stats.skipped_steps, 0);
    assert!(
        one_stats.grad_norms[0] > 0.08,
        "clipping must act in step 1"
    );
    assert_eq!(two_stats.tokens, one_stats.tokens, "tokens of all shards");
    for (what, x, y) in [
        ("loss", &two_stats.losses, &one_stats.losses),
        (
            "gradient norm",
            &two_stats.grad_norms,
            &one_stats.grad_norms,
        ),
        ("learning rate", &two_stats.lrs, &one_stats.lrs),
    ] {
        let d = max_diff(x, y);
        println!("per-step {what}: max abs diff {d:.2e}");
        assert!(d <= 1e-6, "{what}: {x:?} vs {y:?}");
    }
    let d = max_diff(&weights(&two), &weights(&one));
    println!("LoRA weights, two replicas vs one model: max abs diff {d:.2e}");
    assert!(d <= 1e-6, "weights off by {d}");
    assert_eq!(vals(two.w.val().inner()), vals(one.w.val().inner()));

    // Resumed from step 2's checkpoint, the data-parallel run ends where it did uninterrupted:
    // two more steps, so a replica that had not loaded the AdamW moments would drift from
    // replica 0 in step 3 and change step 4's averaged gradients.
    let resumed_dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        resume_from: Some(two_dir.path().join("checkpoint-2")),
        ..config(resumed_dir.path())
    };
    let (resumed, stats) = two_devices(&cfg);
    assert_eq!(stats.first_step, 3);
    let d = max_diff(&weights(&resumed), &weights(&two));
    println!("resumed at step 3 of 4 vs uninterrupted: max abs diff {d:.2e}");
    assert!(d <= 1e-6, "resumed run off by {d}");
}
