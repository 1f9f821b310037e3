//! The bounded fuzz run of the test command: every target, `Target::bounded_execs` executions
//! from a fixed seed (so the inputs are the same on every machine; about 1.5 s each here),
//! under the counting allocator. Any panic, hang or oversized allocation fails the test (an
//! oversized one aborts the process with a message naming the target).

use lora_fuzz::{fuzz, FuzzOptions, TARGETS};
use std::time::Duration;

#[global_allocator]
static ALLOC: lora_fuzz::CountingAlloc = lora_fuzz::CountingAlloc;

#[test]
fn every_target_survives_a_bounded_run() {
    assert!(lora_fuzz::alloc::is_installed());
    let out = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for t in TARGETS {
        lora_fuzz::alloc::set_crash_file(&out.path().join(format!("{}.bin", t.name)), t.name)
            .unwrap();
        let opts = FuzzOptions {
            seed: 0x5EED,
            max_execs: Some(t.bounded_execs),
            max_time: None,
            timeout: Duration::from_secs(20),
            out_dir: None,
            ..FuzzOptions::default()
        };
        let r = fuzz(t, &opts);
        println!(
            "{:<18} seeds {:>3} execs {:>6} ({:>6.0}/s) corpus {:>4} signatures {:>4}",
            r.target,
            r.seeds,
            r.execs,
            r.execs_per_sec(),
            r.corpus,
            r.signatures
        );
        assert!(r.seeds > 0, "target {} found no seeds", t.name);
        assert_eq!(r.execs, t.bounded_execs, "target {} stopped early", t.name);
        for f in r.failures {
            problems.push(format!("{}: {} {}", t.name, f.kind, f.message));
        }
    }
    assert!(problems.is_empty(), "failures:\n{}", problems.join("\n"));
}
