//! `lora_quant::convert` (the `quantize` example's logic): safetensors files to bitsandbytes'
//! layout and back, against the transformers checkpoints of `tests/fixtures/quant` (see
//! bnb_interop.rs), with its command line and errors.

mod common;

use common::{f32s, load, quant_dir, root, scratch};
use lora_quant::bnb::BnbQuant;
use lora_quant::convert::{parse_args, run, Command, Mode, Options};
use lora_quant::NF4_CODE;
use std::collections::BTreeMap;
use std::path::Path;

fn args(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn opts(s: &[&str]) -> Options {
    match parse_args(args(s)).unwrap() {
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
    let msg = |a: &[&str]| match parse_args(args(a)) {
        Err(e) => e.0,
        Ok(Command::Run(opts)) => run(&opts).unwrap_err().0,
        Ok(Command::Help) => panic!("help"),
    };
    assert!(matches!(parse_args(args(&["--help"])), Ok(Command::Help)));
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

#[cfg(unix)]
#[test]
fn non_utf8_arguments() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let bad = || OsString::from_vec(vec![b'x', 0xff]);
    // A path need not be UTF-8.
    let argv = [
        OsString::from("--input"),
        bad(),
        "--quant".into(),
        "nf4".into(),
        "--out".into(),
        bad(),
    ];
    match parse_args(argv).unwrap() {
        Command::Run(o) => assert_eq!(o.input.as_os_str(), bad()),
        Command::Help => panic!("help"),
    }
    // A text value must be: the message names the flag and the value.
    for (flag, expected) in [
        ("--quant", "nf4, nf4-dq or int8"),
        ("--blocksize", "a power of two in 32..4096"),
        ("--tensors", "comma-separated tensor names"),
    ] {
        let argv = [
            OsString::from("--input=a"),
            "--out=b".into(),
            flag.into(),
            bad(),
        ];
        let e = parse_args(argv).unwrap_err().0;
        assert_eq!(
            e,
            format!("{flag} \"x\\xFF\": not valid UTF-8; expected {expected}")
        );
    }
}
