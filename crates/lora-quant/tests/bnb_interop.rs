//! Interoperability with transformers + bitsandbytes checkpoints, and the `quantize` example.
//!
//! Fixtures: `tests/fixtures/quant/bnb_interop.py make` (transformers 5.24, bitsandbytes 0.50.2,
//! CPU) quantized `tests/fixtures/llama_a` with `BitsAndBytesConfig` and saved it with
//! `save_pretrained`: `llama_a_nf4/` (NF4 + double quant, whole directory),
//! `llama_a_nf4_nodq.safetensors`, `llama_a_int8.safetensors` (the quantized Linear entries), and
//! `llama_a_bnb_deq.safetensors` (bitsandbytes' own dequantization of two layers).
//!
//! The `quantize` example (examples/quantize.rs) is compiled into this test crate, so that its
//! `parse_args` / `run` are tested here.

#[allow(dead_code)]
#[path = "../../../examples/quantize.rs"]
mod quantize;

use lora_quant::bnb::{
    dequantize_entry, find_bnb_entries, from_state_dict, int8_from_state_dict, python_float_repr,
    quantize_int8_bnb, quantize_to_state_dict, round_to_f16, BnbData, BnbEntryKind, BnbQuant,
    BnbTensor,
};
use lora_quant::{QuantError, NF4_CODE};
use quantize::{parse_args, run, Command, Mode, Options};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn quant_dir() -> PathBuf {
    root().join("tests/fixtures/quant")
}

/// A safetensors tensor: dtype, shape, raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn load(path: &Path) -> BTreeMap<String, Raw> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.iter()
        .map(|(k, t)| {
            (
                k.to_string(),
                Raw {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    bytes: t.data().to_vec(),
                },
            )
        })
        .collect()
}

fn f32s(r: &Raw) -> Vec<f32> {
    assert_eq!(r.dtype, Dtype::F32);
    r.bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn to_bnb(r: &Raw) -> BnbTensor {
    let data = match r.dtype {
        Dtype::U8 => BnbData::U8(r.bytes.clone()),
        Dtype::I8 => BnbData::I8(r.bytes.iter().map(|&b| b as i8).collect()),
        Dtype::F32 => BnbData::F32(f32s(r)),
        d => panic!("unexpected dtype {d:?}"),
    };
    BnbTensor {
        shape: r.shape.clone(),
        data,
    }
}

fn to_raw(t: &BnbTensor) -> Raw {
    let (dtype, bytes) = match &t.data {
        BnbData::U8(v) => (Dtype::U8, v.clone()),
        BnbData::I8(v) => (Dtype::I8, v.iter().map(|&x| x as u8).collect()),
        BnbData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    Raw {
        dtype,
        shape: t.shape.clone(),
        bytes,
    }
}

fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let diffs = got
        .iter()
        .zip(want)
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count();
    assert_eq!(diffs, 0, "{what}: {diffs} values differ");
}

/// A fresh scratch directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lora-quant-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const LINEARS: [&str; 7] = [
    "mlp.down_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "self_attn.k_proj",
    "self_attn.o_proj",
    "self_attn.q_proj",
    "self_attn.v_proj",
];

fn linear_weights() -> Vec<String> {
    (0..2)
        .flat_map(|l| LINEARS.map(|n| format!("model.layers.{l}.{n}.weight")))
        .collect()
}

