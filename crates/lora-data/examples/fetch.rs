//! Fetches (or verifies) the real inputs into the cache and prints the IMDB review count after
//! cleaning and de-duplication: `cargo run --release -p lora-data --example fetch`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let imdb = lora_data::fetch_imdb()?;
    eprintln!(
        "fetch_imdb: {} in {:.1}s",
        imdb.display(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let reviews = lora_data::load_imdb(&imdb)?;
    let pos = reviews.iter().filter(|r| r.label == 1).count();
    eprintln!(
        "load_imdb: {} reviews after cleaning + dedupe ({} positive, {} negative) in {:.1}s",
        reviews.len(),
        pos,
        reviews.len() - pos,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let gguf = lora_data::fetch_smollm2()?;
    eprintln!(
        "fetch_smollm2: {} in {:.1}s",
        gguf.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
