//! Progress on stderr, the one place that chooses between an indicatif bar (stderr is a
//! terminal) and periodic log lines (it is not: a log file, a CI job), for the training loop
//! and for the long phases around it (loading, evaluation, merging).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A phase's progress: a bar (or, without a known total, a spinner) when stderr is a
/// terminal, otherwise a line `"<label> <done>/<total> after <s>s"` about every 10% of the
/// phase (at least 5 s apart) and at least every 30 s while positions advance.
///
/// Layer code never makes one: the caller that runs a phase does, and hands the phase a way to
/// report (`inc`) where the phase has steps.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    label: String,
    total: Option<u64>,
    show: bool,
    lines: bool,
    every: u64,
    min_gap: Duration,
    next: u64,
    start: Instant,
    last_line: Option<Instant>,
    message: String,
}

impl Progress {
    /// A phase of `total` units (batches, tensors) named `label`, e.g. `"evaluation batch"`.
    pub fn new(label: &str, total: usize) -> Self {
        let style = "{msg_label} [{bar:30}] {pos}/{len} [{elapsed_precise}<{eta_precise}]";
        Self::build(
            label,
            Some(total as u64),
            true,
            10,
            Duration::from_secs(5),
            style,
        )
    }

    /// A phase of unknown length named `label` (e.g. `"loading model.gguf"`): a spinner with
    /// the elapsed time on a terminal; otherwise a line `"<label> ..."` when it starts.
    pub fn spinner(label: &str) -> Self {
        let p = Self::build(
            label,
            None,
            true,
            1,
            Duration::ZERO,
            "{spinner} {msg_label} [{elapsed_precise}]",
        );
        if p.lines {
            eprintln!("{label} ...");
        } else {
            p.bar.enable_steady_tick(Duration::from_millis(200));
        }
        p
    }

    /// The training loop's bar of `steps` steps (`show` false: silent), with the step's
    /// message; without a terminal a line at the first update, every 5% and every 30 s.
    pub(crate) fn steps(steps: usize, show: bool) -> Self {
        let style = "{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_msg}";
        Self::build("step", Some(steps as u64), show, 20, Duration::ZERO, style)
    }

    fn build(
        label: &str,
        total: Option<u64>,
        show: bool,
        lines_per_phase: u64,
        min_gap: Duration,
        template: &str,
    ) -> Self {
        let lines = show && !std::io::stderr().is_terminal();
        let bar = if !show || lines {
            ProgressBar::hidden()
        } else {
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::new_spinner(),
            };
            let template = template.replace("{msg_label}", label);
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        };
        let every = total.map_or(1, |n| (n / lines_per_phase).max(1));
        Self {
            bar,
            label: label.to_string(),
            total,
            show,
            lines,
            every,
            min_gap,
            next: 0,
            start: Instant::now(),
            last_line: None,
            message: String::new(),
        }
    }

    /// Starts the count at `pos` without a line (a resumed run's first step − 1).
    pub fn start_at(&mut self, pos: usize) {
        self.bar.set_position(pos as u64);
        self.next = pos as u64 + 1;
    }

    /// The text after the counts (the loop's loss and speed).
    pub fn set_message(&mut self, message: String) {
        self.bar.set_message(message.clone());
        self.message = message;
    }

    /// `n` more units done.
    pub fn inc(&mut self, n: usize) {
        let pos = self.bar.position() + n as u64;
        self.set_position(pos as usize);
    }

    /// `pos` units done; without a terminal, prints the line when it is due.
    pub fn set_position(&mut self, pos: usize) {
        let pos = pos as u64;
        self.bar.set_position(pos);
        if !self.lines {
            return;
        }
        let since = self.last_line.map(|t| t.elapsed());
        let at_mark = pos >= self.next || self.total == Some(pos);
        let due = match since {
            None => at_mark && self.start.elapsed() >= self.min_gap,
            Some(gap) => (at_mark && gap >= self.min_gap) || gap >= Duration::from_secs(30),
        };
        if due {
            self.last_line = Some(Instant::now());
            self.next = (pos / self.every + 1) * self.every;
            let total = self.total.map_or(String::new(), |n| format!("/{n}"));
            let tail = if self.message.is_empty() {
                format!(" after {:.0}s", self.start.elapsed().as_secs_f64())
            } else {
                format!(": {}", self.message)
            };
            eprintln!("{} {pos}{total}{tail}", self.label);
        }
    }

    /// Prints `line` on stderr above the bar (nothing when not shown).
    pub fn println(&self, line: &str) {
        if self.show {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    /// Runs `f` with the bar cleared from the terminal, so that `f` may draw its own.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Ends the phase: the bar is cleared, and nothing more is printed (the caller says what
    /// the phase gave: the accuracy, the model loaded).
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
