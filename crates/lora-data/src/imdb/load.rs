//! Loading `reviews.json`: parsing, cleaning and de-duplication.

use super::error::DataError;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// One labelled review after cleaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Review {
    /// Cleaned text (HTML line breaks replaced by spaces, whitespace collapsed, trimmed).
    pub text: String,
    /// Label: 0 = negative, 1 = positive.
    pub label: u8,
}

/// Cleans one review text: every `<br />`, `<br/>` and `<br>` (any letter case) becomes a
/// space, then runs of whitespace collapse to one space and the ends are trimmed.
pub fn clean_text(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &bytes[i..];
            let tag_len = [&b"<br />"[..], b"<br/>", b"<br>"]
                .iter()
                .find(|t| rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t))
                .map(|t| t.len());
            if let Some(n) = tag_len {
                s.push_str(&text[last..i]);
                s.push(' ');
                i += n;
                last = i;
                continue;
            }
        }
        i += 1;
    }
    s.push_str(&text[last..]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a JSON array of `{"t": text, "s": 0|1}` into [`Review`]s with cleaned text, in file
/// order, without de-duplication. `path` is only used in error messages.
///
/// Errors: [`DataError::BadJson`] (not JSON / not an array), [`DataError::BadRecord`] naming
/// the index (not an object, `t` missing or not a string, text empty after cleaning, `s`
/// missing or not the integer 0 or 1).
pub fn parse_reviews(bytes: &[u8], path: &Path) -> Result<Vec<Review>, DataError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DataError::BadJson {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let serde_json::Value::Array(items) = value else {
        return Err(DataError::BadJson {
            path: path.to_path_buf(),
            message: "top level is not an array".into(),
        });
    };
    let bad = |index: usize, message: String| DataError::BadRecord {
        path: path.to_path_buf(),
        index,
        message,
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let serde_json::Value::Object(obj) = item else {
            return Err(bad(index, format!("expected an object, got {item}")));
        };
        let text = match obj.get("t") {
            Some(serde_json::Value::String(t)) => clean_text(t),
            Some(other) => return Err(bad(index, format!("\"t\" must be a string, got {other}"))),
            None => return Err(bad(index, "missing key \"t\"".into())),
        };
        if text.is_empty() {
            return Err(bad(index, "text \"t\" is empty after cleaning".into()));
        }
        let label = match obj.get("s") {
            Some(v) => match v.as_u64() {
                Some(0) => 0u8,
                Some(1) => 1u8,
                _ => return Err(bad(index, format!("label \"s\" must be 0 or 1, got {v}"))),
            },
            None => return Err(bad(index, "missing key \"s\"".into())),
        };
        out.push(Review { text, label });
    }
    Ok(out)
}

/// De-duplicates reviews by (cleaned) text, keeping first-occurrence order: a text that occurs
/// with both labels is dropped entirely (all its copies); otherwise one copy is kept.
pub fn dedupe(reviews: Vec<Review>) -> Vec<Review> {
    // text -> (label, conflicting)
    let mut seen: HashMap<&str, (u8, bool)> = HashMap::with_capacity(reviews.len());
    for r in &reviews {
        seen.entry(r.text.as_str())
            .and_modify(|(l, conflict)| *conflict |= *l != r.label)
            .or_insert((r.label, false));
    }
    let drop: HashSet<String> = seen
        .iter()
        .filter(|(_, (_, c))| *c)
        .map(|(t, _)| t.to_string())
        .collect();
    drop_seen(reviews, &drop)
}

fn drop_seen(reviews: Vec<Review>, conflicting: &HashSet<String>) -> Vec<Review> {
    let mut kept: HashSet<String> = HashSet::with_capacity(reviews.len());
    let mut out = Vec::with_capacity(reviews.len());
    for r in reviews {
        if conflicting.contains(&r.text) || kept.contains(&r.text) {
            continue;
        }
        kept.insert(r.text.clone());
        out.push(r);
    }
    out
}

/// Loads `reviews.json`: parses ([`parse_reviews`]), cleans ([`clean_text`]) and
/// de-duplicates ([`dedupe`]). For the real file: 50,000 records → 49,578 reviews
/// (24,882 positive; no conflicting labels; cleaning merges 4 near-duplicates).
///
/// Errors: [`DataError::Io`], [`DataError::BadJson`], [`DataError::BadRecord`] (naming the
/// file and index), [`DataError::Empty`] if nothing is left.
pub fn load_imdb(path: impl AsRef<Path>) -> Result<Vec<Review>, DataError> {
    let path = path.as_ref();
    let bytes = lora_io::read_regular_file(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reviews = dedupe(parse_reviews(&bytes, path)?);
    if reviews.is_empty() {
        return Err(DataError::Empty {
            what: path.display().to_string(),
        });
    }
    Ok(reviews)
}
