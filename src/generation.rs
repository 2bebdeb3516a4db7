//! One run of the command — a generation: its main child, the shutdown of its tree, and why it is ending.
//! The first run is generation 1; each restart starts the next. The shutdown machine ends a generation the
//! same way whatever follows; the supervisor decides what does (exit, or a new start after a delay).

use std::time::{Duration, Instant};

use crate::child::MainChild;
use crate::shutdown::{Shutdown, Timings};
use crate::signals::{Received, Signal};

/// Why the current generation is ending, which decides what follows its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// No stop or restart signal: if the main child exits, `--restart` decides.
    Undecided,
    /// A stop signal: grace exits once the tree is empty.
    Stop,
    /// The restart signal: the command starts again once the tree is empty (unless a stop signal comes
    /// first, which makes this the final shutdown).
    Restart(Received),
}

/// One run of the command.
#[derive(Debug)]
pub struct Generation {
    /// 1 for the first run, 2 after the first restart…
    pub number: u32,
    pub main: MainChild,
    /// The main child's exit status, once it has been reaped. Until then its pid is safe to signal.
    pub main_status: Option<u8>,
    /// The main child was sent SIGKILL (and may be dying of it, in uninterruptible sleep).
    pub main_killed: bool,
    /// grace may not signal the main child: its SIGKILL was refused (EPERM).
    pub main_refused: bool,
    pub shutdown: Shutdown,
    /// The first stop signal, kept to be forwarded when the pre-stop delay ends.
    pub first_stop: Option<Received>,
    /// What the main child was sent on the stop signal (after --rewrite), for the diagnosis.
    pub forwarded_stop: Option<Signal>,
    pub started_at: Instant,
    /// When the main child exited, once it has.
    pub exited_at: Option<Instant>,
    /// When the report for the coming SIGKILL began to be read.
    pub surveyed_at: Option<Instant>,
    pub ending: Ending,
}

impl Generation {
    pub fn new(number: u32, main: MainChild, timings: Timings) -> Generation {
        Generation {
            number,
            main,
            main_status: None,
            main_killed: false,
            main_refused: false,
            shutdown: Shutdown::new(timings),
            first_stop: None,
            forwarded_stop: None,
            started_at: Instant::now(),
            exited_at: None,
            surveyed_at: None,
            ending: Ending::Undecided,
        }
    }

    /// How long the main child ran (so far, or until it exited).
    pub fn ran(&self) -> Duration {
        self.exited_at
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started_at)
    }
}
