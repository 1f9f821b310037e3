//! NF4 dequantization kernel (CubeCL, `lora_quant::cube`) on CUDA: correctness against the CPU
//! reference and the burn-ops path, then bandwidth against a device-to-device copy measured in
//! the same process.
//!
//! ```text
//! CUDARC_CUDA_VERSION=13000 cargo run --release -p lora-quant --features cuda \
//!     --example nf4_kernel_bench -- [--iters 50] [--inner 10] [--check-only] [--source]
//! ```
//!
//! (a) Correctness: random weights of several shapes (tail blocks, element counts not a multiple
//! of 8, several block sizes, with and without double quantization) are quantized with the CPU
//! code ([`quantize_nf4_shaped`]); the kernel writes into a NaN-poisoned buffer and must equal
//! [`dequantize_nf4`] bit for bit (max |diff| == 0 and no NaN left). The old burn-ops path
//! ([`QuantLinear::dequantize_weight`]) is compared too, on the plain CubeCL backend and on the
//! fusion backend (`burn::backend::Cuda`); so is `QuantLinear::dequantize_weight`, which
//! dispatches to the kernel on `Cuda` and on `Autodiff<Cuda>` (must be exact, and must dispatch).
//!
//! (b) Bandwidth: 4096×4096 (four weight sets in rotation) and the 48 weights of GPT-2 small
//! (12 layers × c_attn 768→2304, attn c_proj 768→768, c_fc 768→3072, mlp c_proj 3072→768;
//! 85M parameters), blocksize 64. Each sample: sync, `inner` dequantizations (outputs kept alive),
//! sync; time / inner; median of `iters` samples after 3 warm-up rounds (8192×8192, two weight
//! sets in rotation, too). Bytes = packed codes read
//! + absmax read (+ for double quantization: 8-bit codes and second-level absmax read, the f32
//! products written and read back) + f32 output written. The copy baseline is a 16-byte-vector
//! copy of 64 Mi f32 (bytes read + written; the ratios use it), also timed at 16 Mi f32 (the
//! output size of one 4096² weight).
//!
//! The process exits with status 1 if the kernel is not bit-exact.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_cubecl::CubeBackend;
use cubecl::cuda::{CudaDevice, CudaRuntime};
use cubecl::Compiler;
use lora_quant::cube::{
    copy_f32_cube, dequantize_weight_cube_into_with, dequantize_weight_cube_with, Nf4Kernel,
};
use lora_quant::{dequantize_nf4, quantize_nf4_shaped, QuantLinear};

/// The CubeCL CUDA backend without fusion (the kernel path).
type Cb = CubeBackend<CudaRuntime, f32, i32, u8>;
/// `burn::backend::Cuda` (fusion on): the backend the training code runs on.
type Fu = burn::backend::Cuda;
/// What training uses: autodiff over fusion.
type Ad = burn::backend::Autodiff<Fu>;

/// Deterministic normal-ish values (xorshift64* + Box–Muller), never exactly zero in practice.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (z as f32) * scale
            })
            .collect()
    }
}

fn to_vec(t: Tensor<impl Backend, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("read back f32 tensor")
}

