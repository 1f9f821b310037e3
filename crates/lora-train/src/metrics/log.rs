//! [`MetricsLog`]: `metrics.jsonl` as it happens, and `loss.png` drawn from it.

use super::observer::TrainObserver;
use super::record::{EvalRecord, MetricsRecord, StepRecord};
use crate::error::TrainError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metrics file a run writes into its output folder.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The figure a run writes beside [`METRICS_FILE`] (with the `plot` feature).
pub const LOSS_PLOT_FILE: &str = "loss.png";

/// The run's metrics: every record in memory (for the figure) and in a JSON-lines file, one
/// object per line, appended as it happens.
///
/// Each line goes out in one `write` on a file opened for appending, with no buffer in
/// between, so `tail -f metrics.jsonl` follows the run and a crash loses at most the line being
/// written. This is the one file of the workspace not written through `lora_io::atomic_write`:
/// rewriting the whole file atomically for every line would cost time quadratic in the steps,
/// and a half-written last line is all an append can leave. The file is rewritten atomically
/// only where a prefix is kept: when a fresh run starts it (empty) and when a resumed run
/// drops the records after its checkpoint's step.
///
/// As a [`TrainObserver`] it appends the loop's step and evaluation records and redraws
/// `loss.png` after each checkpoint; the caller adds evaluations outside the loop with
/// [`record_eval`](Self::record_eval) and draws the final figure with
/// [`write_plot`](Self::write_plot).
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    plot: Option<PathBuf>,
    records: Vec<MetricsRecord>,
    /// The lines of a resumed file, until [`TrainObserver::on_start`] keeps their prefix.
    resumed: Option<Vec<String>>,
    /// Records added before a resumed run's start, written after the kept prefix.
    pending: Vec<MetricsRecord>,
    file: Option<File>,
}

impl MetricsLog {
    /// A log of a run starting at step 1: `path` is (re)written empty now, atomically; the
    /// figure goes to `plot` when given.
    ///
    /// # Errors
    /// [`TrainError::Metrics`] naming the file that cannot be written or opened.
    pub fn create(path: &Path, plot: Option<PathBuf>) -> Result<Self, TrainError> {
        lora_io::atomic_write(path, b"").map_err(|e| fail(path, e.to_string()))?;
        let mut log = Self::new(path, plot);
        log.file = Some(open_append(path)?);
        Ok(log)
    }

