//! Row 9: escalation at scale, grace beside a baseline. A tree that ignores SIGTERM
//! (`stamp-child tree N`: one parent, N children) under `grace --grace-period 1s`, both as PID 1
//! of a fresh namespace and as a subreaper (a plain child of the bench: the mode in which grace
//! signals each process itself). SIGTERM at t0; the bench, holding a pidfd on every process of
//! the tree since before t0, stamps each death, and the row quotes the first and the last after
//! the deadline t0 + 1 s, and the lateness grace logs itself.
//!
//! Delivering a thousand SIGKILLs is mostly the kernel's work, whoever sends them: each victim
//! is woken and runs its own exit. So the same tree also runs under `stamp-child kill-init`,
//! which at the deadline does nothing but the SIGKILLs (kill(-1) as PID 1, a pidfd_send_signal
//! per process as a subreaper), and grace's figures are ratios to that baseline.

use super::Bench;
use crate::error::{bail, Context, Error, Result};
use crate::namespace::Namespace;
use crate::report::{format_value, Cell, Row, Unit};
use crate::stats::median;
use crate::subreaper::Subreaper;
use crate::{procfs, sys};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

const FIRST_DEATH: usize = 0;
const LAST_DEATH: usize = 1;
const LOGGED_LATENESS: usize = 2;

/// The grace period under test (the baseline gets the same).
const GRACE_PERIOD: Duration = Duration::from_secs(1);
/// How long past the deadline the bench waits for the last death before it calls it missing.
const SLACK: Duration = Duration::from_secs(10);
/// Descriptors the bench keeps for everything but its pidfds on the tree.
const RESERVED_DESCRIPTORS: u64 = 64;
/// Deaths taken from the kernel per epoll_wait.
const EVENTS_PER_WAIT: usize = 256;
/// The bench's SCHED_FIFO priority while it watches the tree die (any beats SCHED_OTHER).
const WATCH_PRIORITY: i32 = 10;

/// The words grace ends its escalation line with, `; the last sent 12.3ms after it was due`;
/// `kill-init` logs the same in parentheses, as grace 0.1 did.
const LOGGED_PREFIX: &str = "the last sent ";
const LOGGED_SUFFIX: &str = "ms after it was due";

/// Where the init runs.
#[derive(Clone, Copy)]
enum Placement {
    /// PID 1 of a fresh namespace, as the bench runs every init.
    Pid1,
    /// A plain child of the bench: a subreaper of its tree.
    Subreaper,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::Pid1 => "PID 1",
            Placement::Subreaper => "subreaper",
        }
    }

    /// What the baseline does at the deadline, for the row's label.
    fn baseline(self) -> &'static str {
        match self {
            Placement::Pid1 => "kill(-1)",
            Placement::Subreaper => "a pidfd kill per process",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Placement::Pid1 => "pid1",
            Placement::Subreaper => "subreaper",
        }
    }
}

/// Who sends the SIGKILLs.
#[derive(Clone, Copy)]
enum Killer {
    /// grace, the init at this index.
    Grace(usize),
    /// `stamp-child kill-init`.
    Baseline,
}

/// One of the four runs of a round, and its samples.
struct Variant {
    placement: Placement,
    killer: Killer,
    failed: bool,
    /// One `[first death, last death, logged lateness]` per trial, in ns after the deadline.
    samples: Vec<[f64; 3]>,
}

impl Variant {
    fn new(placement: Placement, killer: Killer) -> Self {
        Self {
            placement,
            killer,
            failed: false,
            samples: Vec::new(),
        }
    }

    /// The median of `metric`, if the variant did not fail.
    fn median(&self, metric: usize) -> Option<f64> {
        if self.failed {
            return None;
        }
        median(
            &self
                .samples
                .iter()
                .map(|sample| sample[metric])
                .collect::<Vec<_>>(),
        )
    }
}

/// Who is run, how, and where its stderr goes.
struct Launch {
    name: String,
    argv: Vec<OsString>,
    stderr_log: PathBuf,
}

fn launch(bench: &Bench, killer: Killer, children: u32) -> Launch {
    let tree = bench.child(&["tree", &children.to_string()]);
    match killer {
        Killer::Grace(index) => {
            let init = &bench.inits[index];
            let period = format!("{}s", GRACE_PERIOD.as_secs());
            Launch {
                name: init.name.clone(),
                argv: init.argv(&["--grace-period", &period], &tree),
                stderr_log: bench.log_path(init),
            }
        }
        Killer::Baseline => {
            let period_ms = GRACE_PERIOD.as_millis().to_string();
            let mut argv = bench.child(&["kill-init", &period_ms]);
            argv.extend(tree);
            Launch {
                name: "kill-init".to_owned(),
                argv,
                stderr_log: bench.log_dir.join("kill-init.stderr"),
            }
        }
    }
}

