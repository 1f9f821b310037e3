//! Interoperability with transformers + bitsandbytes checkpoints.
//!
//! Fixtures: `tests/fixtures/quant/bnb_interop.py make` (transformers 5.24, bitsandbytes 0.50.2,
//! CPU) quantized `tests/fixtures/llama_a` with `BitsAndBytesConfig` and saved it with
//! `save_pretrained`: `llama_a_nf4/` (NF4 + double quant, whole directory),
//! `llama_a_nf4_nodq.safetensors`, `llama_a_int8.safetensors` (the quantized Linear entries), and
//! `llama_a_bnb_deq.safetensors` (bitsandbytes' own dequantization of two layers).

mod common;

use common::{assert_bits_eq, f32s, load, quant_dir, root, to_bnb, to_raw, Raw};
use lora_quant::bnb::{
    dequantize_entry, find_bnb_entries, from_state_dict, int8_from_state_dict, python_float_repr,
    quantize_int8_bnb, quantize_to_state_dict, round_to_f16, BnbData, BnbEntryKind, BnbQuant,
    BnbTensor,
};
use lora_quant::QuantError;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
