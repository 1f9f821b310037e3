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
//! What one step is, how it is timed, the FLOP count behind MFU and the output format:
//! `lora_recipes::bench` (module docs).
//!
//! Output: one JSON line per configuration (to `--json` and stdout, prefixed `JSON `), then a
//! short table. A configuration that fails (error or panic) gives a JSON line with `"error"` and
//! the run goes on with the next one.

use clap::Parser;
use lora_burn::{backend_name, TrainBackend};
use lora_recipes::bench::{run_bench, BenchOptions};

/// Training-step benchmark of GPT-2 + LoRA / QLoRA (see the module docs).
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Training-step speed benchmark: GPT-2 (random weights) + LoRA / QLoRA, one table"
)]
struct Args {
    #[command(flatten)]
    opts: BenchOptions,
}

fn main() {
    lora_recipes::allocator::tune_host_allocator();
    let args = Args::parse();
    let run = lora_recipes::switches::check_switches()
        .and_then(|()| run_bench::<TrainBackend>(&args.opts, backend_name()));
    if let Err(e) = run {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
