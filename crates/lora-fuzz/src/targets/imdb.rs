//! The IMDB reviews JSON (`lora_data::parse_reviews`, then `dedupe`).

use super::{text, Target};
use crate::corpus::{files_under, seed_dir};
use std::path::Path;

fn run(b: &[u8]) -> Result<(), String> {
    let r =
        lora_data::imdb::parse_reviews(b, Path::new("<fuzz input>/reviews.json")).map_err(text)?;
    lora_data::imdb::dedupe(r);
    Ok(())
}

fn seeds() -> Vec<Vec<u8>> {
    files_under(&seed_dir("imdb"), &|n| n.ends_with(".json"))
}

/// The IMDB JSON.
pub const IMDB: Target = Target {
    name: "imdb",
    about: "lora_data::parse_reviews and dedupe (the reviews.json reader)",
    run,
    seeds,
    bounded_execs: 60_000,
};
