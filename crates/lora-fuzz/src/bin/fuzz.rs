//! `fuzz`: runs the fuzz targets from the command line.
//!
//! ```text
//! cargo run --release -p lora-fuzz -- --target gguf --seconds 600 --seed 1 --out fuzz-out
//! cargo run --release -p lora-fuzz -- --target all --seconds 5
//! cargo run --release -p lora-fuzz -- --list
//! ```
//!
//! Prints, per target, the seeds, executions, executions per second, corpus size and unique
//! failures; each failing input is written to `<out>/<target>/`. An input that requests an
//! oversized allocation stops the process (its input is left in `<out>/<target>/oversize.bin`).
//! Exit code 1 when any target failed.

use clap::Parser;
use lora_fuzz::{fuzz, target, FuzzOptions, FuzzReport, TARGETS};
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOC: lora_fuzz::CountingAlloc = lora_fuzz::CountingAlloc;

#[derive(Parser, Debug)]
#[command(
    name = "fuzz",
    about = "Mutation-based fuzzing of lora-burn's file readers"
)]
struct Args {
    /// Target name, or `all` (one after the other)
    #[arg(long, default_value = "all")]
    target: String,
    /// Seconds per target
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop a target after this many executions (with --seconds, whichever comes first)
    #[arg(long)]
    execs: Option<u64>,
    /// Seed of the mutations
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Per-input time limit in seconds; longer is a hang
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Directory the failing inputs are written to (`<out>/<target>/`)
    #[arg(long, default_value = "fuzz-out")]
    out: PathBuf,
    /// Also write inputs whose largest single allocation exceeds this many bytes (within the
    /// bound) to `<out>/<target>/alloc-*.bin`
    #[arg(long)]
    report_alloc: Option<usize>,
    /// List the targets and exit
    #[arg(long)]
    list: bool,
    /// Run each seed of the targets once, print its outcome, and exit
    #[arg(long)]
    check_seeds: bool,
}

fn main() {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{:<18} {}", t.name, t.about);
        }
        return;
    }
    let targets: Vec<_> = if args.target == "all" {
        TARGETS.iter().collect()
    } else {
        match target(&args.target) {
            Some(t) => vec![t],
            None => {
                let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
                eprintln!(
                    "error: --target {:?} is not a target; expected all or one of: {}",
                    args.target,
                    names.join(", ")
                );
                std::process::exit(2);
            }
        }
    };
    if args.check_seeds {
        for t in &targets {
            for (i, seed) in (t.seeds)().into_iter().enumerate() {
                let n = seed.len();
                let o = lora_fuzz::replay(t, seed, Duration::from_secs_f64(args.timeout));
                println!("{} seed {i} ({n} bytes): {o:?}", t.name);
            }
        }
        return;
    }
    if !lora_fuzz::alloc::is_installed() {
        eprintln!("warning: the counting allocator is not installed; allocations are not checked");
    }
    println!(
        "{:<18} {:>6} {:>10} {:>9} {:>9} {:>8} {:>7} {:>10} {:>9}",
        "target", "seeds", "execs", "ok", "exec/s", "seconds", "corpus", "max alloc", "failures"
    );
    let mut failed = false;
    for t in targets {
        let dir = args.out.join(t.name);
        if let Err(e) = std::fs::create_dir_all(&dir)
            .and_then(|_| lora_fuzz::alloc::set_crash_file(&dir.join("oversize.bin"), t.name))
        {
            eprintln!("error: cannot create {}: {e}", dir.display());
            std::process::exit(2);
        }
        let opts = FuzzOptions {
            seed: args.seed,
            max_execs: args.execs,
            max_time: Some(Duration::from_secs_f64(args.seconds)),
            timeout: Duration::from_secs_f64(args.timeout),
            out_dir: Some(args.out.clone()),
            report_alloc: args.report_alloc,
            ..FuzzOptions::default()
        };
        let r = fuzz(t, &opts);
        print_row(&r);
        // Nothing oversized happened: the empty crash file is not a result.
        let _ = std::fs::remove_file(dir.join("oversize.bin"));
        failed |= !r.failures.is_empty();
        if r.failures.iter().any(|f| f.kind == "hang") {
            // The hung input still holds the (process-wide) allocation check.
            eprintln!("a hang stops this process; run the remaining targets separately");
            break;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn print_row(r: &FuzzReport) {
    println!(
        "{:<18} {:>6} {:>10} {:>9} {:>9.0} {:>8.1} {:>7} {:>10} {:>9}",
        r.target,
        r.seeds,
        r.execs,
        r.oks,
        r.execs_per_sec(),
        r.elapsed.as_secs_f64(),
        r.corpus,
        r.peak_alloc,
        r.failures.len()
    );
    for f in &r.failures {
        let at = f
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("  {}: {} [{at}]", f.kind, f.message);
    }
}
