//! IMDB batching, truncation and padding on small synthetic token sequences.

use burn::backend::NdArray;
use lora_data::imdb::{make_batches, make_bucketed_batches, DataError};

#[test]
fn batches_truncate_and_pad_to_longest_in_batch() {
    let toks: Vec<Vec<u32>> = vec![
        vec![1, 2, 3],
        vec![4, 5],
        vec![6, 7, 8, 9, 10, 11],
        vec![12],
        vec![13, 14],
    ];
    let labels = [1u8, 0, 1, 0, 1];
    let b = make_batches(&toks, &labels, 2, 4, 99, None).unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!((b[0].batch, b[0].seq), (2, 3));
    assert_eq!(b[0].input_ids, vec![1, 2, 3, 4, 5, 99]);
    assert_eq!(b[0].lengths, vec![3, 2]);
    assert_eq!(b[0].labels, vec![1, 0]);
    // truncated to the first 4 tokens; the batch is 4 wide, not max_len wide by default
    assert_eq!((b[1].batch, b[1].seq), (2, 4));
    assert_eq!(b[1].input_ids, vec![6, 7, 8, 9, 12, 99, 99, 99]);
    assert_eq!(b[1].lengths, vec![4, 1]);
    assert_eq!(b[1].num_tokens(), 5);
    // last, smaller batch
    assert_eq!((b[2].batch, b[2].seq), (1, 2));
    assert_eq!(b[2].input_ids, vec![13, 14]);
    assert_eq!(b[2].labels, vec![1]);

    // Shuffled: deterministic, a permutation of the examples.
    let s1 = make_batches(&toks, &labels, 2, 10, 0, Some(3)).unwrap();
    let s2 = make_batches(&toks, &labels, 2, 10, 0, Some(3)).unwrap();
    assert_eq!(s1, s2);
    let mut firsts: Vec<i64> = s1
        .iter()
        .flat_map(|b| (0..b.batch).map(move |i| b.input_ids[i * b.seq]))
        .collect();
    firsts.sort();
    assert_eq!(firsts, vec![1, 4, 6, 12, 13]);
    for b in &s1 {
        for (i, &len) in b.lengths.iter().enumerate() {
            let row = &b.input_ids[i * b.seq..(i + 1) * b.seq];
            assert!(row[len..].iter().all(|&t| t == 0));
            let src = toks.iter().find(|t| t[0] as i64 == row[0]).unwrap();
            assert_eq!(len, src.len());
            let lab = labels[toks.iter().position(|t| t[0] as i64 == row[0]).unwrap()];
            assert_eq!(b.labels[i], lab as i64);
        }
    }
}

#[test]
fn batch_errors() {
    let toks = vec![vec![1u32], vec![]];
    let err = make_batches(&toks, &[0, 1], 2, 4, 0, None).unwrap_err();
    assert!(err.to_string().contains("example 1"), "{err}");
    assert!(make_batches(&toks[..1], &[0, 1], 2, 4, 0, None).is_err());
    assert!(make_batches(&toks[..1], &[0], 0, 4, 0, None).is_err());
    assert!(make_batches(&toks[..1], &[0], 1, 0, 0, None).is_err());
    assert!(matches!(
        make_batches(&[], &[], 1, 1, 0, None).unwrap_err(),
        DataError::Empty { .. }
    ));
}

#[test]
fn batch_to_tensors() {
    let toks = vec![vec![5u32, 6, 7], vec![8]];
    let b = &make_batches(&toks, &[1, 0], 2, 8, 0, None).unwrap()[0];
    let device = Default::default();
    let (ids, labels) = b.to_tensors::<NdArray<f32>>(&device);
    assert_eq!(ids.dims(), [2, 3]);
    assert_eq!(labels.dims(), [2]);
    let ids: Vec<i64> = ids.into_data().iter::<i64>().collect();
    assert_eq!(ids, vec![5, 6, 7, 8, 0, 0]);
    let labels: Vec<i64> = labels.into_data().iter::<i64>().collect();
    assert_eq!(labels, vec![1, 0]);
    let lens: Vec<i64> = b
        .lengths_tensor::<NdArray<f32>>(&device)
        .into_data()
        .iter::<i64>()
        .collect();
    assert_eq!(lens, vec![3, 1]);
}

