//! Row 8: escalation accuracy, grace only (the peers wait forever for a child that ignores
//! SIGTERM). `grace --grace-period 1s -- stamp-child ignore`: SIGTERM to grace, then the child's
//! death (its pidfd turning readable, i.e. the moment its parent can reap it), minus the period.

use super::{Bench, Trials};
use crate::error::{bail, Context, Result};
use crate::namespace::Namespace;
use crate::report::{Cell, Row, Unit};
use crate::stats::{max, median};
use crate::sys;
use std::os::fd::AsFd;
use std::time::Duration;

const LATENESS: usize = 0;

/// The grace period under test.
const GRACE_PERIOD: Duration = Duration::from_secs(1);
/// How long past the period the bench waits for the SIGKILL before it calls it missing.
const SLACK: Duration = Duration::from_secs(10);

/// One trial: how long after the deadline the child died, in nanoseconds (negative: early).
fn trial(bench: &Bench, index: usize) -> Result<f64> {
    let init = &bench.inits[index];
    let period = format!("{}s", GRACE_PERIOD.as_secs());
    let argv = init.argv(&["--grace-period", &period], &bench.child(&["ignore"]));
    let namespace = Namespace::start(&init.name, &argv, &bench.log_path(init))?;
    let child = namespace.main_child()?;
    let child_pidfd = sys::pidfd_open(child).context("pidfd_open(child)")?;
    let sent = sys::monotonic_ns();
    namespace.signal_init(libc::SIGTERM)?;
    let died = sys::poll_readable(&[child_pidfd.as_fd()], GRACE_PERIOD + SLACK)?[0];
    let died_at = sys::monotonic_ns();
    if !died {
        bail!(
            "the child that ignores SIGTERM was still alive {:?} after SIGTERM{}",
            GRACE_PERIOD + SLACK,
            namespace.stderr_tail()
        );
    }
    namespace.finish()?;
    Ok(died_at as f64 - sent as f64 - GRACE_PERIOD.as_nanos() as f64)
}

/// Lateness of the SIGKILL after the deadline: median and max (grace); "none" for the peers.
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    if !bench.inits.iter().any(|init| init.is_grace) {
        return Vec::new();
    }
    let count = bench.options.escalation_trials;
    let mut trials = Trials::new(bench.inits.len(), &["escalation.lateness_ns"]);
    eprintln!(
        "escalation: {count} trials of grace --grace-period 1s with a child that ignores SIGTERM"
    );
    for _ in 0..count {
        for index in 0..bench.inits.len() {
            if !bench.inits[index].is_grace || trials.is_failed(index) {
                continue;
            }
            match trial(bench, index) {
                Ok(lateness) => trials.record(index, &[lateness]),
                Err(err) => {
                    trials.fail(index);
                    bench.fail(index, "escalation", &err);
                }
            }
        }
    }
    bench.keep(&trials);
    let peers_have_none = |cells: Vec<Cell>| -> Vec<Cell> {
        cells
            .into_iter()
            .zip(&bench.inits)
            .map(|(cell, init)| {
                if init.is_grace {
                    cell
                } else {
                    Cell::Text("none (waits forever)".to_owned())
                }
            })
            .collect()
    };
    vec![
        Row {
            label: format!(
                "escalation: SIGKILL after the {}s deadline, median",
                GRACE_PERIOD.as_secs()
            ),
            unit: Unit::Nanos,
            cells: peers_have_none(trials.cells(LATENESS, median)),
        },
        Row {
            label: "escalation: SIGKILL after the deadline, max".to_owned(),
            unit: Unit::Nanos,
            cells: peers_have_none(trials.cells(LATENESS, max)),
        },
    ]
}
