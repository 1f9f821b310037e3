//! The allocation check: a counting global allocator that records the largest single request
//! while an input runs, and stops the process before serving a request above the bound
//! [`limit_for`] (such a request is the failure being looked for, and serving it could exhaust
//! the machine; returning null would abort anyway, through `handle_alloc_error`).
//!
//! A binary or test that fuzzes declares it as its allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: lora_fuzz::CountingAlloc = lora_fuzz::CountingAlloc;
//! ```
//!
//! Without it, inputs still run and panics and hangs are still caught, but allocation sizes
//! are not checked ([`is_installed`] says which).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Fixed part of the bound on one allocation: 64 MiB.
pub const LIMIT_BASE: usize = 64 << 20;
/// Per-input-byte part of the bound: 64 bytes per byte of input.
pub const LIMIT_PER_BYTE: usize = 64;

/// The largest single allocation an input of `input_len` bytes may request:
/// `64 × input_len + 64 MiB` (a GGUF Q4_0 tensor dequantized to f32 takes 7.1× its bytes).
pub fn limit_for(input_len: usize) -> usize {
    input_len
        .saturating_mul(LIMIT_PER_BYTE)
        .saturating_add(LIMIT_BASE)
}

/// `usize::MAX` = not armed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INPUT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
/// Where the input is written when it requests too much (opened beforehand: no allocation
/// is possible at that point).
static CRASH_FILE: Mutex<Option<File>> = Mutex::new(None);
static TARGET: Mutex<&'static str> = Mutex::new("");

/// The counting allocator (forwards to the system allocator).
pub struct CountingAlloc;

#[inline]
fn check(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == usize::MAX {
        INSTALLED.store(true, Ordering::Relaxed);
        return;
    }
    PEAK.fetch_max(size, Ordering::Relaxed);
    if size > limit {
        oversize(size, limit);
    }
}

/// Reports an oversized request and stops the process; allocates nothing.
#[cold]
fn oversize(size: usize, limit: usize) -> ! {
    LIMIT.store(usize::MAX, Ordering::SeqCst);
    let mut msg = [0u8; 512];
    let mut w = &mut msg[..];
    let target = TARGET.try_lock().map(|t| *t).unwrap_or("?");
    let len = INPUT_LEN.load(Ordering::SeqCst);
    let _ = write!(
        w,
        "\nlora-fuzz: target `{target}` requested one allocation of {size} bytes, over the \
         bound {limit} (64 x {len} input bytes + 64 MiB); "
    );
    let saved = match CRASH_FILE.try_lock() {
        Ok(mut g) => match g.as_mut() {
            Some(f) => {
                let p = INPUT_PTR.load(Ordering::SeqCst);
                // SAFETY: the pointer and length were set from a live slice by `Armed::new`, and
                // the slice outlives the armed section this request comes from.
                let input = unsafe { std::slice::from_raw_parts(p, len) };
                f.write_all(input).is_ok()
            }
            None => false,
        },
        Err(_) => false,
    };
    let _ = w.write_all(if saved {
        b"the input is in the crash file set for this run\n"
    } else {
        b"no crash file was set\n"
    });
    let used = 512 - w.len();
    let _ = std::io::stderr().write_all(&msg[..used]);
    std::process::abort();
}

// SAFETY: forwards every call to `System` unchanged; `check` only reads and writes atomics
// (and on failure writes to already-open files and aborts).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// Whether [`CountingAlloc`] is the global allocator of this process (known after the first
/// allocation outside an armed section).
pub fn is_installed() -> bool {
    drop(Vec::<u8>::with_capacity(1));
    INSTALLED.load(Ordering::Relaxed)
}

/// Sets the file an oversized input is written to (created, truncated), and the target name
/// the message gives.
///
/// # Errors
/// The error of creating the file.
pub fn set_crash_file(path: &std::path::Path, target: &'static str) -> std::io::Result<()> {
    let f = File::create(path)?;
    *CRASH_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = target;
    Ok(())
}

/// Serializes armed sections: the limit and the peak are process-wide.
static ARM_LOCK: Mutex<()> = Mutex::new(());

/// While alive, allocations are checked against [`limit_for`] of `input` and the peak is
/// recorded. One at a time per process: a second `Armed::new` waits for the first to drop
/// (tests of one binary run on parallel threads).
pub struct Armed {
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl Armed {
    /// Arms the check for `input` (which must outlive the guard).
    pub fn new(input: &[u8]) -> Self {
        let guard = ARM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        INPUT_PTR.store(input.as_ptr() as *mut u8, Ordering::SeqCst);
        INPUT_LEN.store(input.len(), Ordering::SeqCst);
        PEAK.store(0, Ordering::SeqCst);
        LIMIT.store(limit_for(input.len()), Ordering::SeqCst);
        Armed {
            _one_at_a_time: guard,
        }
    }

    /// The largest single request since arming.
    pub fn peak(&self) -> usize {
        PEAK.load(Ordering::SeqCst)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        LIMIT.store(usize::MAX, Ordering::SeqCst);
        INPUT_PTR.store(std::ptr::null_mut(), Ordering::SeqCst);
        INPUT_LEN.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_64_per_byte_plus_64_mib() {
        assert_eq!(limit_for(0), 64 << 20);
        assert_eq!(limit_for(1000), 64_000 + (64 << 20));
        assert_eq!(limit_for(usize::MAX), usize::MAX);
    }
}