/// (fixture file, key prefix in llama_a_bnb_deq, layout, entry kind)
fn kinds() -> [(PathBuf, &'static str, BnbQuant, BnbEntryKind); 3] {
    let q = quant_dir();
    [
        (
            q.join("llama_a_nf4/model.safetensors"),
            "nf4",
            BnbQuant::Nf4 {
                blocksize: 64,
                double_quant: true,
            },
            BnbEntryKind::Nf4,
        ),
        (
            q.join("llama_a_nf4_nodq.safetensors"),
            "nf4_nodq",
            BnbQuant::Nf4 {
                blocksize: 64,
                double_quant: false,
            },
            BnbEntryKind::Nf4,
        ),
        (
            q.join("llama_a_int8.safetensors"),
            "int8",
            BnbQuant::Int8,
            BnbEntryKind::Int8,
        ),
    ]
}

#[test]
fn transformers_checkpoints_dequantize_to_bitsandbytes_values() {
    let deq = load(&quant_dir().join("llama_a_bnb_deq.safetensors"));
    for (path, tag, _, kind) in kinds() {
        let st = load(&path);
        let keys: Vec<&String> = st.keys().collect();
        let entries = find_bnb_entries(&keys).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, linear_weights(), "{tag}: quantized weights found");
        assert!(entries.iter().all(|e| e.kind == kind));
        // every key is either part of an entry or a plain tensor transformers kept in f32
        let claimed: usize = entries.iter().map(|e| e.keys.len()).sum();
        let plain: Vec<&String> = st
            .keys()
            .filter(|k| !entries.iter().any(|e| e.keys.contains(k)))
            .collect();
        assert_eq!(claimed + plain.len(), st.len());
        if tag == "nf4" {
            assert_eq!(plain.len(), 6, "{plain:?}"); // embed_tokens + 5 norms
            assert!(plain.iter().all(|k| st[*k].dtype == Dtype::F32));
        } else {
            assert!(plain.is_empty(), "{tag}: {plain:?}");
        }
        let mut checked = 0;
        for e in &entries {
            let (shape, values) = dequantize_entry(e, |k| st.get(k).map(to_bnb)).unwrap();
            let want_key = format!("{tag}.{}", e.name);
            if let Some(w) = deq.get(&want_key) {
                assert_eq!(shape, w.shape, "{want_key}");
                assert_bits_eq(&values, &f32s(w), &want_key);
                checked += 1;
            }
        }
        assert_eq!(checked, 2, "{tag}: bnb-dequantized layers compared");
    }
}

#[test]
fn our_state_dicts_equal_transformers_bytes() {
    let orig = load(&root().join("tests/fixtures/llama_a/model.safetensors"));
    for (path, tag, quant, _) in kinds() {
        let st = load(&path);
        let mut n = 0;
        for name in linear_weights() {
            let w = &orig[&name];
            let q = quantize_to_state_dict(&name, &f32s(w), &w.shape, quant).unwrap();
            let theirs: Vec<&String> = st
                .keys()
                .filter(|k| *k == &name || k.starts_with(&format!("{}.", name)))
                .chain(
                    // int8: `{m}.SCB`, `{m}.weight_format` sit beside `{m}.weight`
                    st.keys().filter(|k| {
                        quant == BnbQuant::Int8
                            && (k.as_str() == format!("{}.SCB", &name[..name.len() - 7])
                                || k.as_str()
                                    == format!("{}.weight_format", &name[..name.len() - 7]))
                    }),
                )
                .collect();
            let ours: Vec<&String> = q.entries.iter().map(|(k, _)| k).collect();
            let mut a = ours.clone();
            a.sort();
            let mut b = theirs.clone();
            b.sort();
            assert_eq!(a, b, "{tag} {name}: keys");
            for (k, t) in &q.entries {
                assert_eq!(
                    &to_raw(t),
                    &st[k],
                    "{tag} {k}: dtype, shape or bytes differ"
                );
                n += 1;
            }
        }
        assert_eq!(n, st.len() - if tag == "nf4" { 6 } else { 0 }, "{tag}");
    }
}

#[test]
fn int8_follows_torch_reciprocal_times_127() {
    // bitsandbytes computes `127.0 / SCB` as `reciprocal(SCB) * 127` (torch's __rtruediv__); a
    // correctly rounded division gives other codes for a few values of the llama_a weights.
    let orig = load(&root().join("tests/fixtures/llama_a/model.safetensors"));
    let st = load(&quant_dir().join("llama_a_int8.safetensors"));
    let (mut by_division_differs, mut total) = (0, 0);
    for name in linear_weights() {
        let w = &orig[&name];
        let x: Vec<f32> = f32s(w).into_iter().map(round_to_f16).collect();
        let want: Vec<i8> = st[&name].bytes.iter().map(|&b| b as i8).collect();
        let ours = quantize_int8_bnb(&f32s(w), &w.shape).unwrap();
        assert_eq!(ours.q, want, "{name}");
        let cols = w.shape[1];
        for (r, row) in x.chunks(cols).enumerate() {
            let am = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (c, v) in row.iter().enumerate() {
                let q = (v * (127.0 / am)).round_ties_even() as i8;
                by_division_differs += (q != want[r * cols + c]) as usize;
                total += 1;
            }
        }
    }
    assert!(
        by_division_differs > 0,
        "the fixture must tell the two rules apart"
    );
    eprintln!("plain division would give {by_division_differs} of {total} codes wrong");
}

