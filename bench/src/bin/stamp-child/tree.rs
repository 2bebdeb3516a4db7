//! `tree N`: a wide tree of processes that ignore SIGTERM, for the escalation at scale: only a
//! SIGKILL ends them before EOF on stdin.

use crate::{ignore_sigterm, ready, sys, wait_for_eof};
use std::io;

/// Ignores SIGTERM, forks `count` children (they inherit the disposition and idle in
/// `read(stdin)`), prints `ready` once every one of them exists, then idles until EOF. The
/// children end on that EOF too, so the bench can tear the tree down without any signal.
///
/// Forked rather than executed: a fork of this small process costs a few page tables, far
/// less than starting a program, and leaves a real process (its own memory map) for the
/// kernel to tear down when it is killed, as a real tree would.
pub fn run(count: u32) -> io::Result<()> {
    ignore_sigterm()?;
    for made in 0..count {
        sys::fork_idle_child().map_err(|err| {
            io::Error::new(err.kind(), format!("fork of child {}: {err}", made + 1))
        })?;
    }
    ready()?;
    wait_for_eof()
}
