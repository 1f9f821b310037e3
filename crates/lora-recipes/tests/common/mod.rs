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

/// Runs the `finetune` recipe with the command line `flags` on a tiny random GPT-2 (vocab
/// 50,257 for the GPT-2 tokenizer, 32 positions, width 8, 2 layers, 2 heads; the backend seeded
/// with 7 first), training on `train` and evaluating on `test`.
pub fn finetune_tiny_gpt2(
    flags: &[&str],
    train: &[lora_data::imdb::Review],
    test: &[lora_data::imdb::Review],
) -> Result<(), String> {
    use burn::tensor::backend::Backend;
    let device = Default::default();
    <AB as Backend>::seed(&device, 7);
    let cfg = Gpt2Config::sized(50257, 32, 8, 2, 2).map_err(|e| e.to_string())?;
    let model = Gpt2::<AB>::random(&cfg, &device).map_err(|e| e.to_string())?;
    let tok = lora_models::tokenizer::Tokenizer::gpt2().map_err(|e| e.to_string())?;
    let inputs = lora_recipes::Inputs {
        tok: &tok,
        default_targets: &lora_models::gpt2::LORA_TARGETS,
        train_set: train,
        test_set: test,
        model_path: std::path::Path::new("tiny-gpt2"),
        model_name: "tiny-gpt2",
    };
    lora_recipes::run_model(&finetune_opts(flags), model, &inputs, &device)
        .map_err(|e| e.to_string())
}
