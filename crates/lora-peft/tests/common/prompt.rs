//! Helpers of the prompt-learning tests: the fixture models on any backend, the fixtures' io,
//! the next-token loss PEFT's fixtures differentiate, and the export of our adapters for the
//! PEFT check (`make_prompt_fixtures.py --check-ours`).
use super::fixtures;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use lora_io::StTensor;
use lora_models::gpt2::Gpt2;
use lora_models::llama::Llama;
use lora_models::st::StFile;
use std::path::{Path, PathBuf};

pub fn gpt2<Bk: Backend>() -> Gpt2<Bk> {
    Gpt2::load(&fixtures().join("gpt2_a"), &Default::default())
        .unwrap()
        .0
}

pub fn llama<Bk: Backend>() -> Llama<Bk> {
    Llama::load_hf(&fixtures().join("llama_a"), &Default::default())
        .unwrap()
        .0
}

/// `input_ids` of fixture `fx`'s io and the file (for its F32 tensors).
pub fn io<Bk: Backend>(fx: &str) -> (Tensor<Bk, 2, Int>, StFile) {
    let st = StFile::open(fixtures().join(fx).join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let ids = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    (ids, st)
}

/// Mean next-token cross-entropy of the real tokens: `logits[:, :-1]` against `ids[:, 1:]`
/// (the loss `make_prompt_fixtures.py` differentiates).
pub fn next_token_loss<Bk: Backend>(
    logits: Tensor<Bk, 3>,
    ids: Tensor<Bk, 2, Int>,
) -> Tensor<Bk, 1> {
    let [_, s, _] = logits.dims();
    let lp = log_softmax(logits.narrow(1, 0, s - 1), 2);
    let target = ids.narrow(1, 1, s - 1).unsqueeze_dim::<3>(2);
    lp.gather(2, target).mean().neg()
}

/// `$LORA_BURN_EXPORT_DIR/<name>` when the variable is set (the adapters PEFT then loads).
pub fn export_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os("LORA_BURN_EXPORT_DIR").map(|d| PathBuf::from(d).join(name))
}

/// Writes `dir/io.safetensors` {input_ids I64, logits F32} (our logits of the real tokens).
pub fn write_io(dir: &Path, ids: &[i64], ids_shape: [usize; 2], logits: &[f32], shape: [usize; 3]) {
    let ids_t = StTensor {
        dtype: safetensors::Dtype::I64,
        shape: ids_shape.to_vec(),
        bytes: ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    lora_io::write_safetensors(
        dir.join("io.safetensors"),
        &[
            ("input_ids".into(), ids_t),
            ("logits".into(), StTensor::f32(shape.to_vec(), logits)),
        ],
        None,
    )
    .unwrap();
}

/// A copy of fixture `fx` with its `adapter_config.json` edited by `edit`, and its
/// `adapter_model.safetensors` copied, or replaced by a zero `prompt_embeddings` of shape
/// `tensor`.
pub fn edited(
    fx: &str,
    edit: impl Fn(&mut serde_json::Value),
    tensor: Option<(usize, usize)>,
) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = fixtures().join(fx);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    edit(&mut cfg);
    std::fs::write(d.path().join("adapter_config.json"), cfg.to_string()).unwrap();
    match tensor {
        None => {
            std::fs::copy(
                src.join("adapter_model.safetensors"),
                d.path().join("adapter_model.safetensors"),
            )
            .unwrap();
        }
        Some((r, c)) => lora_io::write_safetensors(
            d.path().join("adapter_model.safetensors"),
            &[(
                "prompt_embeddings".into(),
                lora_io::StTensor::f32(vec![r, c], &vec![0.0; r * c]),
            )],
            None,
        )
        .unwrap(),
    }
    d
}
