//! What grace inherited from whoever started it, recorded — and where it would harm grace, undone — in an
//! `.init_array` hook that runs before Rust's runtime and before `main`, so that the child can later be given
//! exactly what grace was given.
//!
//! Why before `main`: Rust's runtime sets SIGPIPE to ignored and aborts when descriptor 0, 1 or 2 is closed
//! and /dev/null cannot be opened; and every microsecond before the signals are blocked is a window in which
//! a SIGTERM sent to a fresh PID 1 is discarded.
#![allow(unsafe_code)]
// Unit-test builds leave the hook out (see below), and with it everything it calls.
#![cfg_attr(test, allow(dead_code))]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;

use super::{pending_signals, set_signal_mask, SignalMask, ALL_SIGNALS};

static MASK: AtomicU64 = AtomicU64::new(0);
static PENDING_AT_EXEC: AtomicU64 = AtomicU64::new(0);
static MASK_RECORDED: AtomicBool = AtomicBool::new(false);
static SIGPIPE_IGNORED: AtomicBool = AtomicBool::new(false);
static SIGCHLD_IGNORED: AtomicBool = AtomicBool::new(false);
/// Bit N: descriptor N (0, 1 or 2) was closed, and holds a close-on-exec placeholder.
static PLACEHOLDERS: AtomicU8 = AtomicU8::new(0);

/// The signal mask grace was started with, if the hook recorded it.
pub fn signal_mask() -> Option<SignalMask> {
    MASK_RECORDED
        .load(Ordering::Relaxed)
        .then(|| MASK.load(Ordering::Relaxed))
}

/// The signals pending when grace started (bit N-1 for signal N): sent before the exec that started grace,
/// blocked until then, and kept by the kernel across it. One the process that became grace sent itself
/// carries grace's own pid as its sender, like a signal grace raises itself, but it is not grace's.
pub fn pending_at_exec() -> SignalMask {
    PENDING_AT_EXEC.load(Ordering::Relaxed)
}

/// Whether grace was started with SIGPIPE ignored (Rust's runtime ignores it anyway, and std's `Command`
/// resets it to the default in every child, so only this record says what the child should get).
pub fn sigpipe_ignored() -> bool {
    SIGPIPE_IGNORED.load(Ordering::Relaxed)
}

/// Whether grace was started with SIGCHLD ignored. grace itself no longer has it ignored (see
/// [`record_and_undo`]); the child gets it back.
pub fn sigchld_ignored() -> bool {
    SIGCHLD_IGNORED.load(Ordering::Relaxed)
}

/// Whether grace was started with `signal` ignored. grace changes no disposition but SIGCHLD's (and Rust's
/// runtime SIGPIPE's), both recorded before it did; any other is still what grace inherited.
pub fn was_ignored(signal: libc::c_int) -> bool {
    match signal {
        libc::SIGPIPE => sigpipe_ignored(),
        libc::SIGCHLD => sigchld_ignored(),
        _ => is_ignored(signal),
    }
}

/// Which of descriptors 0, 1 and 2 were closed when grace started (bit N for descriptor N).
pub fn closed_standard_descriptors() -> u8 {
    PLACEHOLDERS.load(Ordering::Relaxed)
}

extern "C" fn record_and_undo() {
    // First, so that a signal sent from here on waits in the queue for the signalfd.
    if let Ok(previous) = set_signal_mask(ALL_SIGNALS) {
        MASK.store(previous, Ordering::Relaxed);
        MASK_RECORDED.store(true, Ordering::Relaxed);
    }
    // Before grace can raise anything itself: all of these came from before (or from others, in this
    // instant, which their sender pid tells).
    if let Ok(pending) = pending_signals() {
        PENDING_AT_EXEC.store(pending, Ordering::Relaxed);
    }
    SIGPIPE_IGNORED.store(is_ignored(libc::SIGPIPE), Ordering::Relaxed);
    SIGCHLD_IGNORED.store(is_ignored(libc::SIGCHLD), Ordering::Relaxed);
    // Ignored (or SA_NOCLDWAIT), SIGCHLD makes the kernel reap grace's children itself, discard their exit
    // statuses and send no SIGCHLD: grace would never learn that its child exited. Some launchers and
    // language runtimes start their children that way, and an ignored disposition survives exec.
    set_default_disposition(libc::SIGCHLD);
    PLACEHOLDERS.store(fill_closed_standard_descriptors(), Ordering::Relaxed);
}

// The hook is left out of unit-test builds: it would block every signal in the test harness, and the
// children the unit tests start would inherit that mask.
// SAFETY: an `.init_array` entry runs once, single-threaded, before `main` and before Rust's runtime; the
// function it points to makes system calls and stores atomics, and allocates nothing.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static RECORD_AND_UNDO: extern "C" fn() = record_and_undo;

/// Whether `signal`'s disposition is SIG_IGN.
fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only queries the current one.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    let queried = unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) };
    queried == 0 && current.sa_sigaction == libc::SIG_IGN
}

/// Sets `signal` to its default action, with no flags (SA_NOCLDWAIT cleared too).
fn set_default_disposition(signal: libc::c_int) {
    // SAFETY: SIG_DFL installs no handler of ours; a zeroed sigaction has an empty mask and no flags.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Gives every closed descriptor among 0, 1 and 2 something to hold, so that Rust's runtime does not abort
/// before `main` (it opens /dev/null for them, and aborts — silently — when it cannot, as in a container
/// whose /dev is an empty tmpfs). /dev/null, as the runtime would, when it can be opened: then the child
/// inherits it, and no file it opens later can land on its stdout. Otherwise one end of a pipe, marked
/// close-on-exec: grace's own log goes nowhere, as it would have, and the child gets the descriptor closed,
/// as grace did. Returns the descriptors that were closed (bit N for descriptor N).
fn fill_closed_standard_descriptors() -> u8 {
    let mut closed = 0;
    for descriptor in 0..=2 {
        if fcntl(descriptor, FcntlArg::F_GETFD) != Err(nix::errno::Errno::EBADF) {
            continue;
        }
        closed |= 1 << descriptor;
        // The lowest free descriptor is this one: the lower ones are open, or were filled in an earlier turn.
        if let Ok(null) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
            if null != descriptor {
                let _ = nix::unistd::dup2(null, descriptor);
                let _ = nix::unistd::close(null);
            }
            continue;
        }
        let Ok((read_end, write_end)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else {
            continue; // nothing is left to try; the runtime will abort
        };
        let end = if descriptor == 0 {
            &read_end
        } else {
            &write_end
        };
        place_at(end, descriptor);
        for end in [read_end, write_end] {
            if end.as_raw_fd() == descriptor {
                std::mem::forget(end); // it is the placeholder now
            }
        }
    }
    closed
}

/// Makes `descriptor` a close-on-exec duplicate of `end` (unless `end` is that descriptor already).
fn place_at(end: &OwnedFd, descriptor: libc::c_int) {
    if end.as_raw_fd() != descriptor {
        let _ = nix::unistd::dup3(end.as_raw_fd(), descriptor, OFlag::O_CLOEXEC);
    }
}