#[test]
fn round_to_f16_and_python_float_repr_closed_forms() {
    let ulp = 2f32.powi(-10); // f16 spacing in [1, 2)
    assert_eq!(round_to_f16(1.0 + ulp / 2.0), 1.0); // tie to even (down)
    assert_eq!(round_to_f16(1.0 + 1.5 * ulp), 1.0 + 2.0 * ulp); // tie to even (up)
    assert_eq!(round_to_f16(1.0 + 0.75 * ulp), 1.0 + ulp);
    assert_eq!(round_to_f16(-0.1), -0.099_975_586); // f16(0.1) = 0.0999755859375
    assert_eq!(round_to_f16(65504.0), 65504.0);
    assert_eq!(round_to_f16(65519.0), 65504.0);
    assert_eq!(round_to_f16(65520.0), f32::INFINITY);
    assert_eq!(round_to_f16(3.0 * 2f32.powi(-25)), 2.0 * 2f32.powi(-24)); // subnormal tie, even
    assert_eq!(round_to_f16(2f32.powi(-26)), 0.0);
    assert_eq!(round_to_f16(2f32.powi(-14) * 1.5), 2f32.powi(-14) * 1.5); // exact normal
    assert!(quantize_int8_bnb(&[1.0, 7e4], &[1, 2]).is_err());

    for (x, want) in [
        (0.259_377_241_134_643_55, "0.25937724113464355"),
        (5e-5, "5e-05"),
        (1e-4, "0.0001"),
        (1.5e-7, "1.5e-07"),
        (123.0, "123.0"),
        (1e16, "1e+16"),
        (1.234e16, "1.234e+16"),
        (9999999999999998.0, "9999999999999998.0"),
        (-0.5, "-0.5"),
        (0.0, "0.0"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(python_float_repr(x), want, "{x:e}");
    }
}

fn bnb_get(st: &BTreeMap<String, Raw>) -> impl FnMut(&str) -> Option<BnbTensor> + '_ {
    move |k: &str| st.get(k).map(to_bnb)
}

