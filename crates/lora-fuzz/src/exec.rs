//! Running one input: on a persistent worker thread, under `catch_unwind` with a silent panic
//! hook, with the allocation check armed, and with a time limit (a hang is an input whose
//! result does not come back within it).

use crate::alloc::Armed;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Once};
use std::time::Duration;

/// A fuzz target: runs the library's parsing path on the bytes. `Ok`/`Err` are both fine (the
/// error text only guides the engine towards inputs that reach new errors); a panic, a hang or
/// an oversized allocation is a failure.
pub type TargetFn = fn(&[u8]) -> Result<(), String>;

/// What one input did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Returned (`error`: the error text, `None` for `Ok`); `peak`: its largest single
    /// allocation in bytes (0 when [`crate::CountingAlloc`] is not installed).
    Returned {
        /// The error text, `None` for `Ok`.
        error: Option<String>,
        /// Largest single allocation request, bytes.
        peak: usize,
    },
    /// Panicked with this message (and location).
    Panicked(String),
    /// Still running after the time limit.
    Hung,
}

const WORKER_NAME: &str = "lora-fuzz-worker";

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records panics of worker threads silently and leaves
/// every other thread's panics to the previous hook.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(WORKER_NAME) {
                return previous(info);
            }
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
        }));
    });
}

type Reply = (Result<Result<(), String>, String>, usize);

/// A worker thread running one target's inputs one at a time.
pub struct Executor {
    tx: Sender<Arc<Vec<u8>>>,
    rx: Receiver<Reply>,
    timeout: Duration,
    hung: bool,
}

impl Executor {
    /// A worker for `target`, giving each input `timeout` to return.
    ///
    /// # Panics
    /// If the worker thread cannot be spawned.
    pub fn new(target: TargetFn, timeout: Duration) -> Self {
        install_hook();
        let (tx, worker_rx) = channel::<Arc<Vec<u8>>>();
        let (worker_tx, rx) = channel::<Reply>();
        std::thread::Builder::new()
            .name(WORKER_NAME.into())
            // Deeply nested JSON and recursive parsers need room before their own limits hit.
            .stack_size(64 << 20)
            .spawn(move || {
                while let Ok(input) = worker_rx.recv() {
                    let armed = Armed::new(&input);
                    let r = catch_unwind(AssertUnwindSafe(|| target(&input)));
                    let peak = armed.peak();
                    drop(armed);
                    let r = r.map_err(|_| {
                        LAST_PANIC
                            .with(|p| p.borrow_mut().take())
                            .unwrap_or_else(|| "panic".into())
                    });
                    if worker_tx.send((r, peak)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the fuzz worker thread");
        Self {
            tx,
            rx,
            timeout,
            hung: false,
        }
    }

    /// Runs `input`. After [`Outcome::Hung`] the worker is abandoned and every later call
    /// returns `Hung` too (start a new executor).
    pub fn run(&mut self, input: Arc<Vec<u8>>) -> Outcome {
        if self.hung || self.tx.send(input).is_err() {
            return Outcome::Hung;
        }
        match self.rx.recv_timeout(self.timeout) {
            Ok((Ok(r), peak)) => Outcome::Returned {
                error: r.err(),
                peak,
            },
            Ok((Err(msg), _)) => Outcome::Panicked(msg),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                self.hung = true;
                Outcome::Hung
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(b: &[u8]) -> Result<(), String> {
        if b.first() == Some(&1) {
            let v: Vec<u8> = Vec::new();
            let _ = v[b.len()];
        }
        Err(format!("len {}", b.len()))
    }

    fn sleeps(b: &[u8]) -> Result<(), String> {
        if b.first() == Some(&1) {
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok(())
    }

    #[test]
    fn catches_panics_and_keeps_going() {
        // Longer than the hang below holds the process-wide allocation check (tests run in
        // parallel).
        let mut e = Executor::new(panics, Duration::from_secs(30));
        match e.run(Arc::new(vec![1, 2])) {
            Outcome::Panicked(m) => assert!(m.contains("index out of bounds"), "{m}"),
            o => panic!("expected a panic, got {o:?}"),
        }
        match e.run(Arc::new(vec![0, 2, 3])) {
            Outcome::Returned { error, .. } => assert_eq!(error.as_deref(), Some("len 3")),
            o => panic!("expected a return, got {o:?}"),
        }
    }

    #[test]
    fn reports_a_hang() {
        let mut e = Executor::new(sleeps, Duration::from_secs(1));
        assert!(matches!(
            e.run(Arc::new(vec![0])),
            Outcome::Returned { error: None, .. }
        ));
        assert_eq!(e.run(Arc::new(vec![1])), Outcome::Hung);
        assert_eq!(e.run(Arc::new(vec![0])), Outcome::Hung);
    }
}