/// A running init, wherever it was placed.
enum Run {
    Pid1(Namespace),
    Subreaper(Subreaper),
}

impl Run {
    fn start(placement: Placement, label: &str, argv: &[OsString], log: &Path) -> Result<Self> {
        Ok(match placement {
            Placement::Pid1 => Run::Pid1(Namespace::start(label, argv, log)?),
            Placement::Subreaper => Run::Subreaper(Subreaper::start(label, argv, log)?),
        })
    }

    fn main_child(&self) -> Result<i32> {
        match self {
            Run::Pid1(namespace) => namespace.main_child(),
            Run::Subreaper(run) => run.main_child(),
        }
    }

    fn signal_init(&self, signal: i32) -> Result<()> {
        match self {
            Run::Pid1(namespace) => namespace.signal_init(signal),
            Run::Subreaper(run) => run.signal_init(signal),
        }
    }

    /// EOF to the tree's parent, then the init's exit (it has nothing left to wait for).
    fn finish(self) -> Result<()> {
        match self {
            Run::Pid1(namespace) => namespace.finish(),
            Run::Subreaper(run) => run.finish(),
        }
    }

    fn stderr_tail(&self) -> String {
        match self {
            Run::Pid1(namespace) => namespace.stderr_tail(),
            Run::Subreaper(run) => run.stderr_tail(),
        }
    }
}

/// A pidfd on every process of the tree, opened before the SIGTERM, and an epoll set over them.
/// Dropping it SIGKILLs whatever is still alive: a failed trial leaves nothing behind, even as
/// a subreaper's tree, which the init's death does not end.
struct Pinned {
    pidfds: Vec<OwnedFd>,
    epoll: sys::Epoll,
}

impl Pinned {
    /// Pins `parent` and its children, which must number `children`. The tree is at rest (it
    /// ignores SIGTERM, forks no more, and its parent reaps nothing), so no pid in the listing
    /// can be reused before its pidfd is open.
    fn pin(parent: i32, children: u32) -> Result<Self> {
        let listed = procfs::children(parent)?;
        if listed.len() != children as usize {
            bail!(
                "the tree's parent {parent} has {} children, expected {children}",
                listed.len()
            );
        }
        let epoll = sys::Epoll::new().context("epoll_create1")?;
        let mut pinned = Self {
            pidfds: Vec::with_capacity(listed.len() + 1),
            epoll,
        };
        for pid in std::iter::once(parent).chain(listed) {
            let pidfd = sys::pidfd_open(pid).with_context(|| format!("pidfd_open({pid})"))?;
            let token = pinned.pidfds.len() as u64;
            pinned
                .epoll
                .add_once(pidfd.as_fd(), token)
                .context("epoll_ctl")?;
            pinned.pidfds.push(pidfd);
        }
        Ok(pinned)
    }

    /// Each process's death, as CLOCK_MONOTONIC when the bench saw its pidfd turn readable (it
    /// has exited; its parent can reap it), waiting until `give_up_ns` at most. `watching` (the
    /// bench at SCHED_FIFO) is dropped once the first death is seen: see `measure`.
    fn wait_for_deaths(
        &self,
        give_up_ns: u64,
        mut watching: Option<sys::Realtime>,
    ) -> Result<Vec<u64>> {
        let total = self.pidfds.len();
        let mut deaths: Vec<Option<u64>> = vec![None; total];
        let mut alive = total;
        while alive > 0 {
            let now = sys::monotonic_ns();
            if now >= give_up_ns {
                bail!("{alive} of the tree's {total} processes still alive {SLACK:?} after the deadline");
            }
            let tokens = self
                .epoll
                .wait(EVENTS_PER_WAIT, Duration::from_nanos(give_up_ns - now))?;
            let seen_at = sys::monotonic_ns();
            watching.take();
            for token in tokens {
                let death = &mut deaths[token as usize];
                if death.is_none() {
                    *death = Some(seen_at);
                    alive -= 1;
                }
            }
        }
        Ok(deaths.into_iter().flatten().collect())
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for pidfd in &self.pidfds {
            // ESRCH for those already dead: nothing to do.
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        }
    }
}