/// (bit mismatches, max |diff| (NaN → inf)) of `got` against `want`.
fn compare(got: &[f32], want: &[f32]) -> (usize, f32) {
    assert_eq!(got.len(), want.len(), "length");
    let mut bad = 0;
    let mut max = 0f32;
    for (g, w) in got.iter().zip(want) {
        if g.to_bits() != w.to_bits() {
            bad += 1;
            let d = (g - w).abs();
            max = if d.is_nan() {
                f32::INFINITY
            } else {
                max.max(d)
            };
        }
    }
    (bad, max)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median seconds per call of `f` over `iters` samples of `inner` calls (3 warm-up rounds).
fn time<T>(iters: usize, inner: usize, sync: impl Fn(), mut f: impl FnMut(usize) -> T) -> f64 {
    for k in 0..3 {
        let _keep: Vec<T> = (0..inner).map(|i| f(k * inner + i)).collect();
        sync();
    }
    let mut samples = Vec::with_capacity(iters);
    for s in 0..iters {
        sync();
        let t0 = Instant::now();
        let keep: Vec<T> = (0..inner).map(|i| f(s * inner + i)).collect();
        sync();
        samples.push(t0.elapsed().as_secs_f64() / inner as f64);
        drop(keep);
    }
    median(samples)
}

/// Device bytes of one dequantization: codes + scales read, output written.
fn bytes_moved(t: &lora_quant::Nf4Tensor) -> f64 {
    let n = t.numel();
    let words = n.div_ceil(8);
    let out = 4 * 8 * words;
    let scales = match &t.absmax {
        lora_quant::Absmax::F32(a) => 4 * a.len(),
        // 8-bit codes (in words) + absmax2 read; f32 products written and read again.
        lora_quant::Absmax::Double(d) => {
            4 * d.codes.len().div_ceil(4) + 4 * d.absmax2.len() + 8 * d.codes.len()
        }
    };
    (4 * words + scales + out) as f64
}

struct Row {
    case: String,
    path: &'static str,
    secs: f64,
    bytes: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .map(|i| {
                args.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} needs a positive integer"))
            })
            .unwrap_or(default)
    };
    let iters = flag("--iters", 50).max(1);
    let inner = flag("--inner", 10).max(1);
    let check_only = args.iter().any(|a| a == "--check-only");
    if args.iter().any(|a| a == "--source") {
        // No device needed: expand the kernels and print the CUDA C++ that CubeCL generates.
        for (name, def) in lora_quant::cube::kernel_definitions::<CudaRuntime>(64, 256) {
            let mut compiler = cubecl::cuda::CudaCompiler::default();
            let src = compiler
                .compile(
                    def,
                    &Default::default(),
                    cubecl::ExecutionMode::Checked,
                    cubecl::prelude::AddressType::U32.unsigned_type(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            println!("// ===== {name}\n{src}");
        }
        return;
    }
    let device = CudaDevice::default();
    let sync_cb = || Cb::sync(&device).expect("sync");
    let sync_fu = || Fu::sync(&device).expect("sync");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut kernel_ok = true;

    // (a) correctness
    println!("== correctness: kernel / burn-ops (CubeBackend) / burn-ops (Fusion) vs CPU dequantize_nf4, bit for bit");
    let shapes: [(usize, usize, usize, bool); 9] = [
        (64, 64, 64, false),
        (3, 7, 32, true),
        (33, 65, 64, false),
        (33, 65, 64, true),
        (100, 300, 128, false),
        (257, 129, 256, true),
        (1000, 1111, 64, true),
        (2304, 768, 64, false),
        (2304, 768, 4096, true),
    ];
    for (i, &(d_out, d_in, bs, dq)) in shapes.iter().enumerate() {
        let scale = [0.02f32, 1.0, 37.5][i % 3];
        let values = rng.normals(d_out * d_in, scale);
        let t = quantize_nf4_shaped(&values, &[d_out, d_in], bs, dq).expect("quantize");
        let want = dequantize_nf4(&t).expect("cpu dequantize");
        let q = QuantLinear::<Cb>::from_nf4(&t, &device).expect("upload");
        let padded = (d_out * d_in).div_ceil(8) * 8;
        let poison =
            Tensor::<Cb, 1>::from_data(TensorData::new(vec![f32::NAN; padded], [padded]), &device);
        let got =
            dequantize_weight_cube_into_with(&q, poison, Nf4Kernel::WordPerThread).expect("kernel");
        assert_eq!(got.dims(), [d_out, d_in]);
        let (bad_k, max_k) = compare(&to_vec(got), &want);
        let poison =
            Tensor::<Cb, 1>::from_data(TensorData::new(vec![f32::NAN; padded], [padded]), &device);
        let got_h = dequantize_weight_cube_into_with(&q, poison, Nf4Kernel::HalfWordPerThread)
            .expect("half kernel");
        let (bad_h, max_h) = compare(&to_vec(got_h), &want);
        let poison =
            Tensor::<Cb, 1>::from_data(TensorData::new(vec![f32::NAN; padded], [padded]), &device);
        let got_u = dequantize_weight_cube_into_with(&q, poison, Nf4Kernel::HalfWordUnchecked)
            .expect("unchecked half kernel");
        let (bad_u, max_u) = compare(&to_vec(got_u), &want);
        let (bad_o, max_o) = compare(&to_vec(q.dequantize_weight_ops()), &want);
        let qf = QuantLinear::<Fu>::from_nf4(&t, &device).expect("upload fusion");
        let (bad_f, max_f) = compare(&to_vec(qf.dequantize_weight_ops()), &want);
        // The dispatch in `dequantize_weight` (kernel) on fusion and on Autodiff<fusion>.
        let (bad_d, max_d) = compare(&to_vec(qf.dequantize_weight()), &want);
        let qa = QuantLinear::<Ad>::from_nf4(&t, &device).expect("upload autodiff");
        let (bad_a, max_a) = compare(&to_vec(qa.dequantize_weight()), &want);
        let dispatched = lora_quant::cube::try_dequantize_weight(&qf).is_some()
            && lora_quant::cube::try_dequantize_weight(&qa).is_some()
            && lora_quant::cube::try_dequantize_weight(&q).is_some();
        kernel_ok &=
            bad_k == 0 && bad_h == 0 && bad_u == 0 && bad_d == 0 && bad_a == 0 && dispatched;
        println!(
            "[{d_out}x{d_in} bs{bs}{}] kernel: {} ({bad_k} bits differ, max|d| {max_k:e}), \
             half-word kernel: {bad_h} differ ({max_h:e}), unchecked: {bad_u} differ ({max_u:e}) | dispatch fusion: {bad_d} differ ({max_d:e}), autodiff: {bad_a} differ ({max_a:e}), \
             kernel used: {dispatched} | burn-ops: {bad_o} differ, max|d| {max_o:e} | \
             burn-ops fusion: {bad_f} differ, max|d| {max_f:e}",
            if dq { " dq" } else { "" },
            if bad_k == 0 { "EXACT" } else { "MISMATCH" },
        );
    }
    println!(
        "kernel correctness: {}",
        if kernel_ok { "PASS" } else { "FAIL" }
    );
    if check_only {
        std::process::exit(if kernel_ok { 0 } else { 1 });
    }

    // (b) bandwidth
    let mut rows: Vec<Row> = Vec::new();
    // The copy baseline at two sizes: 64 Mi f32 (the card's copy bandwidth; the ratios use it)
    // and 16 Mi f32, the element count of one 4096² weight (same bytes written as that case).
    let mut copy_gbs = 0.0;
    for (copy_n, case) in [
        (64usize << 20, "copy 256MiB f32"),
        (16usize << 20, "copy 64MiB f32"),
    ] {
        let src = Tensor::<Cb, 1>::from_data(
            TensorData::new(rng.normals(copy_n, 1.0), [copy_n]),
            &device,
        );
        let secs = time(iters, inner, sync_cb, |_| {
            let dst = Tensor::<Cb, 1>::empty([copy_n], &device);
            copy_f32_cube(
                src.clone().into_primitive().tensor(),
                dst.clone().into_primitive().tensor(),
            )
            .expect("copy");
            dst
        });
        let bytes = 8.0 * copy_n as f64;
        let gbs = bytes / secs / 1e9;
        if copy_gbs == 0.0 {
            copy_gbs = gbs;
        }
        println!("{case}: {:.3} ms, {gbs:.0} GB/s (read+write)", secs * 1e3);
        rows.push(Row {
            case: case.into(),
            path: "vec4 copy",
            secs,
            bytes,
        });
    }

    let gpt2: Vec<(usize, usize)> = (0..12)
        .flat_map(|_| [(2304, 768), (768, 768), (3072, 768), (768, 3072)])
        .collect();
    let cases: Vec<(String, Vec<(usize, usize)>, bool)> = vec![
        ("4096x4096 x4 rot".into(), vec![(4096, 4096); 4], false),
        ("4096x4096 x4 rot dq".into(), vec![(4096, 4096); 4], true),
        ("8192x8192 x2 rot".into(), vec![(8192, 8192); 2], false),
        ("gpt2 48 weights 85M".into(), gpt2.clone(), false),
        ("gpt2 48 weights 85M dq".into(), gpt2, true),
    ];
    for (name, mats, dq) in cases {
        let ts: Vec<_> = mats
            .iter()
            .map(|&(o, i)| {
                let v = rng.normals(o * i, 0.02);
                quantize_nf4_shaped(&v, &[o, i], 64, dq).expect("quantize")
            })
            .collect();
        let qs: Vec<QuantLinear<Cb>> = ts
            .iter()
            .map(|t| QuantLinear::from_nf4(t, &device).expect("upload"))
            .collect();
        let qf: Vec<QuantLinear<Fu>> = ts
            .iter()
            .map(|t| QuantLinear::from_nf4(t, &device).expect("upload"))
            .collect();
        // 4096², 8192²: one weight per call, rotating over the set; GPT-2: all 48 weights per
        // call.
        let rotate = mats.iter().all(|m| *m == mats[0]);
        let (per_call, bytes) = if rotate {
            (1, bytes_moved(&ts[0]))
        } else {
            (qs.len(), ts.iter().map(bytes_moved).sum())
        };
        let pick = |k: usize, j: usize| if rotate { k % qs.len() } else { j };
        let kernel_secs = |kernel: Nf4Kernel| {
            time(iters, inner, sync_cb, |k| {
                (0..per_call)
                    .map(|j| dequantize_weight_cube_with(&qs[pick(k, j)], kernel).expect("kernel"))
                    .collect::<Vec<_>>()
            })
        };
        let k_secs = kernel_secs(Nf4Kernel::WordPerThread);
        let h_secs = kernel_secs(Nf4Kernel::HalfWordPerThread);
        let u_secs = kernel_secs(Nf4Kernel::HalfWordUnchecked);
        let d_secs = time(iters, inner, sync_fu, |k| {
            (0..per_call)
                .map(|j| qf[pick(k, j)].dequantize_weight())
                .collect::<Vec<_>>()
        });
        let o_secs = time(iters, inner, sync_cb, |k| {
            (0..per_call)
                .map(|j| qs[pick(k, j)].dequantize_weight_ops())
                .collect::<Vec<_>>()
        });
        let f_secs = time(iters, inner, sync_fu, |k| {
            (0..per_call)
                .map(|j| qf[pick(k, j)].dequantize_weight_ops())
                .collect::<Vec<_>>()
        });
        for (path, secs) in [
            ("kernel", k_secs),
            ("kernel half-word", h_secs),
            ("kernel half-word unchecked", u_secs),
            ("kernel via fusion", d_secs),
            ("burn-ops", o_secs),
            ("burn-ops fusion", f_secs),
        ] {
            println!(
                "{name} {path}: {:.3} ms, {:.0} GB/s, ratio to copy {:.2}",
                secs * 1e3,
                bytes / secs / 1e9,
                bytes / secs / 1e9 / copy_gbs
            );
            rows.push(Row {
                case: name.clone(),
                path,
                secs,
                bytes,
            });
        }
    }
    println!("\n== summary (median of {iters} samples x {inner} calls; copy = {copy_gbs:.0} GB/s; goal kernel >= 0.70)");
    println!(
        "{:<24} {:<18} {:>10} {:>10} {:>9} {:>7}",
        "case", "path", "ms/call", "MB/call", "GB/s", "ratio"
    );
    for r in &rows {
        let gbs = r.bytes / r.secs / 1e9;
        println!(
            "{:<24} {:<18} {:>10.4} {:>10.1} {:>9.0} {:>7.2}",
            r.case,
            r.path,
            r.secs * 1e3,
            r.bytes / 1e6,
            gbs,
            gbs / copy_gbs
        );
    }
    println!(
        "kernel correctness: {}",
        if kernel_ok { "PASS" } else { "FAIL" }
    );
    if !kernel_ok {
        std::process::exit(1);
    }
}
