//! safetensors through our code paths: `lora_models::st::StFile` (model checkpoints, io
//! fixtures) and whole PEFT / AdapterHub adapter directories (`adapter_config.json` plus the
//! weights) loaded onto the `gpt2_a` fixture model by `lora_peft::load_adapters`.

use super::{text, Target};
use crate::corpus::{files_under, fixtures_dir};
use crate::scratch::scratch_dir;
use lora_models::gpt2::Gpt2;
use lora_models::st::StFile;
use std::cell::RefCell;

type Cpu = burn_ndarray::NdArray<f32>;

/// `StFile::from_bytes`, then every tensor as f32 and as i64.
fn run_safetensors(b: &[u8]) -> Result<(), String> {
    let f = StFile::from_bytes("<fuzz input>.safetensors", b.to_vec()).map_err(text)?;
    let mut last = Ok(());
    for n in f.names() {
        let _ = f.contains(&n);
        // Float tensors read as f32, integer ones as i64; the other dtypes are errors.
        if let (Err(e), Err(_)) = (f.f32(&n), f.i64(&n)) {
            last = Err(text(e));
        }
    }
    last
}

fn seeds_safetensors() -> Vec<Vec<u8>> {
    // Small files only: every execution copies the input.
    files_under(&fixtures_dir(), &|n| n.ends_with(".safetensors"))
        .into_iter()
        .filter(|b| b.len() <= 64 << 10)
        .collect()
}

/// Safetensors files through `StFile`.
pub const SAFETENSORS: Target = Target {
    name: "safetensors",
    about: "lora_models::st::StFile::from_bytes, f32 and i64 of every tensor",
    run: run_safetensors,
    seeds: seeds_safetensors,
    bounded_execs: 30_000,
};

/// Separates the config from the weights in an `adapter_dir` input.
pub const WEIGHTS_SEPARATOR: &[u8] = b"\n--lora-fuzz: weights follow--\n";

thread_local! {
    static GPT2_A: RefCell<Option<Gpt2<Cpu>>> = const { RefCell::new(None) };
}

/// The input split at [`WEIGHTS_SEPARATOR`] into `adapter_config.json` and the weights
/// (written under both PEFT's and AdapterHub's file name), loaded onto `gpt2_a`.
fn run_adapter_dir(b: &[u8]) -> Result<(), String> {
    let (config, weights) = split(b);
    let dir = scratch_dir()?;
    std::fs::write(dir.join("adapter_config.json"), config).map_err(text)?;
    std::fs::write(dir.join("adapter_model.safetensors"), weights).map_err(text)?;
    std::fs::write(dir.join("adapter.safetensors"), weights).map_err(text)?;
    let model = GPT2_A.with(|m| -> Result<Gpt2<Cpu>, String> {
        let mut m = m.borrow_mut();
        if m.is_none() {
            let dev = Default::default();
            *m = Some(
                Gpt2::load(&fixtures_dir().join("gpt2_a"), &dev)
                    .map_err(text)?
                    .0,
            );
        }
        Ok(m.as_ref().map(Clone::clone).expect("loaded above"))
    })?;
    lora_peft::load_adapters(model, &[dir], false, &Default::default()).map_err(text)?;
    Ok(())
}

fn split(b: &[u8]) -> (&[u8], &[u8]) {
    match b
        .windows(WEIGHTS_SEPARATOR.len())
        .position(|w| w == WEIGHTS_SEPARATOR)
    {
        Some(i) => (&b[..i], &b[i + WEIGHTS_SEPARATOR.len()..]),
        None => (b, &[]),
    }
}

fn seeds_adapter_dir() -> Vec<Vec<u8>> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(fixtures_dir()) else {
        return out;
    };
    let mut dirs: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let is_gpt2_a = d
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("gpt2_a_"));
        let Ok(config) = std::fs::read(d.join("adapter_config.json")) else {
            continue;
        };
        let weights = std::fs::read(d.join("adapter_model.safetensors"))
            .or_else(|_| std::fs::read(d.join("adapter.safetensors")))
            .unwrap_or_default();
        if is_gpt2_a && weights.len() <= 64 << 10 {
            let mut s = config;
            s.extend_from_slice(WEIGHTS_SEPARATOR);
            s.extend_from_slice(&weights);
            out.push(s);
        }
    }
    out
}

/// Adapter directories (config and weights) through the loaders.
pub const ADAPTER_WEIGHTS: Target = Target {
    name: "adapter_dir",
    about: "adapter_config.json + adapter weights through lora_peft::load_adapters onto gpt2_a",
    run: run_adapter_dir,
    seeds: seeds_adapter_dir,
    bounded_execs: 12_000,
};