#[test]
fn corrupt_or_inconsistent_states_give_errors_naming_the_key() {
    let st = load(&quant_dir().join("llama_a_nf4/model.safetensors"));
    let p = "model.layers.0.self_attn.q_proj.weight";
    let qs = format!("{p}.quant_state.bitsandbytes__nf4");
    let with = |key: &str, t: BnbTensor| {
        let mut m = st.clone();
        m.insert(key.to_string(), to_raw(&t));
        m
    };
    let json = |s: &str| BnbTensor {
        shape: vec![s.len()],
        data: BnbData::U8(s.as_bytes().to_vec()),
    };
    // truncated JSON
    let good = String::from_utf8(st[&qs].bytes.clone()).unwrap();
    let bad = with(&qs, json(&good[..good.len() - 5]));
    let e = from_state_dict(p, bnb_get(&bad)).unwrap_err();
    assert!(
        matches!(&e, QuantError::Format { key, message } if key == &qs && message.contains("bad JSON")),
        "{e}"
    );
    // a shape that does not fit the packed codes
    let bad = with(&qs, json(&good.replace("[64, 64]", "[64, 65]")));
    let e = from_state_dict(p, bnb_get(&bad)).unwrap_err();
    assert!(
        matches!(&e, QuantError::Format { key, message } if key == p && message.contains("packed")),
        "{e}"
    );
    // a blocksize bitsandbytes does not use
    let bad = with(
        &qs,
        json(&good.replace("\"blocksize\": 64", "\"blocksize\": 48")),
    );
    let e = from_state_dict(p, bnb_get(&bad)).unwrap_err();
    assert!(e.to_string().contains("48"), "{e}");
    // absmax of the wrong length
    let am = format!("{p}.absmax");
    let bad = with(
        &am,
        BnbTensor {
            shape: vec![63],
            data: BnbData::U8(vec![0; 63]),
        },
    );
    let e = from_state_dict(p, bnb_get(&bad)).unwrap_err();
    assert!(e.to_string().contains("absmax"), "{e}");
    // a mistyped quant_map
    let bad = with(
        &format!("{p}.quant_map"),
        BnbTensor {
            shape: vec![16],
            data: BnbData::I8(vec![0; 16]),
        },
    );
    let e = from_state_dict(p, bnb_get(&bad)).unwrap_err();
    assert!(e.to_string().contains("found I8"), "{e}");
    // fp4 and an SCB without its weight are refused when scanning
    let e = find_bnb_entries(&["a.weight", "a.weight.quant_state.bitsandbytes__fp4"]).unwrap_err();
    assert!(e.to_string().contains("fp4"), "{e}");
    let e = find_bnb_entries(&["x.SCB"]).unwrap_err();
    assert!(e.to_string().contains("x.weight"), "{e}");

    // int8: SCB of the wrong length, a tiled weight_format, an F32 weight
    let i8s = load(&quant_dir().join("llama_a_int8.safetensors"));
    let w = "model.layers.0.self_attn.k_proj.weight";
    let scb = "model.layers.0.self_attn.k_proj.SCB";
    let fmt = "model.layers.0.self_attn.k_proj.weight_format";
    assert!(int8_from_state_dict(w, bnb_get(&i8s)).is_ok());
    let mut bad = i8s.clone();
    bad.insert(
        scb.into(),
        to_raw(&BnbTensor {
            shape: vec![31],
            data: BnbData::F32(vec![1.0; 31]),
        }),
    );
    let e = int8_from_state_dict(w, bnb_get(&bad)).unwrap_err();
    assert!(
        matches!(&e, QuantError::Format { key, .. } if key == scb),
        "{e}"
    );
    let mut bad = i8s.clone();
    bad.insert(
        fmt.into(),
        to_raw(&BnbTensor {
            shape: vec![],
            data: BnbData::U8(vec![1]),
        }),
    );
    let e = int8_from_state_dict(w, bnb_get(&bad)).unwrap_err();
    assert!(
        matches!(&e, QuantError::Format { key, .. } if key == fmt),
        "{e}"
    );
    let mut bad = i8s.clone();
    bad.insert(
        w.into(),
        to_raw(&BnbTensor {
            shape: vec![32, 64],
            data: BnbData::F32(vec![0.0; 2048]),
        }),
    );
    let e = int8_from_state_dict(w, bnb_get(&bad)).unwrap_err();
    assert!(e.to_string().contains("expected an I8 tensor"), "{e}");
}

// ---- the quantize example ----------------------------------------------------------------------

