//! Row 7: start-up overhead. `init /bin/true` and `/bin/true` alone, both as PID 1 of a fresh
//! namespace in the same round, so the cost of unshare and of the namespace cancels out in
//! each pair; the row is the median of the per-round differences.

use super::{Bench, Trials};
use crate::namespace;
use crate::report::{format_value, Row, Unit};
use crate::stats::median;
use std::ffi::OsString;
use std::time::Duration;

const OVERHEAD: usize = 0;

/// How long one `unshare … /bin/true` may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// The median of (init /bin/true − /bin/true) per round.
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let count = bench.options.startup_trials;
    let inits = bench.inits.len();
    let true_argv = [OsString::from("/bin/true")];
    let baseline_log = bench.log_dir.join("baseline.stderr");
    let mut trials = Trials::new(inits, &["startup.overhead_ns"]);
    let mut baseline = Vec::new();
    eprintln!("start-up: {count} rounds of /bin/true alone and under each init");
    for round in 0..count {
        // The baseline takes its turn in the rotation like an init (slot `inits`).
        let mut times: Vec<Option<u64>> = vec![None; inits + 1];
        for slot in (0..=inits).map(|offset| (offset + round) % (inits + 1)) {
            if slot == inits {
                match namespace::time_run("/bin/true", &true_argv, &baseline_log, RUN_TIMEOUT) {
                    Ok(nanos) => times[slot] = Some(nanos),
                    Err(err) => {
                        eprintln!("  failed: baseline: {err}");
                        bench.notes.push(format!("start-up baseline: {err}"));
                        return Vec::new();
                    }
                }
            } else if !trials.is_failed(slot) {
                let init = &bench.inits[slot];
                match namespace::time_run(
                    &init.name,
                    &init.argv(&[], &true_argv),
                    &bench.log_path(init),
                    RUN_TIMEOUT,
                ) {
                    Ok(nanos) => times[slot] = Some(nanos),
                    Err(err) => {
                        trials.fail(slot);
                        bench.fail(slot, "start-up", &err);
                    }
                }
            }
        }
        let base = times[inits].unwrap_or_default();
        baseline.push(base as f64);
        for (index, time) in times[..inits].iter().enumerate() {
            if let Some(time) = time {
                trials.record(index, &[*time as f64 - base as f64]);
            }
        }
    }
    bench.keep(&trials);
    let baseline_median =
        median(&baseline).map_or_else(|| "?".to_owned(), |value| format_value(value, Unit::Nanos));
    vec![Row {
        label: format!("start-up: `init /bin/true` − `/bin/true` (baseline {baseline_median})"),
        unit: Unit::Nanos,
        cells: trials.cells(OVERHEAD, median),
    }]
}
