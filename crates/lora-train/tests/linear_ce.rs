//! `linear_cross_entropy_sum` against PyTorch (`tests/fixtures/make_linear_ce_fixtures.py`:
//! `cross_entropy(hidden @ weight.T)` weighted, summed, scaled and differentiated by autograd in
//! float64): the loss and the gradients of `hidden` and `weight`, for chunks of 1, 4 and all
//! rows, with the weight frozen and tracked; and the shape errors.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{vals, AD};
use lora_train::{default_chunk_rows, linear_cross_entropy_sum};
use safetensors::SafeTensors;

fn fixture() -> Vec<u8> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/linear_ce/io.safetensors"
    );
    std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// F32 tensor `name` as `(values, shape)`.
fn f32s(st: &SafeTensors<'_>, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

fn tensor2(st: &SafeTensors<'_>, name: &str, grad: bool) -> Tensor<AD, 2> {
    let (v, s) = f32s(st, name);
    let t = Tensor::from_data(TensorData::new(v, [s[0], s[1]]), &Default::default());
    if grad {
        t.require_grad()
    } else {
        t
    }
}

fn max_diff(a: &[f64], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - *y as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
fn loss_and_gradients_match_pytorch_for_every_chunk_size() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dev = Default::default();
    let targets: Vec<i64> = st
        .tensor("targets")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let rows = targets.len();
    let scale = f32s(&st, "scale").0[0] as f64;
    let want_loss = f32s(&st, "loss").0;
    for track_weight in [false, true] {
        for chunk in [1, 4, rows] {
            let hidden = tensor2(&st, "hidden", true);
            let weight = tensor2(&st, "weight", track_weight);
            let t = Tensor::<AD, 1, Int>::from_data(TensorData::new(targets.clone(), [rows]), &dev);
            let m = Tensor::<AD, 1>::from_data(
                TensorData::new(f32s(&st, "row_weights").0, [rows]),
                &dev,
            );
            let loss =
                linear_cross_entropy_sum(hidden.clone(), weight.clone(), t, m, chunk).unwrap();
            let l = vals(loss.clone().inner());
            let dl = max_diff(&l, &want_loss);
            let grads = loss.mul_scalar(scale).backward();
            let gh = vals(hidden.grad(&grads).expect("hidden has a gradient"));
            let dh = max_diff(&gh, &f32s(&st, "grad_hidden").0);
            println!("chunk {chunk}, weight tracked {track_weight}: loss {l:?} (off {dl:.1e}), grad_hidden off {dh:.1e}");
            assert!(
                dl <= 1e-5 * want_loss[0].abs() as f64,
                "loss {l:?} vs torch {want_loss:?}"
            );
            assert!(dh <= 1e-5, "grad_hidden off by {dh}");
            match weight.grad(&grads) {
                Some(g) => {
                    assert!(track_weight, "a frozen weight got a gradient");
                    let dw = max_diff(&vals(g), &f32s(&st, "grad_weight").0);
                    println!("  grad_weight off {dw:.1e}");
                    assert!(dw <= 1e-5, "grad_weight off by {dw}");
                }
                None => assert!(!track_weight, "the tracked weight got no gradient"),
            }
        }
    }
}

#[test]
fn shape_mismatches_and_a_zero_chunk_are_errors() {
    let dev = Default::default();
    let h = Tensor::<AD, 2>::zeros([3, 4], &dev);
    let w = Tensor::<AD, 2>::zeros([5, 4], &dev);
    let t = Tensor::<AD, 1, Int>::zeros([3], &dev);
    let m = Tensor::<AD, 1>::ones([3], &dev);
    let bad_w = Tensor::<AD, 2>::zeros([5, 2], &dev);
    let e = linear_cross_entropy_sum(h.clone(), bad_w, t.clone(), m.clone(), 2).unwrap_err();
    assert!(e.to_string().contains("weight [5, 2]"), "{e}");
    let e = linear_cross_entropy_sum(h.clone(), w.clone(), Tensor::zeros([2], &dev), m.clone(), 2)
        .unwrap_err();
    assert!(e.to_string().contains("targets [2]"), "{e}");
    let e = linear_cross_entropy_sum(h.clone(), w.clone(), t.clone(), m.clone(), 0).unwrap_err();
    assert!(e.to_string().contains("chunk_rows 0"), "{e}");
    let h64 = h.cast(burn::tensor::FloatDType::F64);
    let e = linear_cross_entropy_sum(h64, w, t, m, 2).unwrap_err();
    assert!(e.to_string().contains("expected both f32"), "{e}");
}

#[test]
fn default_chunks_hold_at_most_two_to_the_26_logits() {
    assert_eq!(default_chunk_rows(50_257), 1280); // 2²⁶ / 50,257 = 1,335, down to 64s
    assert_eq!(default_chunk_rows(49_152), 1344); // 1,365
    assert_eq!(default_chunk_rows(1 << 20), 64);
    assert_eq!(default_chunk_rows(1 << 22), 16);
    assert_eq!(default_chunk_rows(1 << 30), 1);
}
