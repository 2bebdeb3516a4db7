//! `kill-init MS COMMAND…`: the baseline of the escalation at scale. A trivial init that runs
//! COMMAND and, MS milliseconds after a SIGTERM, does nothing but the SIGKILLs, in the least
//! work the kernel allows: `kill(-1)` as PID 1 of a namespace; as a subreaper (any other pid),
//! one `pidfd_send_signal` per descendant, through pidfds opened at the SIGTERM, like grace's
//! pins. No forwarding, no survey, no report: what it costs is what any init would pay.
//!
//! It logs the moment in grace's words, `(the last sent 0.1ms after it was due)`, on stderr, so
//! the bench reads both with one parser.

use crate::sys::{self, Reaped, SignalSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

/// Runs `command` until it exits or, after a SIGTERM, until the grace period ends and every
/// process is SIGKILLed and reaped. Returns the exit code of `command`.
pub fn run(grace_period: Duration, command: &[&str]) -> io::Result<u8> {
    sys::raise_descriptor_limit()?;
    let as_pid1 = std::process::id() == 1;
    if !as_pid1 {
        sys::become_subreaper()?;
    }
    // Blocked, they wait for sigwaitinfo. Blocking is also what lets a namespace's PID 1 receive
    // a SIGTERM from the host at all.
    let signals = SignalSet::of(&[libc::SIGTERM, libc::SIGCHLD]);
    signals.block()?;
    let mut child = Command::new(command[0]);
    child.args(&command[1..]);
    signals.unblock_in(&mut child);
    let main_pid = child
        .spawn()
        .map_err(|err| io::Error::new(err.kind(), format!("starting {}: {err}", command[0])))?
        .id() as i32;
    loop {
        if signals.wait()? == libc::SIGTERM {
            break;
        }
        // SIGCHLD: the command ending on its own (EOF on stdin) ends the run.
        if let Some(code) = reap_exited(main_pid)? {
            return Ok(code);
        }
    }
    let due = sys::monotonic_ns() + grace_period.as_nanos() as u64;
    let pins = if as_pid1 {
        Vec::new()
    } else {
        pin_descendants()?
    };
    sys::sleep_until(due);
    // The clock is read just before the last kill call, as grace reads it: after the call it would
    // also count the time the victims just woken take from the sender before it runs again.
    let mut sent = sys::monotonic_ns();
    let what = if as_pid1 {
        // Fails only if nothing is left to signal.
        let _ = sys::kill(-1, libc::SIGKILL);
        "every process of the namespace (kill(-1))".to_owned()
    } else {
        for pin in &pins {
            sent = sys::monotonic_ns();
            let _ = sys::pidfd_send_signal(pin.as_fd(), libc::SIGKILL);
        }
        format!("{} processes (one pidfd each)", pins.len())
    };
    eprintln!(
        "kill-init: SIGKILL to {what} (the last sent {:.1}ms after it was due)",
        sent.saturating_sub(due) as f64 / 1e6
    );
    reap_all(main_pid)
}

/// Reaps what has exited; the exit code of `main_pid` if it was among them.
fn reap_exited(main_pid: i32) -> io::Result<Option<u8>> {
    let mut main_code = None;
    while let Reaped::Child { pid, code } = sys::reap_any(false)? {
        if pid == main_pid {
            main_code = Some(code);
        }
    }
    Ok(main_code)
}

/// Reaps every child until none is left (orphans of the tree are reparented here first: the
/// kernel moves a process's children before its parent can reap it). Returns `main_pid`'s code.
fn reap_all(main_pid: i32) -> io::Result<u8> {
    let mut main_code = None;
    while let Reaped::Child { pid, code } = sys::reap_any(true)? {
        if pid == main_pid {
            main_code = Some(code);
        }
    }
    main_code.ok_or_else(|| io::Error::other("the command was never reaped"))
}

/// A pidfd on every descendant, found through /proc/PID/task/TID/children. The tree is at
/// rest (it ignores SIGTERM and does not fork), so no pid can be reused between the listing
/// and the pidfd_open.
fn pin_descendants() -> io::Result<Vec<OwnedFd>> {
    let mut pins = Vec::new();
    let mut parents = vec![std::process::id() as i32];
    while let Some(parent) = parents.pop() {
        for child in children(parent)? {
            pins.push(sys::pidfd_open(child)?);
            parents.push(child);
        }
    }
    Ok(pins)
}

/// The children of `pid`, from every one of its threads.
fn children(pid: i32) -> io::Result<Vec<i32>> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let list = std::fs::read_to_string(task?.path().join("children"))?;
        children.extend(
            list.split_whitespace()
                .filter_map(|word| word.parse::<i32>().ok()),
        );
    }
    Ok(children)
}
