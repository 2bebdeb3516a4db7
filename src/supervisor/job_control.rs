//! grace as a job in an interactive shell: when its child stops (Ctrl-Z, SIGTTIN, SIGTTOU), grace stops
//! too, so that the shell sees the job stopped and takes its terminal back; when the shell continues the
//! job (`fg`, `bg`), grace gives the terminal back to the child if the shell gave it to grace, and continues
//! the child's group. Without this the shell waits for ever for a job whose child is stopped (tini does
//! the same; dumb-init gets it right).

use std::io::IsTerminal;
use std::os::fd::AsFd;

use super::Supervisor;
use crate::log_sink;
use crate::shutdown::Phase;
use crate::signals::Signal;
use crate::sys;

impl Supervisor {
    /// The main child was stopped by `signal`.
    pub(super) fn on_main_stopped(&mut self, signal: i32) {
        let name =
            Signal::from_number(signal).map_or_else(|| signal.to_string(), |s| s.to_string());
        // Not as PID 1 (nothing above it to see a job), not without the terminal (not a shell's job), and
        // not once a shutdown runs, which must go on to its deadline.
        if !self.job_control || self.run.shutdown.phase() != Phase::Running {
            log::info!(
                event = "main_stopped", pid = self.run.main.pid, signal:% = name;
                "main child {} stopped by {name}", self.main_name()
            );
            return;
        }
        log::info!(
            event = "main_stopped", pid = self.run.main.pid, signal:% = name;
            "main child {} stopped by {name}: stopping grace too, so that the shell sees the job stopped",
            self.main_name()
        );
        log_sink::flush();
        // SIGSTOP, the one stop signal grace cannot have blocked: grace stops as this call returns, and
        // goes on from here when the shell continues the job.
        let _ = sys::send_signal(self.own_pid, Signal::STOP.number());
        let stdin = std::io::stdin();
        let in_foreground = owns_terminal_foreground();
        if in_foreground {
            // `fg`: the shell gave the terminal to grace's group; the child's group is the one that reads it.
            let _ = nix::unistd::tcsetpgrp(
                stdin.as_fd(),
                nix::unistd::Pid::from_raw(self.run.main.pid),
            );
        }
        let _ = sys::send_signal(-self.run.main.pid, Signal::CONT.number());
        self.swallow_continue = true;
        log::info!(
            event = "main_continued", pid = self.run.main.pid, foreground = in_foreground;
            "continued {}: the main child's group too{}",
            if in_foreground { "in the foreground" } else { "in the background" },
            if in_foreground { ", with the terminal" } else { "" }
        );
    }
}

/// Whether stdin is a terminal whose foreground process group is grace's: at the start, the child then
/// takes it over; after a stop, `fg` gave it to grace, and the child's group gets it back.
pub fn owns_terminal_foreground() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal()
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == nix::unistd::getpgrp())
}
