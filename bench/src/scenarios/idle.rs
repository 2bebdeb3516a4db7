//! Rows 2–3: memory and idle wake-ups. Every init runs at the same time, each with an idle
//! child (`stamp-child sleep`, blocked in read like `sleep`), and all are sampled over the
//! same window, so the noise of the machine falls on all of them alike.

use super::{Bench, Trials};
use crate::error::Result;
use crate::namespace::Namespace;
use crate::procfs;
use crate::report::{Row, Unit};
use crate::stats::median;

const RSS: usize = 0;
const PEAK_RSS: usize = 1;
const SWITCHES: usize = 2;
const CPU: usize = 3;

/// A sample of an idle init at one instant.
struct Reading {
    switches: u64,
    cpu_ns: u64,
}

fn read(pid: i32) -> Result<Reading> {
    Ok(Reading {
        switches: procfs::context_switches(pid)?,
        cpu_ns: procfs::cpu_time_ns(pid)?,
    })
}

/// RSS, peak RSS, context switches and CPU time over the idle window (medians over rounds).
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let window = bench.options.idle_window;
    let rounds = bench.options.idle_rounds;
    let mut trials = Trials::new(
        bench.inits.len(),
        &[
            "idle.rss_bytes",
            "idle.peak_rss_bytes",
            "idle.context_switches",
            "idle.cpu_ns",
        ],
    );
    for round in 0..rounds {
        eprintln!(
            "idle: round {}/{rounds}, {window:?} window, all inits side by side",
            round + 1
        );
        let mut running: Vec<(usize, Namespace)> = Vec::new();
        for index in bench.order(round) {
            if trials.is_failed(index) {
                continue;
            }
            let init = &bench.inits[index];
            let started = Namespace::start(
                &init.name,
                &init.argv(&[], &bench.child(&["sleep"])),
                &bench.log_path(init),
            );
            match started {
                Ok(namespace) => running.push((index, namespace)),
                Err(err) => {
                    trials.fail(index);
                    bench.fail(index, "idle start", &err);
                }
            }
        }
        // The window opens once every init is up, so all are measured over the same interval.
        let mut opened = Vec::new();
        for (index, namespace) in running {
            match read(namespace.init_pid()) {
                Ok(reading) => opened.push((index, namespace, reading)),
                Err(err) => {
                    trials.fail(index);
                    bench.fail(index, "idle reading", &err);
                }
            }
        }
        std::thread::sleep(window);
        for (index, namespace, start) in opened {
            let pid = namespace.init_pid();
            let outcome = read(pid).and_then(|end| Ok((end, procfs::memory_bytes(pid)?)));
            match outcome {
                Ok((end, (rss, peak))) => trials.record(
                    index,
                    &[
                        rss as f64,
                        peak as f64,
                        end.switches.saturating_sub(start.switches) as f64,
                        end.cpu_ns.saturating_sub(start.cpu_ns) as f64,
                    ],
                ),
                Err(err) => {
                    trials.fail(index);
                    bench.fail(index, "idle reading", &err);
                }
            }
            if let Err(err) = namespace.finish() {
                trials.fail(index);
                bench.fail(index, "idle teardown", &err);
            }
        }
    }
    bench.keep(&trials);
    let seconds = window.as_secs_f64();
    vec![
        Row {
            label: "RSS, idle (VmRSS)".to_owned(),
            unit: Unit::Bytes,
            cells: trials.cells(RSS, median),
        },
        Row {
            label: "peak RSS (VmHWM)".to_owned(),
            unit: Unit::Bytes,
            cells: trials.cells(PEAK_RSS, median),
        },
        Row {
            label: format!("idle wake-ups: context switches in {seconds} s"),
            unit: Unit::Count,
            cells: trials.cells(SWITCHES, median),
        },
        Row {
            label: format!("idle CPU time in {seconds} s"),
            unit: Unit::Nanos,
            cells: trials.cells(CPU, median),
        },
    ]
}
