//! IMDB loading / cleaning / dedupe / split on small synthetic inputs.

mod common;

use common::{r, write};
use lora_data::imdb::{clean_text, dedupe, load_imdb, split, DataError, Review};
use std::collections::HashSet;

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
