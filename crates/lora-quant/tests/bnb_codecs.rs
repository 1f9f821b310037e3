//! The host codecs against bitsandbytes 0.50.2 (CPU) fixtures, plus closed-form checks.

mod common;

use common::{assert_bits_eq, fixture};
use lora_quant::bnb::{from_state_dict, to_state_dict, BnbData, BnbTensor};
use lora_quant::*;

const FIXTURE_BLOCKSIZES: [usize; 5] = [32, 64, 128, 256, 4096];

#[test]
fn nf4_packed_absmax_and_dequant_equal_bnb_for_every_blocksize() {
    let f = fixture("nf4.safetensors");
    let mut checked = 0;
    let mut tails = 0;
    for name in ["x1000", "x4133", "w33x70"] {
        let x = f.f32(name);
        let shape = f.shape(name);
        for bs in FIXTURE_BLOCKSIZES {
            let p = format!("{name}.b{bs}");
            let t = quantize_nf4_shaped(&x, &shape, bs, false).unwrap();
            assert_eq!(t.packed, f.u8(&format!("{p}.packed")), "{p}: packed bytes");
            let Absmax::F32(a) = &t.absmax else { panic!() };
            assert_bits_eq(a, &f.f32(&format!("{p}.absmax")), &format!("{p}: absmax"));
            if f.has(&format!("{p}.deq")) {
                let d = dequantize_nf4(&t).unwrap();
                assert_bits_eq(
                    &d,
                    &f.f32(&format!("{p}.deq")),
                    &format!("{p}: dequantized"),
                );
            }
            if x.len() / bs * bs < x.len() {
                tails += 1;
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
    assert_eq!(tails, 15, "every case ends in a short tail block");
}

#[test]
fn nf4_outlier_block_and_odd_count_padding() {
    let f = fixture("nf4.safetensors");
    let x = f.f32("x1000");
    let t = quantize_nf4(&x, 64).unwrap();
    let Absmax::F32(a) = &t.absmax else { panic!() };
    assert_eq!(a[0], 50.0, "the outlier is its block's absmax");
    assert_eq!(t.codes()[5], 15, "the outlier gets the code of +1.0");
    // bitsandbytes pads an odd count with the scaled value 0.0, whose NF4 code is 7
    let x = f.f32("x4133");
    let t = quantize_nf4(&x, 64).unwrap();
    assert_eq!(t.packed.len(), 2067);
    assert_eq!(t.packed[2066] & 0x0F, 7);
    assert_eq!(t.packed[2066], f.u8("x4133.b64.packed")[2066]);
}

#[test]
fn nf4_ties_go_to_the_lower_code() {
    let f = fixture("nf4.safetensors");
    let x = f.f32("xties");
    for bs in [32, 64] {
        let t = quantize_nf4(&x, bs).unwrap();
        assert_eq!(t.packed, f.u8(&format!("xties.b{bs}.packed")), "bs {bs}");
        assert_bits_eq(
            &dequantize_nf4(&t).unwrap(),
            &f.f32(&format!("xties.b{bs}.deq")),
            "xties deq",
        );
        // layout: [1.0, mid_0..mid_14, up_0..up_14, 0.0, -1.0, down_0..down_14, 16 random]
        let c = t.codes();
        assert_eq!(c[0], 15);
        for i in 0..15 {
            assert_eq!(c[1 + i], i as u8, "midpoint {i} → lower code");
            assert_eq!(
                c[16 + i],
                i as u8 + 1,
                "one ulp above midpoint {i} → upper code"
            );
            assert_eq!(
                c[33 + i],
                i as u8,
                "one ulp below midpoint {i} → lower code"
            );
        }
        assert_eq!(c[31], 7);
        assert_eq!(c[32], 0);
    }
}

#[test]
fn nf4_zero_blocks_follow_bnb() {
    let f = fixture("nf4.safetensors");
    let x = f.f32("xzero");
    let t = quantize_nf4(&x, 64).unwrap();
    assert_eq!(t.packed, f.u8("xzero.b64.packed"));
    let Absmax::F32(a) = &t.absmax else { panic!() };
    assert_bits_eq(a, &f.f32("xzero.b64.absmax"), "xzero absmax");
    assert_eq!(a[0], 0.0, "zero full block stores 0");
    assert_eq!(
        a[2], 1e-38f64 as f32,
        "zero tail block stores the clamp 1e-38"
    );
    assert!(t.codes()[..64].iter().all(|&c| c == 7));
    assert_bits_eq(
        &dequantize_nf4(&t).unwrap(),
        &f.f32("xzero.b64.deq"),
        "xzero deq",
    );
}

#[test]
fn nf4_full_blocks_multiply_by_the_reciprocal_and_the_tail_divides() {
    let f = fixture("nf4.safetensors");
    let x = f.f32("xdiv");
    assert_eq!((x.len(), x[0], x[64]), (74, 3.0, 1.7));
    let t = quantize_nf4(&x, 64).unwrap();
    assert_eq!(t.packed, f.u8("xdiv.b64.packed"));
    assert_bits_eq(
        &dequantize_nf4(&t).unwrap(),
        &f.f32("xdiv.b64.deq"),
        "xdiv deq",
    );
    // the fixture discriminates: the other rounding would pick another code in both blocks
    let mids: Vec<f32> = NF4_CODE.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    let code = |v: f32| mids.partition_point(|&m| m < v);
    let c = t.codes();
    let div_in_full = x[..64]
        .iter()
        .zip(&c)
        .filter(|(&v, &q)| code(v / 3.0) != q as usize);
    let mul_in_tail = x[64..]
        .iter()
        .zip(&c[64..])
        .filter(|(&v, &q)| code(v * (1.0 / 1.7f32)) != q as usize);
    assert!(div_in_full.count() > 0 && mul_in_tail.count() > 0);
}

#[test]
fn nf4_reconstruction_error_is_within_half_a_code_gap() {
    let f = fixture("nf4.safetensors");
    let x = f.f32("w33x70");
    let max_half_gap = NF4_CODE
        .windows(2)
        .map(|w| (w[1] - w[0]) / 2.0)
        .fold(0f32, f32::max);
    for bs in FIXTURE_BLOCKSIZES {
        let t = quantize_nf4_shaped(&x, &[33, 70], bs, false).unwrap();
        let d = t.dequantize().unwrap();
        let a = t.absmax_f32().unwrap();
        for (i, (&v, &r)) in x.iter().zip(&d).enumerate() {
            assert!((v - r).abs() <= a[i / bs] * max_half_gap * 1.000_001, "{i}");
        }
        let s = error_stats(&x, &d, t.storage_bytes());
        println!("w33x70 nf4 bs {bs}: {s}");
        assert_eq!(s.f32_bytes, 9240);
        assert_eq!(s.quant_bytes, 1155 + 4 * 2310usize.div_ceil(bs));
    }
}

#[test]
fn bits_per_parameter_closed_forms() {
    // 64·256·16 values: every count divides evenly, so only the offset is extra.
    let n = 64 * 256 * 16;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let plain = quantize_nf4(&x, 64).unwrap();
    assert_eq!(plain.bits_per_parameter(), 4.5);
    let dq = plain.clone().compress_statistics().unwrap();
    let want = 4.0 + 8.0 / 64.0 + 32.0 / (64.0 * 256.0) + 32.0 / n as f64;
    assert!((dq.bits_per_parameter() - want).abs() < 1e-12);
    assert!((dq.bits_per_parameter() - 4.127).abs() < 1e-3);
    assert_eq!(
        dq,
        quantize_nf4_shaped(&x, &[n], 64, true).unwrap(),
        "compress_statistics after the fact == with it"
    );
    let b128 = quantize_nf4(&x, 128)
        .unwrap()
        .compress_statistics()
        .unwrap();
    println!(
        "bits/param: bs64 {} / dq {:.4}; bs128 dq {:.4}",
        plain.bits_per_parameter(),
        dq.bits_per_parameter(),
        b128.bits_per_parameter()
    );
}

#[test]
fn nf4_bad_input_errors() {
    for bs in [0usize, 16, 48, 100, 8192] {
        match quantize_nf4(&[1.0, 2.0], bs) {
            Err(QuantError::BadBlocksize { blocksize, .. }) => assert_eq!(blocksize, bs),
            other => panic!("blocksize {bs}: {other:?}"),
        }
    }
    let msg = quantize_nf4(&[1.0], 48).unwrap_err().to_string();
    assert!(msg.contains("48") && msg.contains("4096"), "{msg}");
    assert!(matches!(quantize_nf4(&[], 64), Err(QuantError::Empty(_))));
    match quantize_nf4(&[1.0, f32::NAN, 2.0], 64) {
        Err(QuantError::NonFinite {
            index: 1, value, ..
        }) => assert!(value.is_nan()),
        other => panic!("{other:?}"),
    }
    match quantize_nf4(&[1.0, f32::INFINITY], 64) {
        Err(QuantError::NonFinite { index: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        quantize_nf4_shaped(&[1.0; 6], &[4, 2], 64, false),
        Err(QuantError::Shape { .. })
    ));
    let mut t = quantize_nf4(&[1.0; 10], 64).unwrap();
    t.packed.pop();
    assert!(matches!(t.dequantize(), Err(QuantError::Shape { .. })));
}

#[test]
fn dynamic_map_equals_bnb() {
    let f = fixture("dq.safetensors");
    let map = create_dynamic_map();
    assert_bits_eq(&map, &f.f32("dynamic_map"), "create_dynamic_map()");
    assert_bits_eq(&map, &f.f32("bw8.code"), "quantize_blockwise code");
    assert_eq!(map[0], -0.992_968_75);
    assert_eq!(map[255], 1.0);
    assert_eq!(map.iter().filter(|&&v| v == 0.0).count(), 1);
}

#[test]
fn blockwise_8bit_equals_bnb_cpu_lookup_table() {
    let f = fixture("dq.safetensors");
    let x = f.f32("bw8.input");
    let map = create_dynamic_map();
    let (q, absmax) = quantize_blockwise_8bit(&x, &map, 256).unwrap();
    assert_eq!(x.len(), 549, "two blocks of 256 + a tail of 37");
    assert_eq!(q, f.u8("bw8.q"));
    assert_bits_eq(&absmax, &f.f32("bw8.absmax"), "bw8 absmax");
    let d = dequantize_blockwise_8bit(&q, &absmax, &map, 256).unwrap();
    assert_bits_eq(&d, &f.f32("bw8.deq"), "bw8 dequantized");
    // Block 0 (absmax 1.0) holds values where the LUT and an exact nearest-code search disagree:
    // an exact search would fail this fixture.
    let mids: Vec<f32> = map.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let exact_differs = x[..256]
        .iter()
        .zip(&q)
        .filter(|(&v, &c)| mids.partition_point(|&m| m < v) != c as usize)
        .count();
    assert!(exact_differs >= 100, "{exact_differs}");
}

#[test]
fn double_quant_equals_bnb() {
    let nf = fixture("nf4.safetensors");
    let f = fixture("dq.safetensors");
    let map = create_dynamic_map();
    for (name, bs) in [
        ("x1000", 64),
        ("x1000", 4096),
        ("w33x70", 64),
        ("x4133", 32),
        ("x8292", 32),
    ] {
        let (x, shape) = if name == "x8292" {
            (f.f32(name), f.shape(name))
        } else {
            (nf.f32(name), nf.shape(name))
        };
        let p = format!("{name}.b{bs}.dq");
        let t = quantize_nf4_shaped(&x, &shape, bs, true).unwrap();
        assert_eq!(t.packed, f.u8(&format!("{p}.packed")), "{p}: packed");
        let Absmax::Double(d) = &t.absmax else {
            panic!()
        };
        assert_eq!(d.codes, f.u8(&format!("{p}.qabsmax")), "{p}: absmax codes");
        assert_eq!(
            d.offset.to_bits(),
            f.f32(&format!("{p}.offset"))[0].to_bits(),
            "{p}: offset"
        );
        assert_bits_eq(
            &d.absmax2,
            &f.f32(&format!("{p}.absmax2")),
            &format!("{p}: state2.absmax"),
        );
        assert_bits_eq(
            &d.code2,
            &f.f32(&format!("{p}.code2")),
            &format!("{p}: state2.code"),
        );
        assert_bits_eq(&d.code2, &map, "code2 is the dynamic map");
        assert_eq!(d.blocksize2, 256);
        let plain = f.f32(&format!("{p}.absmax_f32"));
        assert_eq!(torch_cpu_mean(&plain).to_bits(), d.offset.to_bits());
        let rec = d.dequantize().unwrap();
        assert_bits_eq(
            &rec,
            &f.f32(&format!("{p}.absmax_deq")),
            &format!("{p}: reconstructed absmax"),
        );
        if f.has(&format!("{p}.deq")) {
            assert_bits_eq(
                &t.dequantize().unwrap(),
                &f.f32(&format!("{p}.deq")),
                &format!("{p}: deq"),
            );
        }
        let max_rel = plain
            .iter()
            .zip(&rec)
            .map(|(a, r)| ((a - r) / a).abs())
            .fold(0f32, f32::max);
        println!(
            "{p}: {} blocks, {} nested, absmax max rel err {max_rel:.2e}, {:.4} bits/param",
            d.codes.len(),
            d.absmax2.len(),
            t.bits_per_parameter()
        );
    }
    // one 4-bit block: the centred absmax is 0, so absmax2 = 0, code 0 and the offset restores it
    let one = quantize_nf4_shaped(&nf.f32("x1000"), &[1000], 4096, true).unwrap();
    let Absmax::Double(d) = &one.absmax else {
        panic!()
    };
    assert_eq!(
        (d.codes.as_slice(), d.absmax2.as_slice(), d.offset),
        (&[0u8][..], &[0f32][..], 50.0)
    );
}

#[test]
fn torch_mean_order_matters() {
    // f64-rounded mean differs from torch's f32 cascade for some fixture cases; ours equals torch.
    let f = fixture("dq.safetensors");
    let a = f.f32("x8292.b32.dq.absmax_f32");
    let ours = torch_cpu_mean(&a);
    assert_eq!(ours.to_bits(), f.f32("x8292.b32.dq.offset")[0].to_bits());
    let naive = a.iter().fold(0f32, |s, v| s + v) / a.len() as f32;
    println!("offset torch-order {ours:e}, naive sequential {naive:e}");
}

#[test]
fn int8_vectorwise_and_per_tensor_equal_bnb() {
    let f = fixture("int8.safetensors");
    for name in ["a", "ties"] {
        let x = f.f32(name);
        let [r, c] = f.shape(name)[..] else { panic!() };
        let t = quantize_int8_vectorwise(&x, r, c).unwrap();
        assert_eq!(t.q, f.i8(&format!("{name}.CB")), "{name}: CB");
        assert_bits_eq(
            &t.scale,
            &f.f32(&format!("{name}.SCB")),
            &format!("{name}: SCB"),
        );
        assert_bits_eq(
            &t.dequantize(),
            &f.f32(&format!("{name}.deq")),
            &format!("{name}: deq"),
        );
        let p = quantize_int8_per_tensor(&x, r, c).unwrap();
        assert_eq!(p.q, f.i8(&format!("{name}.pt.CB")), "{name}: per-tensor CB");
        assert_bits_eq(
            &p.scale,
            &f.f32(&format!("{name}.pt.SCB")),
            &format!("{name}: per-tensor SCB"),
        );
        let s = error_stats(&x, &t.dequantize(), t.storage_bytes());
        println!("int8 vector-wise {name}: {s}");
    }
    // half-to-even: row 0 has absmax 127, so x·127/absmax = x
    let t = quantize_int8_vectorwise(&[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5], 1, 8).unwrap();
    assert_eq!(t.q, vec![127, 0, 2, 2, 0, -2, -2, 4]);
    // a zero row quantizes to zeros (bnb would divide by zero)
    let z = quantize_int8_vectorwise(&[0.0, 0.0, 1.0, -2.0], 2, 2).unwrap();
    assert_eq!((z.q, z.scale), (vec![0, 0, 64, -127], vec![0.0, 2.0]));
    assert!(matches!(
        quantize_int8_vectorwise(&[1.0; 6], 4, 2),
        Err(QuantError::Shape { .. })
    ));
    assert!(matches!(
        quantize_int8_vectorwise(&[], 0, 0),
        Err(QuantError::Empty(_))
    ));
}

fn fixture_tensor(f: &common::Fixture, key: &str) -> Option<BnbTensor> {
    if !f.has(key) {
        return None;
    }
    let data = if f.is_u8(key) {
        BnbData::U8(f.u8(key))
    } else {
        BnbData::F32(f.f32(key))
    };
    Some(BnbTensor {
        shape: f.shape(key),
        data,
    })
}

#[test]
fn serialized_linear4bit_layout_round_trips() {
    let f = fixture("serialized.safetensors");
    let nf = fixture("nf4.safetensors");
    let dq = fixture("dq.safetensors");
    let read = from_state_dict("weight", |k| fixture_tensor(&f, k)).unwrap();
    let ours = quantize_nf4_shaped(&nf.f32("w33x70"), &[33, 70], 64, true).unwrap();
    assert_eq!(read, ours, "bnb's saved state == our quantization");
    assert_bits_eq(
        &read.dequantize().unwrap(),
        &dq.f32("w33x70.b64.dq.deq"),
        "deq of saved",
    );
    let written = to_state_dict(&ours, "weight").unwrap();
    let mut keys: Vec<String> = written.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    let mut want = f.keys();
    want.sort();
    assert_eq!(keys, want);
    for (k, t) in written {
        assert_eq!(t.shape, f.shape(&k), "{k}: shape");
        assert_eq!(Some(t), fixture_tensor(&f, &k), "{k}: content");
    }
    // errors name the key
    let err = from_state_dict("weight", |k| {
        if k.ends_with("nested_absmax") {
            None
        } else {
            fixture_tensor(&f, k)
        }
    })
    .unwrap_err();
    assert_eq!(
        err,
        QuantError::Format {
            key: "weight.nested_absmax".into(),
            message: "missing".into()
        }
    );
    let err = from_state_dict("weight", |k| {
        if k.contains("quant_state") {
            let s =
                br#"{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [33, 70]}"#;
            Some(BnbTensor {
                shape: vec![s.len()],
                data: BnbData::U8(s.to_vec()),
            })
        } else {
            fixture_tensor(&f, k)
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("fp4"), "{err}");
}
