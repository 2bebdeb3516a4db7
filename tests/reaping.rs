//! Every orphan that lands on grace is reaped, however many arrive at once: none is left a zombie, in
//! either mode.

mod common;

use common::{child, zombie_children, Grace, Mode, Stream, MODES};

/// Enough that SIGCHLDs coalesce by the thousand: one per exit would leave most of them unreaped.
const ORPHANS: usize = 10_000;

/// `grace -w` logs each reaped process other than the main child; the test counts those lines, then checks
/// /proc for any zombie left among grace's children, then stops the main child.
fn orphans_leave_no_zombie(mode: Mode) {
    let count = ORPHANS.to_string();
    let mut grace = Grace::new(mode)
        .args(["-w"])
        .spawn(&child(&["orphans", &count]));
    grace.wait_stdout(&format!("orphaned {ORPHANS}"));
    let reaped = grace.wait_count(Stream::Stderr, "Reaped zombie process with pid=", ORPHANS);
    assert_eq!(reaped.len(), ORPHANS);
    // Seen from the host, every process of the namespace that grace adopts has grace's host pid as parent,
    // so the same look works in both modes.
    let zombies = zombie_children(grace.grace_pid());
    assert!(
        zombies.is_empty(),
        "{mode:?}: {} zombies left after {ORPHANS} reaps: {zombies:?}",
        zombies.len()
    );
    grace.signal(libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    assert!(
        finished.has(Stream::Stdout, "got TERM"),
        "{mode:?}\n{}",
        finished.dump()
    );
    let more = finished
        .log()
        .iter()
        .filter(|line| line.contains("Reaped zombie process"))
        .count();
    assert_eq!(more, ORPHANS, "{mode:?}: the main child is not an orphan");
}

/// The modes run one after the other: 10,000 zombies at a time is already a third of the default pid_max.
#[test]
fn ten_thousand_orphans_leave_no_zombie() {
    for mode in MODES {
        orphans_leave_no_zombie(mode);
    }
}