#[test]
fn bucketed_batches_cover_all_and_pad_less() {
    // lengths 1..=64 in a scrambled order; label = length parity
    let toks: Vec<Vec<u32>> = (0..64u32)
        .map(|i| {
            let len = (i * 37) % 64 + 1;
            (0..len).map(|t| i * 1000 + t).collect()
        })
        .collect();
    let labels: Vec<u8> = toks.iter().map(|t| (t.len() % 2) as u8).collect();
    let padding = |bs: &[lora_data::imdb::Batch]| -> usize {
        bs.iter().map(|b| b.batch * b.seq - b.num_tokens()).sum()
    };
    let plain = make_batches(&toks, &labels, 4, 48, 0, Some(5)).unwrap();
    let bucketed = make_bucketed_batches(&toks, &labels, 4, 48, 0, 5, 8).unwrap();
    assert_eq!(bucketed.len(), 16);
    // every example exactly once, with its label and its (truncated) tokens
    let mut seen = vec![0; 64];
    for b in &bucketed {
        for r in 0..b.batch {
            let id = (b.input_ids[r * b.seq] / 1000) as usize;
            seen[id] += 1;
            let len = toks[id].len().min(48);
            assert_eq!(b.lengths[r], len);
            let row: Vec<i64> = toks[id][..len].iter().map(|&t| t as i64).collect();
            assert_eq!(&b.input_ids[r * b.seq..r * b.seq + len], &row[..]);
            assert_eq!(b.labels[r], labels[id] as i64);
        }
    }
    assert!(seen.iter().all(|&c| c == 1));
    // pools of 32 sorted by length: batches hold similar lengths, so far less padding
    assert!(
        padding(&bucketed) * 4 < padding(&plain),
        "bucketed padding {} vs plain {}",
        padding(&bucketed),
        padding(&plain)
    );
    assert_eq!(
        bucketed,
        make_bucketed_batches(&toks, &labels, 4, 48, 0, 5, 8).unwrap()
    );
    assert!(make_bucketed_batches(&toks, &labels, 4, 48, 0, 5, 0).is_err());
}

#[test]
fn truncation_keeps_head_tail_or_both() {
    use lora_data::imdb::{truncate_tokens, Truncation};
    let ids: Vec<u32> = (0..10).collect();
    assert_eq!(truncate_tokens(&ids, 4, Truncation::Head), vec![0, 1, 2, 3]);
    assert_eq!(truncate_tokens(&ids, 4, Truncation::Tail), vec![6, 7, 8, 9]);
    // keep 8: head 8/4 = 2 tokens, tail 6
    assert_eq!(
        truncate_tokens(&ids, 8, Truncation::HeadTail),
        vec![0, 1, 4, 5, 6, 7, 8, 9]
    );
    // keep 3: head 0, tail 3
    assert_eq!(
        truncate_tokens(&ids, 3, Truncation::HeadTail),
        vec![7, 8, 9]
    );
    // short sequences are untouched
    assert_eq!(
        truncate_tokens(&ids[..3], 8, Truncation::Tail),
        vec![0, 1, 2]
    );
}

#[test]
fn padding_to_a_multiple_keeps_rows_and_caps_at_max_len() {
    use lora_data::imdb::{make_batches, pad_batches_to_multiple};
    let ids = vec![vec![5u32, 6, 7], vec![8u32]];
    let mut b = make_batches(&ids, &[1, 0], 2, 16, 0, None).unwrap();
    assert_eq!(b[0].seq, 3);
    pad_batches_to_multiple(&mut b, 4, 16, 9);
    assert_eq!(b[0].seq, 4);
    assert_eq!(b[0].input_ids, vec![5, 6, 7, 9, 8, 0, 0, 9]);
    assert_eq!(b[0].lengths, vec![3, 1]);
    // capped at max_len (6 < 8)
    let mut b = make_batches(&[vec![1u32; 5]], &[0], 1, 6, 0, None).unwrap();
    pad_batches_to_multiple(&mut b, 8, 6, 2);
    assert_eq!(b[0].seq, 6);
    assert_eq!(b[0].input_ids, vec![1, 1, 1, 1, 1, 2]);
    // multiple 1: unchanged
    let mut c = b.clone();
    pad_batches_to_multiple(&mut c, 1, 6, 2);
    assert_eq!(c, b);
}

#[test]
fn split_rows_gives_consecutive_shards_larger_first_and_refuses_too_many() {
    let toks: Vec<Vec<u32>> = vec![vec![1, 2], vec![3], vec![4, 5], vec![6], vec![7, 8]];
    let labels = [1u8, 0, 1, 0, 1];
    let b = &make_batches(&toks, &labels, 5, 4, 0, None).unwrap()[0];
    let s = b.split_rows(2).unwrap();
    assert_eq!((s[0].batch, s[0].seq, s[1].batch, s[1].seq), (3, 2, 2, 2));
    assert_eq!(s[0].input_ids, vec![1, 2, 3, 0, 4, 5]);
    assert_eq!(s[1].input_ids, vec![6, 0, 7, 8]);
    assert_eq!(
        (s[0].lengths.clone(), s[1].lengths.clone()),
        (vec![2, 1, 2], vec![1, 2])
    );
    assert_eq!(
        (s[0].labels.clone(), s[1].labels.clone()),
        (vec![1, 0, 1], vec![0, 1])
    );
    assert_eq!(b.split_rows(1).unwrap()[0].input_ids, b.input_ids);
    let e = b.split_rows(6).unwrap_err();
    assert!(matches!(e, DataError::Batch(_)));
    assert!(
        e.to_string()
            .contains("5 rows cannot be split into 6 shards"),
        "{e}"
    );
    assert!(b.split_rows(0).is_err());
}
