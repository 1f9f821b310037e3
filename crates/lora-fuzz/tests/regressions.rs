//! Every input a fuzz run ever failed on (`tests/fixtures/fuzz/<target>/`) is replayed and
//! must now return (`Ok` or a clear `Err`), within the time and allocation bounds.

use lora_fuzz::{replay, Outcome, TARGETS};
use std::time::Duration;

#[global_allocator]
static ALLOC: lora_fuzz::CountingAlloc = lora_fuzz::CountingAlloc;

#[test]
fn saved_failures_now_return() {
    let mut bad = Vec::new();
    let mut n = 0;
    for t in TARGETS {
        for (path, input) in lora_fuzz::corpus::regressions(t.name) {
            n += 1;
            match replay(t, input, Duration::from_secs(20)) {
                Outcome::Returned { .. } => {}
                o => bad.push(format!("{}: {o:?}", path.display())),
            }
        }
    }
    println!("{n} regression inputs replayed");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
