//! grace as a job in a shell: the terminal goes to the main child's group only while grace's group holds it
//! (a foreground job), and comes back to grace's group when the main child exits; when the child stops
//! (Ctrl-Z, SIGTTIN, SIGTTOU), grace stops its own process group as the kernel would have stopped it without
//! grace, so that the shell sees the job stopped and takes its terminal back; when the shell continues the
//! job (`fg`, `bg`), grace gives the terminal to the child if the shell gave it to grace, and continues the
//! child's group. Without this the shell waits for ever for a job whose child is stopped (tini does the
//! same; dumb-init gets it right).

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::unistd::Pid;

use super::Supervisor;
use crate::log_sink;
use crate::shutdown::Phase;
use crate::signals::Signal;
use crate::sys;
use crate::wording::seconds;

impl Supervisor {
    /// The main child was stopped by `signal`.
    pub(super) fn on_main_stopped(&mut self, signal: i32) {
        let name = signal_name(signal);
        // Not as PID 1 (nothing above it to see a job), not without a controlling terminal (not a shell's
        // job), and not once a shutdown runs, which must go on to its deadline.
        if !self.job_control || self.run.shutdown.phase() != Phase::Running {
            info!(
                event = "main_stopped", pid = self.run.main.pid, signal:% = name;
                "main child {} stopped by {name}", self.main_name()
            );
            return;
        }
        let keyboard_stop = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&signal);
        if signal != libc::SIGTSTP && keyboard_stop && owns_terminal_foreground() {
            // The child touched the terminal before grace handed it over (the shell's `fg` gave it to grace's
            // group a moment ago): the job is in the foreground, and nothing needs to stop.
            info!(
                event = "main_stopped", pid = self.run.main.pid, signal:% = name;
                "main child {} stopped by {name} while grace's group has the terminal", self.main_name()
            );
            self.continue_main_group(true);
            return;
        }
        info!(
            event = "main_stopped", pid = self.run.main.pid, signal:% = name;
            "main child {} stopped by {name}: stopping grace too, so that the shell sees the job stopped",
            self.main_name()
        );
        log_sink::flush();
        if keyboard_stop {
            // Without grace, the kernel would have sent this signal to the whole process group the child
            // would be in: grace's. So a wrapper that shares it without job control (`bash -c`, make, npm)
            // stops too, and the interactive shell above sees its job stopped (it watches the wrapper, not
            // grace); and grace stops by it as any process of that group does: not when the group is
            // orphaned (no shell above it to see a job: grace a session leader under `script -c`), where the
            // kernel discards it and grace continues the child at once, as if it had never stopped.
            let _ = sys::send_signal(0, signal);
            let _ = sys::act_on_pending(signal);
        } else {
            // SIGSTOP (from kill(1)), the one stop signal grace cannot have blocked: grace stops as this call
            // returns.
            let _ = sys::send_signal(self.own_pid, Signal::STOP.number());
        }
        // Here when the shell continues the job, or at once when grace did not stop. The SIGCONT that
        // continued grace is still queued: forwarding it late could continue a child stopped again meanwhile.
        let continued = sys::is_pending(Signal::CONT.number());
        self.swallow_continue = continued;
        if !continued && keyboard_stop {
            info!(
                event = "main_continued", pid = self.run.main.pid, foreground = false;
                "grace's process group was not stopped: it has no shell above it to see a job (an orphaned \
                 group), and the kernel does not stop those; the main child's group is continued, as if it \
                 were in grace's"
            );
            let _ = sys::send_signal(-self.run.main.pid, Signal::CONT.number());
            return;
        }
        self.continue_main_group(owns_terminal_foreground());
    }

    /// A SIGCONT that was not one grace passed on already. When it comes with grace's group in the
    /// terminal's foreground — the shell's `fg` after grace alone was stopped (`kill -STOP`), not through its
    /// child — the terminal goes to the child's group, which is continued; returns whether that was done.
    /// Otherwise the SIGCONT is forwarded as any other signal. (`fg` of a job the shell sees running sends no
    /// SIGCONT: a child started with `&` gets the terminal when it first touches it, see
    /// [`Supervisor::on_main_stopped`].)
    pub(super) fn on_continued(&mut self) -> bool {
        if !self.job_control
            || self.run.main_status.is_some()
            || self.run.shutdown.phase() != Phase::Running
            || !owns_terminal_foreground()
        {
            return false;
        }
        self.continue_main_group(true);
        true
    }

    /// Continues the main child's group, first giving it the terminal when `in_foreground` (grace's group
    /// has it).
    fn continue_main_group(&self, in_foreground: bool) {
        if in_foreground {
            let _ =
                nix::unistd::tcsetpgrp(std::io::stdin().as_fd(), Pid::from_raw(self.run.main.pid));
        }
        let _ = sys::send_signal(-self.run.main.pid, Signal::CONT.number());
        info!(
            event = "main_continued", pid = self.run.main.pid, foreground = in_foreground;
            "continued {}: the main child's group too{}",
            if in_foreground { "in the foreground" } else { "in the background" },
            if in_foreground { ", with the terminal" } else { "" }
        );
    }

    /// The terminal's foreground is the main child's group, whose leader is gone or going (it exited, or
    /// grace is exiting): it goes back to grace's group, the one grace took it from. A dead group in the
    /// foreground would take Ctrl-C, Ctrl-Z and Ctrl-\ to nobody, and make a wrapper that reads the terminal
    /// after grace (`bash -c 'grace -- true; read x'`) a background reader, stopped by SIGTTIN.
    pub(super) fn take_back_terminal(&self) {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return;
        }
        let main_group = Pid::from_raw(self.run.main.pid);
        if nix::unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == main_group) {
            // Allowed from the background because grace has SIGTTOU blocked.
            match nix::unistd::tcsetpgrp(stdin.as_fd(), nix::unistd::getpgrp()) {
                Ok(()) => debug!(
                    "the terminal's foreground is grace's group again (it was the main child's, {main_group})"
                ),
                Err(errno) => debug!(
                    "could not give the terminal back to grace's group: {}",
                    errno.desc()
                ),
            }
        }
    }

    /// Stops grace itself, as a job, on a stop signal from the terminal while it waits to restart (no child
    /// group holds the terminal then: grace's does). Returns when the shell continues the job.
    pub(super) fn stop_while_waiting(&self, signal: Signal, until: Instant) -> bool {
        let keyboard_stop =
            [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&signal.number());
        if !self.job_control || !keyboard_stop {
            return false;
        }
        info!(
            event = "stopped", signal:% = signal;
            "stopped by {signal} while waiting to restart: stopping grace, a job of the shell"
        );
        log_sink::flush();
        // Read from the signalfd already: sent again, it stops grace as it would any process of the group
        // (not when the group is orphaned). The SIGCONT that continues grace then comes from the signalfd,
        // and has no child to go to.
        let _ = sys::send_signal(self.own_pid, signal.number());
        let _ = sys::act_on_pending(signal.number());
        let left = until.saturating_duration_since(Instant::now());
        info!(
            event = "continued", foreground = owns_terminal_foreground();
            "continued while waiting to restart: {} left", seconds(left)
        );
        true
    }
}

fn signal_name(signal: i32) -> String {
    Signal::from_number(signal).map_or_else(|| signal.to_string(), |s| s.to_string())
}

/// Whether stdin is a terminal whose foreground process group is grace's: at each start, the child then
/// takes it over; after a stop, `fg` gave it to grace, and the child's group gets it back.
pub fn owns_terminal_foreground() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal()
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == nix::unistd::getpgrp())
}

/// Whether stdin is grace's controlling terminal (it has a foreground group for grace to ask about): grace
/// may then be a job of a shell, in the foreground or in the background.
pub fn has_controlling_terminal() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal() && nix::unistd::tcgetpgrp(&stdin).is_ok()
}
