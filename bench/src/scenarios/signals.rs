//! Rows 4–5: SIGTERM sent to the init from the host → the child's handler runs (forwarding
//! latency, from the stamp the handler writes), and → the init exits (shutdown overhead, the
//! child exiting at once), both from one trial.
//!
//! Then signals in a row to one init that stays up (SIGUSR1, each sent once the child has taken the
//! one before), the bench, the init and the child kept on one CPU: the latency again, without an
//! idle CPU's wake-up in it, and the init's own CPU time per forwarded signal from its schedstat.
//! A latency that differs between inits whose CPU per signal does not is the machine's wake-ups,
//! not the inits' work.

use super::{Bench, Trials};
use crate::error::{bail, Context, Result};
use crate::namespace::{Event, Namespace};
use crate::procfs;
use crate::report::{Row, Unit};
use crate::stats::{max, median, percentile};
use crate::sys;
use std::time::Duration;

const LATENCY: usize = 0;
const SHUTDOWN: usize = 1;

/// How long a trial may take from SIGTERM to the init's exit.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// One trial: [forwarding latency, shutdown time] in nanoseconds.
fn trial(bench: &Bench, index: usize) -> Result<[f64; 2]> {
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
    Ok([
        stamp.saturating_sub(sent) as f64,
        exited.saturating_sub(sent) as f64,
    ])
}

/// One run of signals in a row: [median latency, init CPU per signal] in nanoseconds.
fn in_a_row(bench: &Bench, index: usize, count: usize) -> Result<[f64; 2]> {
    let init = &bench.inits[index];
    // The bench, the init and its child on one CPU: whether a wake-up crosses to the other CPU (an
    // interrupt, an idle CPU to wake) is the scheduler's choice, and it made the CPU time per signal
    // bimodal (3.5 or 12 µs, per run, for every init alike).
    let _one_cpu = sys::OnOneCpu::enter().context("keeping the run on one CPU")?;
    let mut namespace = Namespace::start(
        &init.name,
        &init.argv(&[], &bench.child(&["usr1"])),
        &bench.log_path(init),
    )?;
    let pid = namespace.init_pid();
    let cpu_before = procfs::cpu_time_ns(pid)?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = sys::monotonic_ns();
        namespace.signal_init(libc::SIGUSR1)?;
        let line = namespace.read_line(TRIAL_TIMEOUT)?;
        let Some(value) = line.strip_prefix("usr1 ") else {
            bail!("{}: unexpected line from the child: {line:?}", init.name);
        };
        let stamp = value
            .parse::<u64>()
            .with_context(|| format!("bad stamp {line:?}"))?;
        latencies.push(stamp.saturating_sub(sent) as f64);
    }
    let cpu = procfs::cpu_time_ns(pid)?.saturating_sub(cpu_before) as f64;
    namespace.finish()?;
    let latency = median(&latencies).context("no signal was sent")?;
    Ok([latency, cpu / count as f64])
}

/// Forwarding latency (median, p99, max) and shutdown time (median, p99); then signals in a row.
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let mut rows = one_per_init(bench);
    rows.extend(several_per_init(bench));
    rows
}

/// Signals in a row: as many per run as there are trials of the rows above, in 5 runs per init.
fn several_per_init(bench: &mut Bench) -> Vec<Row> {
    const RUNS: usize = 5;
    let count = bench.options.signal_trials;
    let mut trials = Trials::new(
        bench.inits.len(),
        &["signals.in_a_row_latency_ns", "signals.in_a_row_cpu_ns"],
    );
    eprintln!("signals in a row: {RUNS} runs of {count} per init, round-robin");
    for run in 0..RUNS {
        for index in bench.order(run) {
            if trials.is_failed(index) {
                continue;
            }
            let outcome = in_a_row(bench, index, count);
            bench.file(&mut trials, index, "SIGUSR1 forwarding in a row", outcome);
        }
    }
    bench.keep(&trials);
    vec![
        Row {
            label: format!("SIGUSR1 → child, {count} in a row to one init, on one CPU, median"),
            unit: Unit::Nanos,
            cells: trials.cells(0, median),
        },
        Row {
            label: "SIGUSR1 in a row: init CPU time per forwarded signal (schedstat)".to_owned(),
            unit: Unit::Nanos,
            cells: trials.cells(1, median),
        },
    ]
}

/// Forwarding latency (median, p99, max) and shutdown time (median, p99), a fresh init per trial.
fn one_per_init(bench: &mut Bench) -> Vec<Row> {
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
            let outcome = trial(bench, index);
            bench.file(&mut trials, index, "SIGTERM forwarding", outcome);
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