fn args(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn opts(s: &[&str]) -> Options {
    match parse_args(&args(s)).unwrap() {
        Command::Run(o) => o,
        Command::Help => panic!("help"),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The largest half-gap between neighbouring NF4 codes: the worst rounding error relative to the
/// block absmax.
fn nf4_max_half_gap() -> f32 {
    NF4_CODE
        .windows(2)
        .map(|w| (w[1] - w[0]) / 2.0)
        .fold(0.0, f32::max)
}

#[test]
fn quantize_example_round_trips_within_the_quantization_error() {
    let dir = scratch("roundtrip");
    for (model, quant, bs) in [
        ("llama_a", "nf4-dq", "64"),
        ("llama_a", "nf4", "64"),
        ("llama_a", "int8", ""),
        ("gpt2_a", "nf4", "128"), // wte [101, 48]: 4848 values, a 112-value tail block
    ] {
        let src = root().join(format!("tests/fixtures/{model}/model.safetensors"));
        let q = dir.join(format!("{model}.{quant}.safetensors"));
        let d = dir.join(format!("{model}.{quant}.deq.safetensors"));
        let mut a = vec![
            "--input",
            path_str(&src),
            "--quant",
            quant,
            "--out",
            path_str(&q),
        ];
        if !bs.is_empty() {
            a.extend(["--blocksize", bs]);
        }
        let rq = run(&opts(&a)).unwrap();
        let rd = run(&opts(&[
            "--dequantize",
            "--input",
            path_str(&q),
            "--reference",
            path_str(&src),
            "--out",
            path_str(&d),
        ]))
        .unwrap();
        let orig = load(&src);
        let back = load(&d);
        assert_eq!(
            orig.keys().collect::<Vec<_>>(),
            back.keys().collect::<Vec<_>>(),
            "{model} {quant}: names"
        );
        let (mut nq, mut worst) = (0, 0f64);
        for (k, o) in &orig {
            let b = &back[k];
            assert_eq!(b.shape, o.shape, "{k}");
            if o.shape.len() < 2 {
                assert_eq!(b, o, "{k}: 1-D tensors are copied unchanged");
                continue;
            }
            nq += 1;
            let (x, y) = (f32s(o), f32s(b));
            let tensor_max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let rep = rq.tensors.iter().find(|t| &t.name == k).unwrap();
            assert_eq!(rep.layout, quant);
            let (max_abs, rms) = rep.error.unwrap();
            // the dequantize report (against --reference) agrees with the quantize report
            assert_eq!(
                rd.tensors.iter().find(|t| &t.name == k).unwrap().error,
                rep.error
            );
            let mut m = 0f64;
            let mut sq = 0f64;
            for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
                let err = (a - b).abs();
                m = m.max(err as f64);
                sq += (err as f64).powi(2);
                // closed-form bound per value
                let bound = if quant == "int8" {
                    // |x - f16(x)| ≤ |x|·2^-11, then half a code step SCB/127 (SCB ≤ am(1 + 2^-11))
                    let cols = o.shape[o.shape.len() - 1];
                    let row = &x[i / cols * cols..(i / cols + 1) * cols];
                    let am = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    am / 254.0 + a.abs() * 2f32.powi(-11) + am * 1e-5
                } else {
                    // half the widest NF4 code gap times the block absmax; with double quant the
                    // absmax itself is off by at most half a step of the 8-bit dynamic map
                    // (≤ 0.0071 of the largest centred absmax, < 1% of the tensor's max |x|)
                    let b: usize = bs.parse().unwrap();
                    let blk = &x[i / b * b..((i / b + 1) * b).min(x.len())];
                    let am = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let dq = if quant == "nf4-dq" {
                        0.01 * tensor_max
                    } else {
                        0.0
                    };
                    am * nf4_max_half_gap() * (1.0 + 1e-6) + dq
                };
                assert!(
                    err <= bound,
                    "{model} {quant} {k}[{i}]: |{a} - {b}| > {bound}"
                );
            }
            assert_eq!(m, max_abs, "{k}: reported max abs error");
            assert!((rms - (sq / x.len() as f64).sqrt()).abs() <= 1e-12 * rms.max(1.0));
            worst = worst.max(max_abs);
        }
        let (before, after) = rq.totals();
        let orig_bytes: usize = orig.values().map(|r| r.bytes.len()).sum();
        assert_eq!(before, orig_bytes);
        assert!(
            after * 2 < before,
            "{model} {quant}: {after} of {before} bytes"
        );
        eprintln!(
            "{model} {quant}: {nq} tensors, {before} -> {after} bytes ({:.2}x), worst max abs err {worst:.3e}",
            before as f64 / after as f64
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quantize_example_selects_tensors_and_writes_bnb_bytes() {
    let dir = scratch("select");
    let src = root().join("tests/fixtures/llama_a/model.safetensors");
    let out = dir.join("o.safetensors");
    let r = run(&opts(&[
        "--input",
        path_str(&src),
        "--quant",
        "nf4-dq",
        "--tensors",
        "*_proj.weight,model.norm.weight",
        "--out",
        path_str(&out),
    ]))
    .unwrap();
    let layouts: BTreeMap<&str, &str> = r
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.layout.as_str()))
        .collect();
    assert_eq!(
        layouts["model.norm.weight"], "nf4-dq",
        "a named 1-D tensor is quantized"
    );
    assert_eq!(layouts["model.embed_tokens.weight"], "copied");
    assert_eq!(layouts["model.layers.0.input_layernorm.weight"], "copied");
    // the transformers checkpoint's tensors, byte for byte (but the norm it keeps in f32)
    let ours = load(&out);
    let theirs = load(&quant_dir().join("llama_a_nf4/model.safetensors"));
    for (k, t) in theirs.iter().filter(|(k, _)| *k != "model.norm.weight") {
        assert_eq!(&ours[k], t, "{k}");
    }
    assert!(ours.contains_key("model.norm.weight.quant_state.bitsandbytes__nf4"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quantize_example_errors_are_clear() {
    let dir = scratch("errors");
    let src = root().join("tests/fixtures/llama_a/model.safetensors");
    let out = dir.join("o.safetensors");
    let o = path_str(&out);
    let msg = |a: &[&str]| match parse_args(&args(a)) {
        Err(e) => e.0,
        Ok(Command::Run(opts)) => run(&opts).unwrap_err().0,
        Ok(Command::Help) => panic!("help"),
    };
    assert!(matches!(parse_args(&args(&["--help"])), Ok(Command::Help)));
    let s = path_str(&src);
    assert!(msg(&[
        "--input",
        s,
        "--quant",
        "nf4",
        "--blocksize",
        "48",
        "--out",
        o
    ])
    .contains("48 is not a power of two"));
    assert!(msg(&[
        "--input",
        s,
        "--quant",
        "nf4",
        "--blocksize",
        "8192",
        "--out",
        o
    ])
    .contains("[32, 64, 128, 256, 512, 1024, 2048, 4096]"));
    assert!(msg(&[
        "--input",
        s,
        "--quant",
        "int8",
        "--blocksize",
        "64",
        "--out",
        o
    ])
    .contains("nf4 / nf4-dq only"));
    assert!(msg(&["--input", s, "--quant", "q3", "--out", o]).contains("`q3`"));
    assert!(msg(&["--input", s, "--out", o]).contains("--quant"));
    assert!(
        msg(&["--input", s, "--quant", "nf4", "--out", o, "--frobnicate"]).contains("--frobnicate")
    );
    let missing = dir.join("nope.safetensors");
    let m = msg(&["--input", path_str(&missing), "--quant", "nf4", "--out", o]);
    assert!(
        m.contains("nope.safetensors") && m.contains("cannot read"),
        "{m}"
    );
    // truncated file
    let trunc = dir.join("trunc.safetensors");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() - 1000]).unwrap();
    let m = msg(&["--input", path_str(&trunc), "--quant", "nf4", "--out", o]);
    assert!(
        m.contains("trunc.safetensors") && m.contains("not a valid safetensors"),
        "{m}"
    );
    // --tensors naming nothing
    let m = msg(&[
        "--input",
        s,
        "--quant",
        "nf4",
        "--tensors",
        "model.q_proj.weight",
        "--out",
        o,
    ]);
    assert!(
        m.contains("`model.q_proj.weight`") && m.contains("model.safetensors"),
        "{m}"
    );
    // corrupt quant state JSON in a file given to --dequantize
    let good = load(&quant_dir().join("llama_a_nf4/model.safetensors"));
    let qs = "model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__nf4";
    let mut corrupt = good.clone();
    corrupt.get_mut(qs).unwrap().bytes[0] = b'[';
    let corrupt_path = dir.join("corrupt.safetensors");
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = corrupt
        .iter()
        .map(|(k, r)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(r.dtype, r.shape.clone(), &r.bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(&corrupt_path, safetensors::serialize(views, None).unwrap()).unwrap();
    let m = msg(&[
        "--dequantize",
        "--input",
        path_str(&corrupt_path),
        "--out",
        o,
    ]);
    assert!(
        m.contains(qs) && m.contains("bad JSON") && m.contains("corrupt.safetensors"),
        "{m}"
    );
    // an unquantized file given to --dequantize
    let m = msg(&["--dequantize", "--input", s, "--out", o]);
    assert!(m.contains("no bitsandbytes-quantized weight"), "{m}");
    // a non-floating tensor named in --tensors
    let m = msg(&[
        "--input",
        path_str(&quant_dir().join("llama_a_int8.safetensors")),
        "--quant",
        "int8",
        "--tensors",
        "model.layers.0.mlp.up_proj.weight",
        "--out",
        o,
    ]);
    assert!(m.contains("I8") && m.contains("up_proj"), "{m}");
    assert!(!out.exists(), "nothing written on error");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn parse_args_defaults() {
    let o = opts(&["--input=a.safetensors", "--quant", "nf4-dq", "--out", "b"]);
    assert_eq!(
        o.mode,
        Mode::Quantize(BnbQuant::Nf4 {
            blocksize: 64,
            double_quant: true
        })
    );
    assert_eq!(o.tensors, None);
    let o = opts(&[
        "--input",
        "a",
        "--quant",
        "int8",
        "--tensors",
        "x, y.*",
        "--out",
        "b",
    ]);
    assert_eq!(o.mode, Mode::Quantize(BnbQuant::Int8));
    assert_eq!(o.tensors, Some(vec!["x".to_string(), "y.*".to_string()]));
}
