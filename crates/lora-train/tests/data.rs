//! IMDB loading / cleaning / dedupe / split / batching on small synthetic inputs.

use burn::backend::NdArray;
use lora_train::data::{
    clean_text, dedupe, load_imdb, make_batches, make_bucketed_batches, split, DataError, Review,
};
use std::collections::HashSet;
use std::fs;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    p
}

fn r(text: &str, label: u8) -> Review {
    Review {
        text: text.into(),
        label,
    }
}

#[test]
fn cleaning() {
    assert_eq!(
        clean_text("  Great<br /><br />movie.<br/>Really<br>good<BR />!\n\t end "),
        "Great movie. Really good ! end"
    );
    assert_eq!(clean_text("a <b>bold</b> <br"), "a <b>bold</b> <br");
    assert_eq!(clean_text("héllo<br />wörld"), "héllo wörld");
}

#[test]
fn load_cleans_and_dedupes() {
    let d = tempfile::tempdir().unwrap();
    let json = r#"[
        {"t": "A fine film.<br /><br />Loved it.", "s": 1},
        {"t": "Dull.", "s": 0},
        {"t": "A fine film. Loved it.", "s": 1},
        {"t": "Mixed   feelings", "s": 0},
        {"t": "Terrible", "s": 0},
        {"t": "Mixed<br/>feelings", "s": 1},
        {"t": "Dull.", "s": 0},
        {"t": "Superb", "s": 1}
    ]"#;
    let p = write(&d, "reviews.json", json);
    let got = load_imdb(&p).unwrap();
    // "A fine film…" twice with label 1 → one copy; "Dull." twice with 0 → one copy;
    // "Mixed feelings" with labels 0 and 1 → both dropped.
    assert_eq!(
        got,
        vec![
            r("A fine film. Loved it.", 1),
            r("Dull.", 0),
            r("Terrible", 0),
            r("Superb", 1),
        ]
    );
}

#[test]
fn conflicting_triplicate_is_dropped_entirely() {
    let got = dedupe(vec![r("x", 1), r("y", 0), r("x", 1), r("x", 0)]);
    assert_eq!(got, vec![r("y", 0)]);
}

#[test]
fn bad_inputs_name_file_and_index() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "broken.json", r#"[{"t": "ok", "s": 1}, {"t": "x", "#);
    let err = load_imdb(&p).unwrap_err();
    assert!(matches!(err, DataError::BadJson { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.json"), "{err}");

    let p = write(&d, "obj.json", r#"{"t": "ok", "s": 1}"#);
    let err = load_imdb(&p).unwrap_err();
    assert!(err.to_string().contains("obj.json") && err.to_string().contains("not an array"));

    let cases = [
        (r#"[{"t": "ok", "s": 1}, {"t": "x", "s": 2}]"#, 1, "0 or 1"),
        (
            r#"[{"t": "ok", "s": 1}, {"t": "x", "s": "1"}]"#,
            1,
            "0 or 1",
        ),
        (
            r#"[{"t": "ok", "s": 1}, {"t": "x", "s": 0.5}]"#,
            1,
            "0 or 1",
        ),
        (r#"[{"s": 1}]"#, 0, "missing key \"t\""),
        (r#"[{"t": "a"}, {"t": "b"}]"#, 0, "missing key \"s\""),
        (r#"[{"t": 5, "s": 1}]"#, 0, "must be a string"),
        (
            r#"[{"t": "a", "s": 0}, {"t": "<br />  ", "s": 0}]"#,
            1,
            "empty",
        ),
        (
            r#"[{"t": "a", "s": 0}, {"t": "b", "s": 1}, 7]"#,
            2,
            "expected an object",
        ),
    ];
    for (json, index, needle) in cases {
        let p = write(&d, "bad_record.json", json);
        let err = load_imdb(&p).unwrap_err();
        match &err {
            DataError::BadRecord { path, index: i, .. } => {
                assert_eq!(path, &p);
                assert_eq!(*i, index, "{json}");
            }
            other => panic!("{json}: expected BadRecord, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("bad_record.json") && msg.contains(needle),
            "{msg}"
        );
    }

    let p = write(&d, "empty.json", "[]");
    let err = load_imdb(&p).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }) && err.to_string().contains("empty.json"));
    let p = write(
        &d,
        "all_conflicting.json",
        r#"[{"t": "a", "s": 0}, {"t": "a", "s": 1}]"#,
    );
    assert!(matches!(
        load_imdb(&p).unwrap_err(),
        DataError::Empty { .. }
    ));
    let err = load_imdb(d.path().join("missing.json")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("missing.json"));
}

fn synthetic() -> Vec<Review> {
    // 30 negatives, 20 positives, plus duplicates and one conflicting pair.
    let mut v: Vec<Review> = (0..30).map(|i| r(&format!("neg {i}"), 0)).collect();
    v.extend((0..20).map(|i| r(&format!("pos {i}"), 1)));
    v.push(r("neg 3", 0)); // same-label duplicate
    v.push(r("pos 7", 1));
    v.push(r("both", 0)); // conflicting
    v.push(r("both", 1));
    v
}

#[test]
fn split_is_balanced_disjoint_complete_and_seeded() {
    let (train, test) = split(synthetic(), 10, 7).unwrap();
    assert_eq!(test.len(), 10);
    assert_eq!(test.iter().filter(|r| r.label == 1).count(), 5);
    assert_eq!(train.len(), 50 - 10);
    let tr: HashSet<&str> = train.iter().map(|r| r.text.as_str()).collect();
    let te: HashSet<&str> = test.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(tr.len(), train.len(), "train has duplicate texts");
    assert_eq!(te.len(), test.len(), "test has duplicate texts");
    assert!(tr.is_disjoint(&te));
    assert!(!tr.contains("both") && !te.contains("both"));
    let all: HashSet<&str> = tr.union(&te).copied().collect();
    assert_eq!(all.len(), 50);
    for rv in train.iter().chain(&test) {
        let want = if rv.text.starts_with("pos") { 1 } else { 0 };
        assert_eq!(rv.label, want, "label travelled with its text");
    }

    let (train2, test2) = split(synthetic(), 10, 7).unwrap();
    assert_eq!((&train, &test), (&train2, &test2), "same seed, same split");
    let (_, test3) = split(synthetic(), 10, 8).unwrap();
    assert_ne!(test, test3, "another seed, another split");

    // Odd size: label 0 gets the extra one.
    let (_, test) = split(synthetic(), 7, 1).unwrap();
    assert_eq!(test.iter().filter(|r| r.label == 0).count(), 4);
}

#[test]
fn split_errors() {
    // 20 positives: a 42-review balanced test set needs 21.
    let err = split(synthetic(), 42, 0).unwrap_err();
    assert!(err.to_string().contains("label 1"), "{err}");
    let all_test = vec![r("a", 0), r("b", 1)];
    assert!(matches!(
        split(all_test, 2, 0).unwrap_err(),
        DataError::Split(_)
    ));
    assert!(matches!(
        split(vec![], 0, 0).unwrap_err(),
        DataError::Empty { .. }
    ));
    let err = split(vec![r("a", 0), r("b", 3)], 0, 0).unwrap_err();
    assert!(err.to_string().contains("got 3"), "{err}");
}

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
    let padding = |bs: &[lora_train::Batch]| -> usize {
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
    use lora_train::data::{truncate_tokens, Truncation};
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
    use lora_train::data::{make_batches, pad_batches_to_multiple};
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
