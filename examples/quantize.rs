//! Quantizes the weights of a safetensors file into bitsandbytes' serialized layout (what
//! transformers + bitsandbytes `save_pretrained` writes for `Linear4bit` / `Linear8bitLt`), or
//! dequantizes such a file back to f32.
//!
//! ```text
//! cargo run --release --example quantize -- --input model.safetensors --quant nf4-dq \
//!     [--blocksize 64] [--tensors 'a,b,*_proj.weight'] --out model.nf4.safetensors
//! cargo run --release --example quantize -- --dequantize --input model.nf4.safetensors \
//!     [--reference model.safetensors] --out model.f32.safetensors
//! ```
//!
//! The flags (clap, `lora_quant::convert::QuantizeArgs`), the layouts, the tensor selection and
//! the errors are those of `lora_quant::convert`; this file prints the report. Any error prints
//! one message naming the file and key and exits with code 1.

use std::process::ExitCode;

use lora_quant::convert::{parse_args, run, Command, Mode, QuantizeArgs, Report, TensorReport};

/// Prints the per-tensor table and the totals.
fn print_report(r: &Report, dequantizing: bool) {
    println!(
        "{:<52} {:>14} {:>7} {:>11} {:>11} {:>10} {:>11} {:>11}",
        "tensor", "shape", "layout", "bytes in", "bytes out", "bits/param", "max|err|", "rms err"
    );
    for t in &r.tensors {
        let shape = format!("{:?}", t.shape).replace(' ', "");
        let bits = t
            .bits_per_param
            .map_or("-".to_string(), |b| format!("{b:.3}"));
        let (mx, rms) = t
            .error
            .map_or(("-".to_string(), "-".to_string()), |(m, r)| {
                (format!("{m:.3e}"), format!("{r:.3e}"))
            });
        println!(
            "{:<52} {:>14} {:>7} {:>11} {:>11} {:>10} {:>11} {:>11}",
            t.name, shape, t.layout, t.bytes_before, t.bytes_after, bits, mx, rms
        );
    }
    let (b, a) = r.totals();
    let q: Vec<&TensorReport> = r.tensors.iter().filter(|t| t.layout != "copied").collect();
    let (qb, qa) = q
        .iter()
        .fold((0, 0), |(x, y), t| (x + t.bytes_before, y + t.bytes_after));
    let mb = |x: usize| x as f64 / 1e6;
    let what = if dequantizing {
        "dequantized"
    } else {
        "quantized"
    };
    println!(
        "{what} {} of {} tensors: {:.3} MB -> {:.3} MB",
        q.len(),
        r.tensors.len(),
        mb(qb),
        mb(qa)
    );
    let label = if dequantizing {
        "memory (dequantized)"
    } else {
        "memory reduction"
    };
    let ratio = if dequantizing {
        format!("{:.2}× larger", a as f64 / b.max(1) as f64)
    } else {
        format!("{:.2}×", b as f64 / a.max(1) as f64)
    };
    println!(
        "{label}: {:.3} MB -> {:.3} MB ({ratio}); output file {} bytes",
        mb(b),
        mb(a),
        r.file_bytes
    );
}

fn main() -> ExitCode {
    // `args_os`: a path need not be UTF-8 (`std::env::args` would panic on it).
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", QuantizeArgs::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(o)) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&opts) {
        Ok(r) => {
            print_report(&r, matches!(opts.mode, Mode::Dequantize { .. }));
            println!("wrote {}", opts.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
