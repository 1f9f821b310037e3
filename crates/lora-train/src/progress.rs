//! The progress bar of the loop.

use indicatif::{ProgressBar, ProgressStyle};

/// An indicatif bar on stderr of `steps` steps showing step, elapsed/eta and a message, or a
/// hidden bar when `show` is false.
pub(crate) fn progress_bar(steps: usize, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(steps as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}
