//! Row 6: reaping. An orphan storm (the child leaves N exited processes to PID 1 while the
//! init runs) and a zombie burst (N zombies queued while the init is stopped with SIGSTOP,
//! then SIGCONT). Done means: no child of the init is left but its main child.

use super::{Bench, Trials};
use crate::error::{bail, Context, Result};
use crate::namespace::Namespace;
use crate::report::{Row, Unit};
use crate::stats::median;
use crate::{procfs, sys};
use std::time::Duration;

const STORM_TIME: usize = 0;
const STORM_CPU: usize = 1;
const STORM_CPU_PER_REAP: usize = 2;
const BURST_TIME: usize = 0;
const BURST_CPU_PER_REAP: usize = 1;

/// How long the child may take to orphan its processes.
const ORPHANING_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the init may take to reap what is left once the child is done.
const REAPING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGSTOP may take to stop the init.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll period while waiting for the last zombie: short against the tens of milliseconds
/// measured, long enough that the polling costs the init next to nothing.
const POLL_PERIOD: Duration = Duration::from_micros(100);

/// Parses `done <start ns> <end ns>` from `stamp-child orphans`.
fn parse_done(line: &str) -> Result<(u64, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["done", start, end] => Ok((start.parse()?, end.parse()?)),
        _ if line.starts_with("error:") => bail!(
            "the child could not orphan its processes: {line} ({} processes on the host now, pid_max {})",
            procfs::process_count(),
            procfs::pid_max().map_or_else(|| "?".to_owned(), |max| max.to_string())
        ),
        _ => bail!("expected `done START END` from the child, got {line:?}"),
    }
}

/// Polls until the init's only child is its main child; returns when that was seen.
fn wait_until_reaped(namespace: &Namespace, main_child: i32, timeout: Duration) -> Result<u64> {
    let deadline = sys::monotonic_ns() + timeout.as_nanos() as u64;
    loop {
        if procfs::only_child_left(namespace.init_pid(), main_child)? {
            return Ok(sys::monotonic_ns());
        }
        if sys::monotonic_ns() > deadline {
            bail!(
                "zombies still queued {timeout:?} after the child was done{}",
                namespace.stderr_tail()
            );
        }
        std::thread::sleep(POLL_PERIOD);
    }
}

/// Polls until the init's state is `T` (stopped).
fn wait_until_stopped(pid: i32) -> Result<()> {
    let deadline = sys::monotonic_ns() + STOP_TIMEOUT.as_nanos() as u64;
    while procfs::state(pid)? != 'T' {
        if sys::monotonic_ns() > deadline {
            bail!("the init was not stopped {STOP_TIMEOUT:?} after SIGSTOP");
        }
        std::thread::sleep(POLL_PERIOD);
    }
    Ok(())
}

/// The init under test with a `stamp-child orphans N` child waiting for `go`: the namespace, the child's
/// pid and the init's pid (both as the host sees them).
fn start_orphaner(bench: &Bench, index: usize, orphans: u32) -> Result<(Namespace, i32, i32)> {
    let init = &bench.inits[index];
    let count = orphans.to_string();
    let namespace = Namespace::start(
        &init.name,
        &init.argv(&[], &bench.child(&["orphans", &count])),
        &bench.log_path(init),
    )?;
    let main_child = namespace.main_child()?;
    let pid = namespace.init_pid();
    Ok((namespace, main_child, pid))
}

/// One storm: (time from the first orphan to the last reap, init CPU, CPU per reap), in ns.
fn storm(bench: &Bench, index: usize, orphans: u32) -> Result<[f64; 3]> {
    let (mut namespace, main_child, pid) = start_orphaner(bench, index, orphans)?;
    let cpu_before = procfs::cpu_time_ns(pid)?;
    namespace.send_line("go")?;
    let (start, _end) = parse_done(&namespace.read_line(ORPHANING_TIMEOUT)?)?;
    let reaped = wait_until_reaped(&namespace, main_child, REAPING_TIMEOUT)?;
    let cpu = procfs::cpu_time_ns(pid)?.saturating_sub(cpu_before) as f64;
    namespace.finish()?;
    Ok([
        reaped.saturating_sub(start) as f64,
        cpu,
        cpu / f64::from(orphans),
    ])
}

