//! The measurements, one file per row group, and what they share: the inits, the child
//! program, the trial order and the bookkeeping of samples and failures.

pub mod escalation;
pub mod escalation_scale;
pub mod footprint;
pub mod idle;
pub mod output;
pub mod reaping;
pub mod services;
pub mod signals;
pub mod startup;

use crate::cli::Options;
use crate::error::Error;
use crate::inits::Init;
use crate::report::{Cell, Row};
use std::ffi::OsString;
use std::path::PathBuf;

/// A row group's measurement.
pub type Measure = fn(&mut Bench) -> Vec<Row>;

/// The row groups (`--rows` names), in the order the table prints them.
pub const GROUPS: [(&str, Measure); 9] = [
    ("size", footprint::measure),
    ("idle", idle::measure),
    ("signals", signals::measure),
    ("reaping", reaping::measure),
    ("startup", startup::measure),
    ("escalation", escalation::measure),
    ("escalation-scale", escalation_scale::measure),
    ("output", output::measure),
    ("services", services::measure),
];

/// Everything a measurement needs, and the notes it leaves for the report.
pub struct Bench {
    /// The inits under test, in column order.
    pub inits: Vec<Init>,
    /// The `stamp-child` program.
    pub stamp_child: PathBuf,
    /// Where each init's stderr is written (one file per init, truncated each trial).
    pub log_dir: PathBuf,
    /// The options in force.
    pub options: Options,
    /// Failures and remarks, printed under the table.
    pub notes: Vec<String>,
    /// Whether any measurement failed (the stderr logs are then kept).
    pub any_failed: bool,
    /// Every sample, as CSV lines, for `--samples`.
    pub samples_csv: String,
}

impl Bench {
    /// The path of the grace build under test, if it is benched: the rows only grace has run that one.
    pub fn current_grace(&self) -> Option<PathBuf> {
        self.inits
            .iter()
            .find(|init| init.is_current_grace())
            .map(|init| init.path.clone())
    }

    /// The command line of `stamp-child` in the given mode.
    pub fn child(&self, mode: &[&str]) -> Vec<OsString> {
        let mut argv = vec![self.stamp_child.clone().into_os_string()];
        argv.extend(mode.iter().map(OsString::from));
        argv
    }

    /// The file that takes `init`'s stderr.
    pub fn log_path(&self, init: &Init) -> PathBuf {
        self.log_dir.join(format!("{}.stderr", init.name))
    }

    /// The order of the inits in trial `trial`: round-robin, rotated by one each trial, so
    /// that no init always runs first (after an idle pause) or last.
    pub fn order(&self, trial: usize) -> Vec<usize> {
        rotated(self.inits.len(), trial)
    }

    /// Appends every sample of `trials` to the CSV that `--samples` writes
    /// (`metric,init,trial,value`).
    pub fn keep(&mut self, trials: &Trials) {
        for (metric, per_init) in trials.names.iter().zip(&trials.samples) {
            for (index, samples) in per_init.iter().enumerate() {
                let name = self.inits[index].name.clone();
                self.keep_series(metric, &name, samples);
            }
        }
    }

    /// Appends one series of samples of `metric` by `who` (an init, or a baseline that is
    /// not one) to the CSV that `--samples` writes.
    pub fn keep_series(&mut self, metric: &str, who: &str, samples: &[f64]) {
        for (trial, value) in samples.iter().enumerate() {
            self.samples_csv
                .push_str(&format!("{metric},{who},{trial},{value}\n"));
        }
    }

    /// Records that `what` failed for init `index`; it is left out of the rest of that
    /// measurement and its cells read "failed".
    pub fn fail(&mut self, index: usize, what: &str, err: &Error) {
        let name = self.inits[index].name.clone();
        self.fail_named(&name, what, err);
    }

    /// Files the outcome of one trial of init `index` in `trials`: its values, one per metric, or its
    /// failure, noted under the table (the init is skipped from then on).
    pub fn file(
        &mut self,
        trials: &mut Trials,
        index: usize,
        what: &str,
        outcome: Result<impl AsRef<[f64]>, Error>,
    ) {
        match outcome {
            Ok(values) => trials.record(index, values.as_ref()),
            Err(err) => {
                trials.fail(index);
                self.fail(index, what, &err);
            }
        }
    }

    /// Records that `what` failed for `who` (an init, or a baseline that is not one).
    pub fn fail_named(&mut self, who: &str, what: &str, err: &Error) {
        let note = format!("{who} — {what}: {err}");
        eprintln!("  failed: {note}");
        self.notes.push(note);
        self.any_failed = true;
    }
}

/// `0..count` rotated left by `trial`.
fn rotated(count: usize, trial: usize) -> Vec<usize> {
    (0..count)
        .map(|offset| (offset + trial) % count.max(1))
        .collect()
}

/// Samples of several metrics per init, and which inits failed.
pub struct Trials {
    /// Metric names, as `--samples` writes them.
    names: &'static [&'static str],
    failed: Vec<bool>,
    /// `samples[metric][init]`.
    samples: Vec<Vec<Vec<f64>>>,
}

impl Trials {
    /// Room for the metrics `names` of `inits` inits.
    pub fn new(inits: usize, names: &'static [&'static str]) -> Self {
        Self {
            names,
            failed: vec![false; inits],
            samples: vec![vec![Vec::new(); inits]; names.len()],
        }
    }

    /// Whether init `index` has failed (and so is skipped).
    pub fn is_failed(&self, index: usize) -> bool {
        self.failed[index]
    }

    /// Marks init `index` as failed.
    pub fn fail(&mut self, index: usize) {
        self.failed[index] = true;
    }

    /// One trial's values, one per metric.
    pub fn record(&mut self, index: usize, values: &[f64]) {
        for (metric, value) in values.iter().enumerate() {
            self.samples[metric][index].push(*value);
        }
    }

    /// One cell per init: `statistic` of the metric's samples, or "failed".
    pub fn cells(&self, metric: usize, statistic: fn(&[f64]) -> Option<f64>) -> Vec<Cell> {
        (0..self.failed.len())
            .map(
                |index| match (self.failed[index], statistic(&self.samples[metric][index])) {
                    (false, Some(value)) => Cell::Value(value),
                    _ => Cell::Failed,
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_starts_each_trial_with_the_next_init() {
        assert_eq!(rotated(3, 0), [0, 1, 2]);
        assert_eq!(rotated(3, 1), [1, 2, 0]);
        assert_eq!(rotated(3, 5), [2, 0, 1]);
    }

    #[test]
    fn failed_inits_read_failed() {
        let mut trials = Trials::new(2, &["metric"]);
        trials.record(0, &[3.0]);
        trials.record(1, &[4.0]);
        trials.fail(1);
        let cells = trials.cells(0, crate::stats::median);
        assert!(matches!(cells[0], Cell::Value(value) if value == 3.0));
        assert!(matches!(cells[1], Cell::Failed));
    }
}
