//! The files a run writes besides the adapter, read back with safetensors.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::B;
use lora_data::imdb::Batch;
use lora_recipes::output::{dump_data, training_line, write_heldout, DumpMeta};
use lora_train::TrainStats;
use safetensors::{Dtype, SafeTensors};

fn ints<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk")))
        .collect()
}

#[test]
fn heldout_file_holds_ids_mask_and_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heldout_logits.safetensors");
    let b = Batch {
        input_ids: vec![5, 6, 7, 8, 0, 0],
        lengths: vec![3, 1],
        labels: vec![1, 0],
        batch: 2,
        seq: 3,
    };
    let logits = Tensor::<B, 2>::from_data(
        TensorData::new(vec![0.5f32, -1.0, 2.0, 3.25], [2, 2]),
        &Default::default(),
    );
    write_heldout(&path, &b, logits).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    assert_eq!((ids.dtype(), ids.shape()), (Dtype::I64, &[2usize, 3][..]));
    assert_eq!(ints(ids.data(), i64::from_le_bytes), vec![5, 6, 7, 8, 0, 0]);
    let mask = st.tensor("attention_mask").unwrap();
    assert_eq!(mask.dtype(), Dtype::I64);
    assert_eq!(
        ints(mask.data(), i64::from_le_bytes),
        vec![1, 1, 1, 1, 0, 0]
    );
    let l = st.tensor("logits").unwrap();
    assert_eq!((l.dtype(), l.shape()), (Dtype::F32, &[2usize, 2][..]));
    assert_eq!(
        ints(l.data(), f32::from_le_bytes),
        vec![0.5, -1.0, 2.0, 3.25]
    );
}

#[test]
fn dump_file_holds_padded_examples_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.safetensors");
    let train = vec![vec![1u32, 2, 3, 4, 5], vec![9]];
    let test = vec![vec![7u32, 8]];
    let meta = DumpMeta {
        pad: 99,
        neg_pos: (11, 22),
        max_length: 4,
        batch_size: 8,
        seed: 42,
    };
    dump_data(&path, (&train, &[1, 0]), (&test, &[1]), &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let md = header.metadata().clone().unwrap();
    for (k, v) in [
        ("pad_id", "99"),
        ("neg_id", "11"),
        ("pos_id", "22"),
        ("max_length", "4"),
        ("batch_size", "8"),
        ("seed", "42"),
    ] {
        assert_eq!(md.get(k).map(String::as_str), Some(v), "{k}");
    }
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let get = |k: &str| {
        let t = st.tensor(k).unwrap();
        assert_eq!(t.dtype(), Dtype::I32, "{k}");
        (t.shape().to_vec(), ints(t.data(), i32::from_le_bytes))
    };
    assert_eq!(
        get("train_ids"),
        (vec![2, 4], vec![1, 2, 3, 4, 9, 99, 99, 99])
    );
    assert_eq!(get("train_len"), (vec![2], vec![4, 1]));
    assert_eq!(get("train_labels"), (vec![2], vec![1, 0]));
    assert_eq!(get("test_ids"), (vec![1, 4], vec![7, 8, 99, 99]));
    assert_eq!(get("test_len"), (vec![1], vec![2]));
    assert_eq!(get("test_labels"), (vec![1], vec![1]));
}

#[test]
fn training_line_format() {
    let stats = TrainStats {
        steps: 150,
        final_loss: 0.3,
        running_loss: 0.123456,
        losses: vec![],
        grad_norms: vec![],
        lrs: vec![],
        skipped_steps: 0,
        loss_scale: None,
        first_step: 1,
        tokens: 1000,
        wall_secs: 12.345,
        tokens_per_sec: 81.04,
    };
    assert_eq!(
        training_line(&stats),
        "training: 150 steps, 81 tok/s, 12.3s, mean loss of the last 20 steps 0.1235"
    );
    let short = TrainStats {
        steps: 2,
        skipped_steps: 1,
        ..stats
    };
    let line = training_line(&short);
    assert!(line.contains("mean loss of the last 2 steps"), "{line}");
    assert!(
        line.ends_with("(1 steps skipped for a non-finite loss or gradient)"),
        "{line}"
    );
}
