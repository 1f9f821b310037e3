//! Host allocator settings for training processes.
//!
//! A training step on the CPU backend allocates and frees the same tensor sizes every step. With
//! glibc's defaults, blocks above the dynamic mmap threshold come from fresh `mmap`s, which the
//! kernel zero-fills page by page, and freed heap tops go back to the system: in a profile of the
//! default CPU recipe, `clear_page_erms` alone took 8% of the samples. Keeping blocks up to
//! 32 MiB (glibc's largest fixed threshold) on the heap and not trimming it made the steps
//! faster (docs/benchmarks.md, "CPU training step").

/// Largest block served from the heap instead of its own `mmap`: glibc's upper bound for
/// `M_MMAP_THRESHOLD` on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`), bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory kept at the top of the heap before it is returned to the system: -1, never
/// (glibc's `mallopt(3)`). A step frees its activations at its end; with a 1 GiB threshold the
/// default CPU recipe returned ~0.8 GB to the system every step and faulted it back in, zeroed
/// page by page, in the next.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = -1;

/// Extra bytes requested from the system each time the heap grows, bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: i32 = 256 << 20;

/// The environment variables through which a user sets these parameters themselves.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const USER_SETTINGS: [&str; 4] = [
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
];

/// Sets glibc's `M_MMAP_THRESHOLD` (32 MiB), `M_TRIM_THRESHOLD` (-1: the heap is never
/// trimmed, so the process keeps its peak heap until it exits) and `M_TOP_PAD` (256 MiB) for this
/// process, unless the user set `MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_` or `GLIBC_TUNABLES`, which then decide. Call it
/// once at the start of a training process, before the first tensor. A no-op on other C
/// libraries and systems. Never fails: a value glibc refuses leaves its default.
pub fn tune_host_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if USER_SETTINGS.iter().any(|k| std::env::var_os(k).is_some()) {
            return;
        }
        // SAFETY: `mallopt` only changes allocator parameters; it is called before this
        // process's worker threads allocate, and glibc serialises it with the arena locks.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
        }
    }
}
