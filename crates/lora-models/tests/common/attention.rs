//! The attention fixture's cases (`tests/fixtures/attention/io.safetensors`), shared by
//! `attention.rs` and `attention_groups.rs`.

use super::{fixtures, max_diff, B};
use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use lora_models::layers::causal_attention;
use lora_models::st::StFile;

/// The training backend.
pub type AB = Autodiff<B>;

/// The fixture tensor `{case}_{name}` as a 4-d tensor on backend `T`.
pub fn load<T: burn::tensor::backend::Backend>(
    st: &StFile,
    case: &str,
    name: &str,
) -> Tensor<T, 4> {
    let (v, s) = st.f32(&format!("{case}_{name}")).unwrap();
    Tensor::from_data(
        TensorData::new(v, [s[0], s[1], s[2], s[3]]),
        &Default::default(),
    )
}

pub fn vals<T: burn::tensor::backend::Backend>(t: Tensor<T, 4>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

pub fn want(st: &StFile, case: &str, name: &str) -> Vec<f32> {
    st.f32(&format!("{case}_{name}")).unwrap().0
}

/// Output and gradients of one fixture case within `tol` of PyTorch's.
pub fn check_case(case: &str, tol: f32) {
    let st = StFile::open(fixtures().join("attention/io.safetensors")).unwrap();

    // Inference backend: burn's attention op with the mask as its bias.
    let out = causal_attention(
        load::<B>(&st, case, "q"),
        load::<B>(&st, case, "k"),
        load::<B>(&st, case, "v"),
        load::<B>(&st, case, "mask"),
    );
    let d = max_diff(&vals(out), &want(&st, case, "out"));
    println!("{case}: inference output vs torch, max abs diff {d:.2e}");
    assert!(d <= tol, "{case}: inference output off by {d}");

    // Training backend: the recomputing backward.
    let q = load::<AB>(&st, case, "q").require_grad();
    let k = load::<AB>(&st, case, "k").require_grad();
    let v = load::<AB>(&st, case, "v").require_grad();
    let out = causal_attention(q.clone(), k.clone(), v.clone(), load(&st, case, "mask"));
    let d = max_diff(&vals(out.clone()), &want(&st, case, "out"));
    println!("{case}: training output vs torch, max abs diff {d:.2e}");
    assert!(d <= tol, "{case}: training output off by {d}");
    let grads = (out * load::<AB>(&st, case, "dout")).sum().backward();
    for (name, t) in [("grad_q", &q), ("grad_k", &k), ("grad_v", &v)] {
        let g = t.grad(&grads).expect("gradient");
        let d = max_diff(&vals(g), &want(&st, case, name));
        println!("{case}: {name} vs torch, max abs diff {d:.2e}");
        assert!(d <= tol, "{case}: {name} off by {d}");
    }
}
