//! The benchmark's configurations, peaks, model shapes, FLOP count and medians.

mod common;

use common::bench_opts;
use lora_models::gpt2::Gpt2Config;
use lora_recipes::bench::config::{
    model_config, parse_configs, parse_one, parse_peaks, BenchPrecision, Targets,
};
use lora_recipes::bench::flops::train_flops;
use lora_recipes::bench::timing::median;

#[test]
fn configs_from_list_or_single_flags() {
    let one = parse_configs(&bench_opts(&[])).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].label(), "c_attn:none:f32");
    assert!(one[0].quant.is_none());
    let list = parse_configs(&bench_opts(&[
        "--configs",
        "all:NF4-dq:bf16,,c_attn:nf4:f32",
    ]))
    .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].targets, Targets::All);
    assert_eq!(list[0].quant_name, "nf4-dq");
    assert_eq!(list[0].precision, BenchPrecision::Bf16);
    assert_eq!(list[0].quant, Some("nf4-dq".parse().unwrap()));
    assert_eq!(list[1].label(), "c_attn:nf4:f32");
    assert_eq!(Targets::All.modules(), &lora_models::gpt2::LORA_TARGETS[..]);
}

#[test]
fn config_errors_name_the_item() {
    let e = parse_configs(&bench_opts(&["--configs", "c_attn:nf4"])).unwrap_err();
    assert_eq!(
        e,
        "--configs \"c_attn:nf4\": expected TARGETS:QUANT:PRECISION, e.g. c_attn:nf4:f32"
    );
    let e = parse_configs(&bench_opts(&["--configs", "c_attn:int8:f32"])).unwrap_err();
    assert!(
        e.starts_with("--configs \"c_attn:int8:f32\": quant \"int8\""),
        "{e}"
    );
    assert!(parse_one("mlp", "none", "f32").is_err());
    assert!(parse_one("all", "none", "f16").is_err());
}

#[test]
fn peaks_one_number_or_per_precision() {
    assert_eq!(parse_peaks(&None).unwrap(), (None, None));
    assert_eq!(
        parse_peaks(&Some("50".into())).unwrap(),
        (Some(50.0), Some(50.0))
    );
    assert_eq!(
        parse_peaks(&Some("f32=36.5,bf16=700".into())).unwrap(),
        (Some(36.5), Some(700.0))
    );
    assert_eq!(
        parse_peaks(&Some("bf16=7".into())).unwrap(),
        (None, Some(7.0))
    );
    assert!(parse_peaks(&Some("-1".into())).is_err());
    assert!(parse_peaks(&Some("f16=3".into())).is_err());
}

#[test]
fn model_shapes() {
    let t = model_config("tiny").unwrap();
    assert_eq!(
        (t.vocab_size, t.n_positions, t.n_embd, t.n_layer),
        (1000, 128, 64, 2)
    );
    let n = model_config("gpt2-narrow").unwrap();
    assert_eq!((n.n_embd, n.n_layer), (96, 12));
    assert_eq!(model_config("gpt2-124m").unwrap().n_embd, 768);
    let e = model_config("gpt3").unwrap_err().to_string();
    assert!(e.starts_with("--config \"gpt3\""), "{e}");
}

#[test]
fn flops_by_hand_and_gpt2_124m_figures() {
    // One layer, d = 2, f = 8, V = 3, batch 1, seq 2 (T = 2), one adapter r = 1 on (2, 6):
    // N = 3·4 + 4 + 2·2·8 = 48; dense = 2·2·(48 + 6) = 216; attn = 4·1·2·2·2 = 32;
    // lora = 2·2·1·8 = 32; total = 2·216 + 3·32 + 3·32 = 624.
    let mut c = Gpt2Config::sized(3, 4, 2, 1, 1).unwrap();
    c.n_inner = 8;
    assert_eq!(train_flops(&c, 1, 2, 1, &[(2, 6)]), 624.0);
    // The module docs: 4.99 (c_attn) to 5.03 (all) TFLOP a step at 8×1024.
    let g = Gpt2Config::gpt2_124m();
    let c_attn: Vec<(usize, usize)> = vec![(768, 2304); 12];
    let all: Vec<(usize, usize)> = (0..12)
        .flat_map(|_| [(768, 2304), (768, 768), (768, 3072), (3072, 768)])
        .collect();
    let tf = |a: &[(usize, usize)]| train_flops(&g, 8, 1024, 8, a) / 1e12;
    assert!((tf(&c_attn) - 4.99).abs() < 0.005, "{}", tf(&c_attn));
    assert!((tf(&all) - 5.03).abs() < 0.005, "{}", tf(&all));
}

#[test]
fn medians() {
    assert!(median(&[]).is_nan());
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
}