/// One trial: `[first death, last death, logged lateness]`, in ns after the deadline. With
/// `realtime`, the bench watches at SCHED_FIFO from the SIGTERM to the first death.
fn trial(
    bench: &Bench,
    placement: Placement,
    killer: Killer,
    children: u32,
    realtime: bool,
) -> Result<[f64; 3]> {
    let launch = launch(bench, killer, children);
    let label = format!("{} ({})", launch.name, placement.name());
    let run = Run::start(placement, &label, &launch.argv, &launch.stderr_log)?;
    let tree = Pinned::pin(run.main_child()?, children).with_context(|| label.clone())?;
    let watching = realtime
        .then(|| sys::Realtime::enter(WATCH_PRIORITY))
        .transpose()
        .context("SCHED_FIFO for the bench")?;
    let sent = sys::monotonic_ns();
    run.signal_init(libc::SIGTERM)?;
    let deadline = sent + GRACE_PERIOD.as_nanos() as u64;
    let deaths = tree
        .wait_for_deaths(deadline + SLACK.as_nanos() as u64, watching)
        .map_err(|err| Error::msg(format!("{label}: {err}{}", run.stderr_tail())))?;
    run.finish()?;
    let log = std::fs::read_to_string(&launch.stderr_log)
        .with_context(|| format!("reading {}", launch.stderr_log.display()))?;
    let Some(logged) = logged_lateness(&log) else {
        bail!("{label}: no `{LOGGED_PREFIX}…{LOGGED_SUFFIX}` in its stderr");
    };
    let (Some(&first), Some(&last)) = (deaths.iter().min(), deaths.iter().max()) else {
        unreachable!("the tree has at least its parent")
    };
    Ok([
        first as f64 - deadline as f64,
        last as f64 - deadline as f64,
        logged,
    ])
}

/// The lateness an init logged for its SIGKILL, in ns: from the last line that ends with
/// `the last sent 12.3ms after it was due`, or the same in parentheses.
fn logged_lateness(log: &str) -> Option<f64> {
    log.lines().rev().find_map(|line| {
        let line = line.trim_end();
        let line = line.strip_suffix(')').unwrap_or(line);
        let start = line.rfind(LOGGED_PREFIX)? + LOGGED_PREFIX.len();
        let millis: f64 = line[start..].strip_suffix(LOGGED_SUFFIX)?.parse().ok()?;
        (millis.is_finite() && millis >= 0.0).then_some(millis * 1e6)
    })
}

/// The children in the tree: as asked, lowered (with a note) so that a pidfd on each fits the
/// descriptor limit (raised to its hard value first) and the processes fit below pid_max.
fn tree_size(bench: &mut Bench) -> Result<u32> {
    let wanted = bench.options.scale_processes;
    let descriptors = sys::raise_descriptor_limit().context("raising RLIMIT_NOFILE")?;
    // The tree's parent takes a pidfd too.
    let by_descriptors = descriptors.saturating_sub(RESERVED_DESCRIPTORS + 1);
    let by_pids = procfs::pid_max().map_or(u64::MAX, |pid_max| {
        pid_max.saturating_sub(procfs::process_count() + 2000) as u64
    });
    let room = by_descriptors.min(by_pids).min(u64::from(u32::MAX)) as u32;
    if wanted <= room {
        return Ok(wanted);
    }
    if room == 0 {
        bail!("no room for a tree: RLIMIT_NOFILE {descriptors}, room for {by_pids} more processes");
    }
    let note = format!(
        "escalation at scale: tree lowered from {wanted} to {room} children (RLIMIT_NOFILE {descriptors}, pid_max)"
    );
    eprintln!("  note: {note}");
    bench.notes.push(note);
    Ok(room)
}