    /// A log of a resumed run: the records of `path` (none if it does not exist) are read
    /// now; when the loop starts ([`TrainObserver::on_start`]) those of the steps it will run
    /// again are dropped (the kept prefix rewritten atomically) and new records are appended,
    /// so the file ends as an uninterrupted run's would, timings apart. (Resuming from the
    /// last step's checkpoint repeats the final evaluation's record.) A last line without its
    /// newline, cut short by a crash, is dropped: it was written after the last checkpoint,
    /// whose records all precede it.
    ///
    /// # Errors
    /// [`TrainError::Metrics`]: the file cannot be read, or a complete line is not a record
    /// (naming the line).
    pub fn resume(path: &Path, plot: Option<PathBuf>) -> Result<Self, TrainError> {
        let mut log = Self::new(path, plot);
        let text = if path.exists() {
            lora_io::read_regular_to_string(path).map_err(|e| fail(path, e.to_string()))?
        } else {
            String::new()
        };
        // Only whole lines: a crash while appending leaves the last one without its newline.
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let mut lines = Vec::new();
        for (i, line) in whole.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec = MetricsRecord::from_json_line(line)
                .map_err(|e| fail(path, format!("line {}: {e}", i + 1)))?;
            log.records.push(rec);
            lines.push(line.to_string());
        }
        log.resumed = Some(lines);
        Ok(log)
    }

    /// [`create`](Self::create) or [`resume`](Self::resume) of `<dir>/metrics.jsonl`, with
    /// the figure `<dir>/loss.png` when the `plot` feature is on.
    ///
    /// # Errors
    /// Theirs.
    pub fn in_dir(dir: &Path, resume: bool) -> Result<Self, TrainError> {
        let path = dir.join(METRICS_FILE);
        let plot = cfg!(feature = "plot").then(|| dir.join(LOSS_PLOT_FILE));
        if resume {
            Self::resume(&path, plot)
        } else {
            Self::create(&path, plot)
        }
    }

    fn new(path: &Path, plot: Option<PathBuf>) -> Self {
        Self {
            path: path.to_path_buf(),
            plot,
            records: Vec::new(),
            resumed: None,
            pending: Vec::new(),
            file: None,
        }
    }

    /// The JSON-lines file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The figure [`write_plot`](Self::write_plot) draws: `None` without one given or
    /// without the `plot` feature.
    pub fn plot_path(&self) -> Option<&Path> {
        self.plot.as_deref().filter(|_| cfg!(feature = "plot"))
    }

    /// Every record of the run so far (a resumed run's kept ones included), in file order.
    pub fn records(&self) -> &[MetricsRecord] {
        &self.records
    }

    /// Appends an evaluation made outside the loop (before training at step 0, after it at
    /// the last step).
    ///
    /// # Errors
    /// [`TrainError::Metrics`] naming the file that cannot be written.
    pub fn record_eval(&mut self, record: EvalRecord) -> Result<(), TrainError> {
        self.append(MetricsRecord::Eval(record))
    }

    /// Draws [`records`](Self::records) into the figure file (atomically; see
    /// [`plot_metrics`](crate::plot_metrics)); nothing without a figure path or without the
    /// `plot` feature.
    ///
    /// # Errors
    /// [`TrainError::Metrics`] naming the figure that cannot be drawn or written.
    pub fn write_plot(&self) -> Result<(), TrainError> {
        #[cfg(feature = "plot")]
        if let Some(png) = &self.plot {
            let bytes = super::plot::plot_metrics(&self.records, super::plot::LOSS_PLOT_SIZE)
                .map_err(|e| fail(png, e))?;
            lora_io::atomic_write(png, &bytes).map_err(|e| fail(png, e.to_string()))?;
        }
        Ok(())
    }

    fn append(&mut self, record: MetricsRecord) -> Result<(), TrainError> {
        let Some(file) = self.file.as_mut() else {
            self.pending.push(record);
            return Ok(());
        };
        let line = format!("{}\n", record.to_json_line());
        file.write_all(line.as_bytes())
            .map_err(|e| fail(&self.path, e.to_string()))?;
        self.records.push(record);
        Ok(())
    }
}

impl TrainObserver for MetricsLog {
    fn on_start(&mut self, first_step: usize) -> Result<(), TrainError> {
        if let Some(lines) = self.resumed.take() {
            let keep = self
                .records
                .iter()
                .take_while(|r| r.step() < first_step)
                .count();
            self.records.truncate(keep);
            let text: String = lines[..keep].iter().map(|l| format!("{l}\n")).collect();
            lora_io::atomic_write(&self.path, text.as_bytes())
                .map_err(|e| fail(&self.path, e.to_string()))?;
            self.file = Some(open_append(&self.path)?);
            for r in std::mem::take(&mut self.pending) {
                self.append(r)?;
            }
        }
        Ok(())
    }

    fn on_step(&mut self, record: &StepRecord) -> Result<(), TrainError> {
        self.append(MetricsRecord::Train(record.clone()))
    }

    fn on_eval(&mut self, record: &EvalRecord) -> Result<(), TrainError> {
        self.append(MetricsRecord::Eval(record.clone()))
    }

    fn on_checkpoint(&mut self, _step: usize, _dir: &Path) -> Result<(), TrainError> {
        self.write_plot()
    }
}

/// `path` opened for appending.
fn open_append(path: &Path) -> Result<File, TrainError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| fail(path, e.to_string()))
}

fn fail(path: &Path, message: String) -> TrainError {
    TrainError::Metrics {
        path: path.to_path_buf(),
        message,
    }
}
