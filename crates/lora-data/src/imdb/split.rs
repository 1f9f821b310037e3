//! The seeded, label-balanced train/test split.

use super::error::DataError;
use super::load::{dedupe, Review};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Seeded, label-balanced train/test split. Returns `(train, test)`.
///
/// The input is first de-duplicated with [`dedupe`] (a no-op on
/// [`load_imdb`](crate::imdb::load_imdb)'s output), so every text occurs once and lands in
/// exactly one part. The test set holds `test_size / 2` reviews of label 1 and
/// `test_size - test_size / 2` of label 0, drawn from a per-label shuffle with
/// `ChaCha8Rng::seed_from_u64(seed)` (portable across platforms and rand versions); both parts
/// are then shuffled with the same generator.
///
/// Errors: [`DataError::Empty`] for no reviews; [`DataError::Split`] if a label has too few
/// reviews for its share of the test set, or if nothing would be left for training.
pub fn split(
    reviews: Vec<Review>,
    test_size: usize,
    seed: u64,
) -> Result<(Vec<Review>, Vec<Review>), DataError> {
    let reviews = dedupe(reviews);
    if reviews.is_empty() {
        return Err(DataError::Empty {
            what: "split input".into(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_label: [Vec<Review>; 2] = [Vec::new(), Vec::new()];
    for r in reviews {
        if r.label > 1 {
            return Err(DataError::Split(format!(
                "label must be 0 or 1, got {} for text {:?}",
                r.label,
                r.text.chars().take(60).collect::<String>()
            )));
        }
        by_label[r.label as usize].push(r);
    }
    let want = [test_size - test_size / 2, test_size / 2];
    for l in 0..2 {
        if by_label[l].len() < want[l] {
            return Err(DataError::Split(format!(
                "test_size {test_size} needs {} reviews of label {l}, only {} available",
                want[l],
                by_label[l].len()
            )));
        }
    }
    if by_label[0].len() + by_label[1].len() == test_size {
        return Err(DataError::Split(format!(
            "test_size {test_size} leaves no reviews for training"
        )));
    }
    let mut train = Vec::new();
    let mut test = Vec::with_capacity(test_size);
    for (l, mut group) in by_label.into_iter().enumerate() {
        group.shuffle(&mut rng);
        let rest = group.split_off(want[l]);
        test.extend(group);
        train.extend(rest);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    // By construction (distinct texts, disjoint index ranges) the parts share no text.
    debug_assert!({
        let t: HashSet<&str> = test.iter().map(|r| r.text.as_str()).collect();
        train.iter().all(|r| !t.contains(r.text.as_str()))
    });
    Ok((train, test))
}
