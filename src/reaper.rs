//! Reaping: collect every exited child (grace's own or an orphan reparented to it) until none is left.

use crate::sys;

/// What one round of reaping found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// The main child's raw wait status, if it was reaped in this round.
    pub main_status: Option<i32>,
    /// The main child was stopped, by this signal (job control).
    pub main_stopped: Option<i32>,
    /// No child is left at all: the tree is empty.
    pub tree_empty: bool,
}

/// Reaps until waitpid says nothing more has exited. One SIGCHLD can stand for many exits (standard
/// signals coalesce), so this always runs to the end rather than once per signal.
pub fn reap_exited(main_pid: i32, warn_on_reap: bool) -> Reaped {
    let mut reaped = Reaped::default();
    loop {
        match sys::reap_one() {
            // Stops and continues are reported too (WUNTRACED, WCONTINUED): the main child's matter to job
            // control; another child's, nothing to reap.
            Ok(Some((pid, status))) if libc::WIFSTOPPED(status) => {
                if pid == main_pid {
                    reaped.main_stopped = Some(libc::WSTOPSIG(status));
                }
            }
            Ok(Some((_, status))) if libc::WIFCONTINUED(status) => {}
            Ok(Some((pid, status))) if pid == main_pid => reaped.main_status = Some(status),
            Ok(Some((pid, _))) => {
                if warn_on_reap {
                    // tini's -w wording, so existing log filters keep working.
                    warn!(event = "reaped", pid = pid; "Reaped zombie process with pid={pid}");
                }
            }
            Ok(None) => return reaped,
            Err(err) if err.raw_os_error() == Some(libc::ECHILD) => {
                reaped.tree_empty = true;
                return reaped;
            }
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => continue,
            Err(err) => {
                error!("waitpid failed: {err}; will retry on the next event");
                return reaped;
            }
        }
    }
}

/// Reaps until waitpid says nothing more has exited, calling `on_exit` with the pid and raw wait status of
/// each child that exited (stops and continues are not exits, and are passed over); returns whether no child
/// is left at all. For several services, where any of grace's children may be one that matters.
pub fn reap_each(mut on_exit: impl FnMut(i32, i32)) -> bool {
    loop {
        match sys::reap_one() {
            Ok(Some((_, status))) if libc::WIFSTOPPED(status) || libc::WIFCONTINUED(status) => {}
            Ok(Some((pid, status))) => on_exit(pid, status),
            Ok(None) => return false,
            Err(err) if err.raw_os_error() == Some(libc::ECHILD) => return true,
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => continue,
            Err(err) => {
                error!("waitpid failed: {err}; will retry on the next event");
                return false;
            }
        }
    }
}
