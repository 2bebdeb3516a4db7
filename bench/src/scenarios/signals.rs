//! Rows 4–5: SIGTERM sent to the init from the host → the child's handler runs (forwarding
//! latency, from the stamp the handler writes), and → the init exits (shutdown overhead, the
//! child exiting at once), both from one trial.

use super::{Bench, Trials};
use crate::error::{bail, Context, Result};
use crate::namespace::{Event, Namespace};
use crate::report::{Row, Unit};
use crate::stats::{max, median, percentile};
use crate::sys;
use std::time::Duration;

const LATENCY: usize = 0;
const SHUTDOWN: usize = 1;

/// How long a trial may take from SIGTERM to the init's exit.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// One trial: (forwarding latency, shutdown time) in nanoseconds.
fn trial(bench: &Bench, index: usize) -> Result<(f64, f64)> {
    let init = &bench.inits[index];
    let mut namespace = Namespace::start(
        &init.name,
        &init.argv(&[], &bench.child(&["term"])),
        &bench.log_path(init),
    )?;
    let sent = sys::monotonic_ns();
    namespace.signal_init(libc::SIGTERM)?;
    let deadline = sent + TRIAL_TIMEOUT.as_nanos() as u64;
    let mut stamp = None;
    let mut exited = None;
    while stamp.is_none() || exited.is_none() {
        match namespace.next_event(true, deadline)? {
            Event::Line(line) => {
                let Some(value) = line.strip_prefix("term ") else {
                    bail!("{}: unexpected line from the child: {line:?}", init.name);
                };
                stamp = Some(
                    value
                        .parse::<u64>()
                        .with_context(|| format!("bad stamp {line:?}"))?,
                );
            }
            // The child writes its stamp before it exits, and the init exits after it, so
            // a missing stamp shows up as the output ending (an error from next_event).
            Event::InitExited { at_ns } => exited = Some(at_ns),
        }
    }
    namespace.finish()?;
    let (Some(stamp), Some(exited)) = (stamp, exited) else {
        unreachable!("the loop ends only with both")
    };
    Ok((
        stamp.saturating_sub(sent) as f64,
        exited.saturating_sub(sent) as f64,
    ))
}

/// Forwarding latency (median, p99, max) and shutdown time (median, p99).
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let count = bench.options.signal_trials;
    let mut trials = Trials::new(
        bench.inits.len(),
        &["signals.latency_ns", "signals.shutdown_ns"],
    );
    eprintln!("signals: {count} trials per init, round-robin");
    for round in 0..count {
        for index in bench.order(round) {
            if trials.is_failed(index) {
                continue;
            }
            match trial(bench, index) {
                Ok((latency, shutdown)) => trials.record(index, &[latency, shutdown]),
                Err(err) => {
                    trials.fail(index);
                    bench.fail(index, "SIGTERM forwarding", &err);
                }
            }
        }
        if (round + 1) % 100 == 0 {
            eprintln!("  {}/{count}", round + 1);
        }
    }
    bench.keep(&trials);
    let p99 = |samples: &[f64]| percentile(samples, 0.99);
    vec![
        Row {
            label: "SIGTERM → child's handler, median".to_owned(),
            unit: Unit::Nanos,
            cells: trials.cells(LATENCY, median),
        },
        Row {
            label: "SIGTERM → child's handler, p99".to_owned(),
            unit: Unit::Nanos,
            cells: trials.cells(LATENCY, p99),
        },
        Row {
            label: "SIGTERM → child's handler, max".to_owned(),
            unit: Unit::Nanos,
            cells: trials.cells(LATENCY, max),
        },
        Row {
            label: "SIGTERM → init exits (child exits at once), median".to_owned(),
            unit: Unit::Nanos,
            cells: trials.cells(SHUTDOWN, median),
        },
        Row {
            label: "SIGTERM → init exits, p99".to_owned(),
            unit: Unit::Nanos,
            cells: trials.cells(SHUTDOWN, p99),
        },
    ]
}
