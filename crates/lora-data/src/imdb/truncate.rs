//! Truncation of too-long token sequences.

/// Which tokens of a too-long sequence [`truncate_tokens`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The first `keep` tokens (transformers' default `truncation_side="right"`).
    Head,
    /// The last `keep` tokens (`truncation_side="left"`).
    Tail,
    /// The first `keep / 4` tokens and the last `keep − keep / 4`: Sun et al. 2019, "How to
    /// Fine-Tune BERT for Text Classification?" §5.3.1 (head + tail was best on IMDB).
    HeadTail,
}

/// `ids` cut to at most `keep` tokens per `how`; shorter sequences are returned unchanged.
pub fn truncate_tokens(ids: &[u32], keep: usize, how: Truncation) -> Vec<u32> {
    if ids.len() <= keep {
        return ids.to_vec();
    }
    match how {
        Truncation::Head => ids[..keep].to_vec(),
        Truncation::Tail => ids[ids.len() - keep..].to_vec(),
        Truncation::HeadTail => {
            let head = keep / 4;
            let mut v = ids[..head].to_vec();
            v.extend_from_slice(&ids[ids.len() - (keep - head)..]);
            v
        }
    }
}
