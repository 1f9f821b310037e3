//! bitsandbytes checkpoints: whole safetensors files through the `quantize --dequantize`
//! conversion (`lora_quant::convert::run`, a path-only API: the input goes through a temporary
//! file), and the NF4 quant-state JSON alone, spliced into a valid state dict.

use super::{text, Target};
use crate::corpus::{files_under, fixtures_dir};
use crate::scratch::scratch_dir;
use lora_quant::bnb::{
    dequantize_entry, find_bnb_entries, quantize_to_state_dict, BnbData, BnbQuant, BnbTensor,
    NF4_QUANT_STATE_SUFFIX,
};
use lora_quant::convert::{parse_args, run, Command};
use std::collections::HashMap;
use std::sync::OnceLock;

/// `quantize --dequantize --input <input> --out <tmp>`.
fn run_file(b: &[u8]) -> Result<(), String> {
    let dir = scratch_dir()?;
    let (input, out) = (dir.join("in.safetensors"), dir.join("out.safetensors"));
    std::fs::write(&input, b).map_err(text)?;
    let args: Vec<String> = ["--dequantize", "--input", "", "--out", ""]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut args = args;
    args[2] = input.display().to_string();
    args[4] = out.display().to_string();
    match parse_args(&args).map_err(text)? {
        Command::Run(opts) => run(&opts).map(|_| ()).map_err(text),
        Command::Help => Ok(()),
    }
}

fn seeds_file() -> Vec<Vec<u8>> {
    files_under(&fixtures_dir().join("quant"), &|n| {
        n.ends_with(".safetensors")
    })
}

/// bitsandbytes safetensors files.
pub const BNB_FILE: Target = Target {
    name: "bnb_file",
    about: "quantize --dequantize (lora_quant::convert::run) on a bitsandbytes safetensors file",
    run: run_file,
    seeds: seeds_file,
    bounded_execs: 15_000,
};

const KEY: &str = "w";

/// A double-quantized NF4 state dict of a fixed [8, 64] tensor (block size 64).
fn state_dict() -> &'static HashMap<String, BnbTensor> {
    static SD: OnceLock<HashMap<String, BnbTensor>> = OnceLock::new();
    SD.get_or_init(|| {
        let values: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let q = quantize_to_state_dict(
            KEY,
            &values,
            &[8, 64],
            BnbQuant::Nf4 {
                blocksize: 64,
                double_quant: true,
            },
        )
        .expect("a valid tensor quantizes");
        q.entries.into_iter().collect()
    })
}

/// The input as the quant-state JSON of [`state_dict`], then `find_bnb_entries` and
/// `dequantize_entry`.
fn run_quant_state(b: &[u8]) -> Result<(), String> {
    let mut sd = state_dict().clone();
    sd.insert(
        format!("{KEY}{NF4_QUANT_STATE_SUFFIX}"),
        BnbTensor {
            shape: vec![b.len()],
            data: BnbData::U8(b.to_vec()),
        },
    );
    let mut keys: Vec<String> = sd.keys().cloned().collect();
    keys.sort();
    for e in find_bnb_entries(&keys).map_err(text)? {
        dequantize_entry(&e, |k| sd.get(k).cloned()).map_err(text)?;
    }
    Ok(())
}

fn seeds_quant_state() -> Vec<Vec<u8>> {
    let key = format!("{KEY}{NF4_QUANT_STATE_SUFFIX}");
    let mut out: Vec<Vec<u8>> = match state_dict().get(&key).map(|t| &t.data) {
        Some(BnbData::U8(v)) => vec![v.clone()],
        _ => vec![],
    };
    // The quant states bitsandbytes itself wrote into the fixtures.
    for bytes in seeds_file() {
        if let Ok(st) = safetensors::SafeTensors::deserialize(&bytes) {
            for (name, view) in st.tensors() {
                if name.ends_with(NF4_QUANT_STATE_SUFFIX) && !out.iter().any(|o| o == view.data()) {
                    out.push(view.data().to_vec());
                }
            }
        }
    }
    out
}

/// The NF4 quant-state JSON.
pub const BNB_QUANT_STATE: Target = Target {
    name: "bnb_quant_state",
    about: "the NF4 quant-state JSON in a state dict: find_bnb_entries, dequantize_entry",
    run: run_quant_state,
    seeds: seeds_quant_state,
    bounded_execs: 100_000,
};
