//! Shared helpers of the lora-recipes tests.
#![allow(dead_code)]

use clap::Parser;
use lora_models::gpt2::{Gpt2, Gpt2Config};
use lora_recipes::bench::BenchOptions;
use lora_recipes::FinetuneOptions;

/// The CPU backend of the tests.
pub type B = burn::backend::NdArray<f32>;
/// [`B`] with autodiff.
pub type AB = burn::backend::Autodiff<B>;

#[derive(Parser)]
struct FinetuneCli {
    #[command(flatten)]
    opts: FinetuneOptions,
}

#[derive(Parser)]
struct BenchCli {
    #[command(flatten)]
    opts: BenchOptions,
}

/// The finetune options of a command line (`flags` after the program name).
pub fn finetune_opts(flags: &[&str]) -> FinetuneOptions {
    FinetuneCli::parse_from(std::iter::once("finetune").chain(flags.iter().copied())).opts
}

/// The benchmark options of a command line (`flags` after the program name).
pub fn bench_opts(flags: &[&str]) -> BenchOptions {
    BenchCli::parse_from(std::iter::once("train_bench").chain(flags.iter().copied())).opts
}

/// A seeded tiny random GPT-2 (vocab 50, 16 positions, width 8, 2 layers, 2 heads).
pub fn tiny_gpt2(seed: u64) -> Gpt2<B> {
    use burn::tensor::backend::Backend;
    let device = Default::default();
    B::seed(&device, seed);
    let c = Gpt2Config::sized(50, 16, 8, 2, 2).expect("valid config");
    Gpt2::random(&c, &device).expect("random model")
}

/// The f32 values of a tensor.
pub fn values<const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}
