//! Every orphan that lands on grace is reaped, however many arrive at once: none is left a zombie, in
//! either mode.

mod common;

use std::time::Instant;

use common::{child, children, zombie_children, Grace, Mode, Stream, MODES, TIMEOUT};

/// Enough that SIGCHLDs coalesce by the thousand: one per exit would leave most of them unreaped.
const ORPHANS: usize = 10_000;

/// Once the orphans have all been handed to grace, the test looks in /proc until grace has no child left but
/// the main child (the kernel announces to nobody that a zombie was reaped, so this one wait polls); a grace
/// that stopped reaping fails it. Then, from `-w`'s lines, each orphan was reaped exactly once.
fn orphans_leave_no_zombie(mode: Mode) {
    let count = ORPHANS.to_string();
    let mut grace = Grace::new(mode)
        .args(["-w"])
        .spawn(&child(&["orphans", &count]));
    grace.wait_stdout(&format!("orphaned {ORPHANS}"));
    // Seen from the host, every process of the namespace that grace adopts has grace's host pid as parent,
    // so the same look works in both modes.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let zombies = zombie_children(grace.grace_pid());
        if zombies.is_empty() && children(grace.grace_pid()).len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode:?}: {} zombies left {TIMEOUT:?} after {ORPHANS} orphans were made: {:?}…",
            zombies.len(),
            &zombies[..zombies.len().min(10)]
        );
        std::thread::yield_now();
    }
    grace.signal(libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    assert!(
        finished.has(Stream::Stdout, "got TERM"),
        "{mode:?}\n{}",
        finished.dump()
    );
    let log = finished.log();
    let reaped = log
        .iter()
        .filter(|line| line.contains("Reaped zombie process"))
        .count();
    // A reader that falls behind 10,000 lines (a loaded machine) makes grace drop some, never wait: each gap
    // is reported with its count, and the lines dropped may include others than these.
    let dropped: usize = log
        .iter()
        .filter_map(|line| {
            let (before, _) = line.split_once(" log line")?;
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum();
    assert!(
        reaped <= ORPHANS && reaped + dropped >= ORPHANS,
        "{mode:?}: {reaped} orphans reaped and {dropped} log lines dropped, for {ORPHANS} orphans"
    );
    if dropped == 0 {
        assert_eq!(reaped, ORPHANS, "{mode:?}: the main child is not an orphan");
    }
}

/// The modes run one after the other: 10,000 zombies at a time is already a third of the default pid_max.
#[test]
fn ten_thousand_orphans_leave_no_zombie() {
    for mode in MODES {
        orphans_leave_no_zombie(mode);
    }
}