/// One burst: (time from SIGCONT to the last reap, CPU per reap), in ns.
fn burst(bench: &Bench, index: usize, orphans: u32) -> Result<[f64; 2]> {
    let (mut namespace, main_child, pid) = start_orphaner(bench, index, orphans)?;
    namespace.signal_init(libc::SIGSTOP)?;
    wait_until_stopped(pid)?;
    namespace.send_line("go")?;
    // `done` comes after every orphan has exited and been reparented: all are zombies now.
    parse_done(&namespace.read_line(ORPHANING_TIMEOUT)?)?;
    let cpu_before = procfs::cpu_time_ns(pid)?;
    let resumed = sys::monotonic_ns();
    namespace.signal_init(libc::SIGCONT)?;
    let reaped = wait_until_reaped(&namespace, main_child, REAPING_TIMEOUT)?;
    let cpu = procfs::cpu_time_ns(pid)?.saturating_sub(cpu_before) as f64;
    namespace.finish()?;
    Ok([
        reaped.saturating_sub(resumed) as f64,
        cpu / f64::from(orphans),
    ])
}

/// The orphan count, lowered if the host's processes plus the zombies would near pid_max.
fn orphan_count(bench: &mut Bench) -> u32 {
    let wanted = bench.options.orphans;
    let Some(pid_max) = procfs::pid_max() else {
        return wanted;
    };
    let room = pid_max.saturating_sub(procfs::process_count() + 2000) as u32;
    if wanted > room {
        bench.notes.push(format!(
            "orphans lowered from {wanted} to {room} to stay below pid_max {pid_max}"
        ));
        eprintln!("  note: orphans lowered from {wanted} to {room} (pid_max {pid_max})");
        room
    } else {
        wanted
    }
}

/// Storm time, CPU and CPU per reap; burst time and CPU per reap (medians over trials).
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let orphans = orphan_count(bench);
    let count = bench.options.reap_trials;
    let mut storms = Trials::new(
        bench.inits.len(),
        &["storm.time_ns", "storm.cpu_ns", "storm.cpu_per_reap_ns"],
    );
    let mut bursts = Trials::new(
        bench.inits.len(),
        &["burst.time_ns", "burst.cpu_per_reap_ns"],
    );
    eprintln!("reaping: {count} trials per init of {orphans} orphans (storm, then burst)");
    for round in 0..count {
        for index in bench.order(round) {
            if !storms.is_failed(index) {
                let outcome = storm(bench, index, orphans).context("orphan storm");
                bench.file(&mut storms, index, "reaping", outcome);
            }
            if !bursts.is_failed(index) {
                let outcome = burst(bench, index, orphans).context("zombie burst");
                bench.file(&mut bursts, index, "reaping", outcome);
            }
        }
        eprintln!("  {}/{count}", round + 1);
    }
    bench.keep(&storms);
    bench.keep(&bursts);
    vec![
        Row {
            label: format!("orphan storm ({orphans} orphans): first orphan → no zombie left"),
            unit: Unit::Nanos,
            cells: storms.cells(STORM_TIME, median),
        },
        Row {
            label: "orphan storm: init CPU time".to_owned(),
            unit: Unit::Nanos,
            cells: storms.cells(STORM_CPU, median),
        },
        Row {
            label: "orphan storm: init CPU per reap".to_owned(),
            unit: Unit::Nanos,
            cells: storms.cells(STORM_CPU_PER_REAP, median),
        },
        Row {
            label: format!(
                "zombie burst ({orphans} queued, SIGSTOP/SIGCONT): SIGCONT → all reaped"
            ),
            unit: Unit::Nanos,
            cells: bursts.cells(BURST_TIME, median),
        },
        Row {
            label: "zombie burst: init CPU per reap".to_owned(),
            unit: Unit::Nanos,
            cells: bursts.cells(BURST_CPU_PER_REAP, median),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_line_parses() {
        assert_eq!(parse_done("done 12 34").unwrap(), (12, 34));
        assert!(parse_done("ready").is_err());
        assert!(parse_done("done x 34").is_err());
    }
}
