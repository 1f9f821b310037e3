//! The fuzz loop of one target: run the seeds, then mutate corpus entries until the execution
//! or time budget is spent. An input whose error text (numbers and quoted names removed) has
//! not been seen before joins the corpus, so the search moves towards inputs that get further
//! into the parser. Every failure (panic, hang) is kept once per distinct message and written
//! to the output directory; a hang ends the run (its worker cannot be stopped).

use crate::exec::{Executor, Outcome};
use crate::mutate::mutate;
use crate::rng::Rng;
use crate::targets::Target;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long and how hard to fuzz.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Seed of the random mutations (the run is reproducible from it and the budget in
    /// executions).
    pub seed: u64,
    /// Stop after this many executions (seeds included).
    pub max_execs: Option<u64>,
    /// Stop after this long.
    pub max_time: Option<Duration>,
    /// Time limit of one input; longer is a hang.
    pub timeout: Duration,
    /// Where failing inputs are written (`<dir>/<target>/<kind>-<hash>.bin`); none if `None`.
    pub out_dir: Option<PathBuf>,
    /// Most inputs kept in the corpus (seeds included).
    pub max_corpus: usize,
    /// Write inputs whose largest allocation exceeds this many bytes (within the bound, so not
    /// failures) to the output directory as `alloc-<hash>.bin`, for a look.
    pub report_alloc: Option<usize>,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            max_execs: None,
            max_time: Some(Duration::from_secs(10)),
            timeout: Duration::from_secs(10),
            out_dir: None,
            max_corpus: 512,
            report_alloc: None,
        }
    }
}

/// One failing input.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `"panic"` or `"hang"`.
    pub kind: &'static str,
    /// The panic message and location, or the time limit for a hang.
    pub message: String,
    /// The input.
    pub input: Vec<u8>,
    /// Where it was written, if an output directory was given.
    pub file: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    /// The target's name.
    pub target: &'static str,
    /// Seeds it started from.
    pub seeds: usize,
    /// Executions (seeds included).
    pub execs: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Corpus size at the end.
    pub corpus: usize,
    /// Distinct error signatures seen.
    pub signatures: usize,
    /// Inputs that returned `Ok` (the rest returned an error or failed).
    pub oks: u64,
    /// Largest single allocation request of any input, bytes (0 without the counting
    /// allocator).
    pub peak_alloc: usize,
    /// Failures, one per distinct message.
    pub failures: Vec<Failure>,
}

impl FuzzReport {
    /// Executions per second.
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The error text with digits and quoted parts removed, hashed: inputs that differ only in
/// numbers or names share it.
pub fn signature(error: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let Some(e) = error else {
        0u8.hash(&mut h);
        return h.finish();
    };
    let mut quoted: Option<char> = None;
    let mut kept = String::new();
    for c in e.chars() {
        match quoted {
            Some(q) if c == q => quoted = None,
            Some(_) => {}
            None if matches!(c, '`' | '"' | '\'') => quoted = Some(c),
            None if c.is_ascii_digit() => {}
            None => kept.push(c),
        }
        if kept.len() >= 120 {
            break;
        }
    }
    kept.hash(&mut h);
    h.finish()
}

/// Fuzzes `target` with `opts`.
pub fn fuzz(target: &Target, opts: &FuzzOptions) -> FuzzReport {
    let start = Instant::now();
    let seeds = (target.seeds)();
    let mut corpus: Vec<Vec<u8>> = if seeds.is_empty() {
        vec![Vec::new()]
    } else {
        seeds.clone()
    };
    let n_seeds = corpus.len();
    let mut rng = Rng::new(opts.seed);
    let mut exec = Executor::new(target.run, opts.timeout);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut failure_keys: HashSet<u64> = HashSet::new();
    let mut peak_alloc = 0usize;
    let mut execs = 0u64;
    let mut oks = 0u64;
    let done = |execs: u64| {
        opts.max_execs.is_some_and(|m| execs >= m)
            || opts.max_time.is_some_and(|t| start.elapsed() >= t)
    };
    let mut i = 0usize;
    while !done(execs) {
        let input = if i < n_seeds {
            corpus[i].clone()
        } else {
            // Half the time a seed: entries the corpus gained are mostly inputs that already
            // fail early, and mutating only those would stay near the header.
            let from = if rng.one_in(2) { n_seeds } else { corpus.len() };
            let parent = &corpus[rng.below(from)];
            let max_len = (parent.len() * 2).clamp(4096, 4 << 20);
            mutate(parent, &corpus, &mut rng, max_len)
        };
        i += 1;
        execs += 1;
        let input = Arc::new(input);
        match exec.run(input.clone()) {
            Outcome::Returned { error, peak } => {
                if opts
                    .report_alloc
                    .is_some_and(|r| peak > r && peak > peak_alloc)
                {
                    if let Some(d) = &opts.out_dir {
                        let _ = write_failure(d, target.name, "alloc", &input);
                    }
                }
                peak_alloc = peak_alloc.max(peak);
                oks += u64::from(error.is_none());
                if seen.insert(signature(error.as_deref())) && i > n_seeds {
                    if corpus.len() < opts.max_corpus {
                        corpus.push(input.to_vec());
                    } else {
                        let j = n_seeds + rng.below(corpus.len() - n_seeds);
                        corpus[j] = input.to_vec();
                    }
                }
            }
            Outcome::Panicked(message) => record(
                target,
                opts,
                "panic",
                message,
                &input,
                &mut failures,
                &mut failure_keys,
            ),
            Outcome::Hung => {
                let message = format!("no result within {:?}", opts.timeout);
                record(
                    target,
                    opts,
                    "hang",
                    message,
                    &input,
                    &mut failures,
                    &mut failure_keys,
                );
                break;
            }
        }
    }
    FuzzReport {
        target: target.name,
        seeds: n_seeds,
        execs,
        elapsed: start.elapsed(),
        corpus: corpus.len(),
        signatures: seen.len(),
        oks,
        peak_alloc,
        failures,
    }
}

fn record(
    target: &Target,
    opts: &FuzzOptions,
    kind: &'static str,
    message: String,
    input: &[u8],
    failures: &mut Vec<Failure>,
    keys: &mut HashSet<u64>,
) {
    // One failure per panic location (the message's numbers and names vary with the input).
    if !keys.insert(signature(Some(&format!("{kind} {message}")))) {
        return;
    }
    let file = opts
        .out_dir
        .as_deref()
        .and_then(|d| write_failure(d, target.name, kind, input).ok());
    failures.push(Failure {
        kind,
        message,
        input: input.to_vec(),
        file,
    });
}

/// Writes a failing input to `<dir>/<target>/<kind>-<hash>.bin`.
///
/// # Errors
/// The I/O error.
pub fn write_failure(
    dir: &Path,
    target: &str,
    kind: &str,
    input: &[u8],
) -> std::io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    let p = d.join(format!("{kind}-{:016x}.bin", h.finish()));
    std::fs::write(&p, input)?;
    Ok(p)
}

/// Runs one input of `target` once (the regression tests replay saved failures with it).
pub fn replay(target: &Target, input: Vec<u8>, timeout: Duration) -> Outcome {
    Executor::new(target.run, timeout).run(Arc::new(input))
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signature_ignores_numbers_and_names() {
        let a = signature(Some("tensor `a` needs 40 bytes at offset 8"));
        let b = signature(Some("tensor `blk.0` needs 7 bytes at offset 123"));
        let c = signature(Some("tensor `a` has 5 dimensions"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(signature(None), a);
    }
}