/// For grace as PID 1 and as a subreaper: first and last death after the deadline and the
/// logged lateness, each as a ratio to the baseline's (medians over the rounds).
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let Some(grace) = bench.inits.iter().position(|init| init.is_current_grace()) else {
        return Vec::new();
    };
    let children = match tree_size(bench) {
        Ok(children) => children,
        Err(err) => {
            bench.fail(grace, "escalation at scale", &err);
            return Vec::new();
        }
    };
    // The bench stamps each death when it sees it. At its normal priority it queues for a CPU
    // behind the very exits it times (a thousand, on a machine that may have two): on a 2-vCPU
    // VM it saw the first death under kill(-1) a median 23 ms after the deadline, against 3 ms
    // at SCHED_FIFO. But a real-time watcher preempts a victim at every death, and that made the
    // last death 12-15 ms later (~15 µs a death). So it watches at SCHED_FIFO only until the
    // first death; the last one then reads as at normal priority (within 1-3 ms, medians of 6).
    let realtime = match sys::Realtime::enter(WATCH_PRIORITY) {
        Ok(_probe) => true,
        Err(err) => {
            let note = format!(
                "escalation at scale: the bench could not watch at SCHED_FIFO ({err}); deaths may be seen late"
            );
            eprintln!("  note: {note}");
            bench.notes.push(note);
            false
        }
    };
    let count = bench.options.scale_trials;
    let mut variants = [
        Variant::new(Placement::Pid1, Killer::Grace(grace)),
        Variant::new(Placement::Pid1, Killer::Baseline),
        Variant::new(Placement::Subreaper, Killer::Grace(grace)),
        Variant::new(Placement::Subreaper, Killer::Baseline),
    ];
    eprintln!(
        "escalation at scale: {count} rounds of a tree of {children} children ignoring SIGTERM, under grace \
         and the baseline (kill-init), as PID 1 and as a subreaper"
    );
    for round in 0..count {
        for slot in super::rotated(variants.len(), round) {
            let variant = &variants[slot];
            if variant.failed {
                continue;
            }
            let (placement, killer) = (variant.placement, variant.killer);
            match trial(bench, placement, killer, children, realtime) {
                Ok(sample) => variants[slot].samples.push(sample),
                Err(err) => {
                    variants[slot].failed = true;
                    let what = format!("escalation at scale ({})", placement.name());
                    match killer {
                        Killer::Grace(index) => bench.fail(index, &what, &err),
                        Killer::Baseline => bench.fail_named("kill-init (baseline)", &what, &err),
                    }
                }
            }
        }
        eprintln!("  {}/{count}", round + 1);
    }
    for variant in &variants {
        let who = match variant.killer {
            Killer::Grace(index) => bench.inits[index].name.clone(),
            Killer::Baseline => "kill-init".to_owned(),
        };
        for (metric, name) in ["first_death_ns", "last_death_ns", "logged_lateness_ns"]
            .iter()
            .enumerate()
        {
            let samples: Vec<f64> = variant
                .samples
                .iter()
                .map(|sample| sample[metric])
                .collect();
            let metric = format!("scale.{}.{name}", variant.placement.key());
            bench.keep_series(&metric, &who, &samples);
        }
    }

    let mut rows = Vec::new();
    for pair in variants.chunks(2) {
        let [grace_run, baseline_run] = pair else {
            unreachable!("variants come in pairs");
        };
        let placement = grace_run.placement;
        for (metric, what) in [
            (
                FIRST_DEATH,
                format!("first death after the {}s deadline", GRACE_PERIOD.as_secs()),
            ),
            (LAST_DEATH, "last death after the deadline".to_owned()),
            (
                LOGGED_LATENESS,
                "last SIGKILL sent after it was due (own log)".to_owned(),
            ),
        ] {
            let baseline = baseline_run.median(metric);
            let quoted = baseline.map_or_else(
                || "failed".to_owned(),
                |value| format_value(value, Unit::Nanos),
            );
            let cell = match (grace_run.median(metric), baseline) {
                (Some(value), Some(baseline)) => Cell::AgainstBaseline { value, baseline },
                (Some(value), None) => Cell::Value(value),
                (None, _) => Cell::Failed,
            };
            rows.push(Row {
                label: format!(
                    "escalation at scale, {}, {children} children: {what} (baseline {}: {quoted})",
                    placement.name(),
                    placement.baseline()
                ),
                unit: Unit::Nanos,
                cells: (0..bench.inits.len())
                    .map(|index| {
                        if index == grace {
                            cell.clone()
                        } else {
                            Cell::Text("—".to_owned())
                        }
                    })
                    .collect(),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_comes_from_the_last_escalation_line() {
        let grace = "\
[grace 2026-12-05T13:37:15.978Z] warning: grace period of 1s expired: 1001 processes still alive
[grace 2026-12-05T13:37:15.978Z] warning: grace period of 1s expired: SIGKILL to 1001 processes: 2 (stamp-child), 3 (stamp-child) and 999 more: 999 stamp-child; the last sent 12.3ms after it was due
[grace 2026-12-05T13:37:16.101Z] exiting with status 137, 1.123s after the stop signal
";
        assert_eq!(logged_lateness(grace), Some(12.3e6));
        let baseline =
            "kill-init: SIGKILL to every process of the namespace (kill(-1)) (the last sent 0.1ms after it was due)\n";
        assert!((logged_lateness(baseline).unwrap() - 0.1e6).abs() < 1e-6);
        let twice =
            "x (the last sent 1.0ms after it was due)\ny (the last sent 2.0ms after it was due)\n";
        assert_eq!(logged_lateness(twice), Some(2.0e6));
    }

    #[test]
    fn lines_that_only_look_alike_are_not_lateness() {
        assert_eq!(logged_lateness(""), None);
        assert_eq!(
            logged_lateness("(the last sent 12.3ms after it was due) and more"),
            None
        );
        assert_eq!(
            logged_lateness("(the last sent 12.3s after it was due)"),
            None
        );
        assert_eq!(
            logged_lateness("(the last sent -1.0ms after it was due)"),
            None
        );
        assert_eq!(
            logged_lateness("(the last sent NaNms after it was due)"),
            None
        );
        assert_eq!(logged_lateness("(the last sent ms after it was due)"), None);
    }
}
