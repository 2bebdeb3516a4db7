//! Why a process is still alive: what /proc says of it (state, command line, parent, what it does with the
//! signal it was sent) and a one-line hint for the classic causes of a hung shutdown.

use std::fs;

use crate::signals::{DefaultAction, Signal};
use crate::tree::Process;

/// The longest command line a diagnosis shows.
const MAX_COMMAND_LINE: usize = 120;

/// Shells that run a script's commands as children unless told to `exec` them.
const SHELLS: [&str; 8] = ["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox"];

/// What a process does with a signal, from /proc/PID/status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disposition {
    /// A handler is installed (`SigCgt`).
    Catches,
    /// Set to ignored (`SigIgn`): it never acts on it.
    Ignores,
    /// Blocked (`SigBlk`): pending until it unblocks it.
    Blocks,
    /// The default action.
    Default,
    /// /proc could not be read (it exited meanwhile).
    Unknown,
}

impl Disposition {
    /// `ignoring SIGTERM`, for the summary of many processes.
    pub fn participle(self) -> &'static str {
        match self {
            Disposition::Catches => "catching",
            Disposition::Ignores => "ignoring",
            Disposition::Blocks => "blocking",
            Disposition::Default => "at the default action for",
            Disposition::Unknown => "not examined for",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Catches => "catches",
            Disposition::Ignores => "ignores",
            Disposition::Blocks => "blocks",
            Disposition::Default => "default",
            Disposition::Unknown => "unknown",
        }
    }
}

/// One process that is still alive, and why it may be.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub command_line: String,
    /// What it does with the signal it was sent.
    pub disposition: Disposition,
    pub hint: String,
}

/// Diagnoses `process` for `signal` (sent to it already, or about to be); `has_children` tells whether processes of the tree are
/// its children (a shell with children is the classic "did not exec" case).
pub fn diagnose(
    process: &Process,
    signal: Signal,
    already_sent: bool,
    has_children: bool,
) -> Diagnosis {
    let status =
        crate::tree::read_proc_text(&format!("/proc/{}/status", process.pid)).unwrap_or_default();
    let disposition = disposition(&status, signal);
    // Whether it has taken the signal only means something once the signal was sent.
    let taken = if already_sent {
        Taken {
            pending: is_pending(&status, signal),
            in_sigwait: waits_for_signals(process.pid),
        }
    } else {
        Taken {
            pending: true,
            in_sigwait: false,
        }
    };
    // Frozen, it shows as in uninterruptible sleep (v1) or asleep (v2), whatever it does with signals.
    let freezer = frozen_by(process.pid);
    let hint = match (&freezer, disposition, signal.default_action()) {
        (Some(freezer), _, _) => freezer.hint(),
        // The default action of SIGWINCH or SIGCHLD (a stop signal rewritten to one) does not end anything.
        (None, Disposition::Default, action)
            if action != DefaultAction::Terminate && !taken.in_sigwait =>
        {
            match action {
                DefaultAction::Stop => "the signal's default action stops it, and grace's SIGCONT continues it: only a handler would make it exit",
                _ => "the signal's default action does nothing to it: only a handler would make it exit",
            }
            .to_string()
        }
        (None, _, _) => hint(process, disposition, taken, has_children).to_string(),
    };
    Diagnosis {
        command_line: command_line(process.pid, freezer.is_some()),
        disposition,
        hint,
    }
}

/// The cgroup freezer that holds a process frozen: v1 (`freezer.state` says FROZEN or FREEZING), where
/// the process cannot act on any signal, SIGKILL included, until its cgroup is thawed; or v2 (`cgroup.events`
/// says `frozen 1`), where it cannot act on a signal until then, but SIGKILL still ends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freezer {
    /// The file that says it is frozen.
    pub file: String,
    /// What it says: `FROZEN` or `FREEZING` (v1), `frozen 1` (v2).
    pub says: String,
}

impl Freezer {
    /// The hint for a frozen process, naming where it is frozen.
    pub fn hint(&self) -> String {
        let what = if self.says.starts_with("frozen") {
            "it cannot act on a signal until it is thawed; SIGKILL still ends it"
        } else {
            "no signal takes effect, SIGKILL included, until it is thawed"
        };
        format!(
            "frozen by a cgroup freezer ({} says {}): {what}",
            self.file, self.says
        )
    }
}

/// The freezer holding `pid` frozen, if one does: its v1 freezer cgroup or its v2 cgroup says so. The
/// cgroup is looked for under the usual mount points (/sys/fs/cgroup/freezer for v1; /sys/fs/cgroup, or
/// /sys/fs/cgroup/unified on a hybrid host, for v2) where /proc/PID/cgroup places it, then at the mount point
/// itself: a container that shares the host's cgroup namespace (Docker on cgroup v1) sees its own cgroup
/// mounted there, under the host's name for it. A hierarchy mounted elsewhere is not found; the hint for
/// state D still names a freezer among the causes.
pub fn frozen_by(pid: i32) -> Option<Freezer> {
    let memberships = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    // `ID:controllers:path`; a root cgroup has no freezer files.
    for membership in memberships.lines() {
        let mut fields = membership.splitn(3, ':').skip(1);
        let (Some(controllers), Some(path)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (mounts, name): (&[&str], &str) = if controllers.is_empty() {
            (
                &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
                "cgroup.events",
            )
        } else if controllers
            .split(',')
            .any(|controller| controller == "freezer")
        {
            (&["/sys/fs/cgroup/freezer"], "freezer.state")
        } else {
            continue;
        };
        for mount in mounts {
            for file in [format!("{mount}{path}/{name}"), format!("{mount}/{name}")] {
                let Ok(text) = fs::read_to_string(&file) else {
                    continue;
                };
                for line in text.lines().map(str::trim) {
                    if matches!(line, "frozen 1" | "FROZEN" | "FREEZING") {
                        return Some(Freezer {
                            file,
                            says: line.to_string(),
                        });
                    }
                }
            }
        }
    }
    None
}

/// What `pid` does with `signal`, from /proc/PID/status alone: the cheap part of a diagnosis, for the many
/// processes of a large tree.
pub fn disposition_of(pid: i32, signal: Signal) -> Disposition {
    let status = crate::tree::read_proc_text(&format!("/proc/{pid}/status")).unwrap_or_default();
    disposition(&status, signal)
}

/// Whether `pid` is waiting in sigwaitinfo (or sigtimedwait). While it does, the kernel unblocks the signals
/// it waits for, so /proc shows them as neither blocked nor caught: its wait channel tells.
pub fn waits_for_signals(pid: i32) -> bool {
    // A byte search: str::contains would bring its own copy of std's substring searcher.
    fs::read(format!("/proc/{pid}/wchan"))
        .is_ok_and(|wchan| wchan.windows(12).any(|window| window == b"sigtimedwait"))
}

/// Whether `name` (a process name or a file name) is a shell.
pub fn is_shell(name: &str) -> bool {
    SHELLS.contains(&name)
}

/// Whether the program `pid` runs is a shell: a script run through its `#!` line has the script's name as
/// its process name, but the shell's binary behind /proc/PID/exe.
fn executes_a_shell(pid: i32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|target| {
            target
                .file_name()
                .and_then(|name| name.to_str())
                .map(is_shell)
        })
        .unwrap_or(false)
}

/// Whether the signal is still waiting to be taken, and whether the process is waiting for signals.
#[derive(Clone, Copy, Debug, Default)]
struct Taken {
    pending: bool,
    in_sigwait: bool,
}

fn hint(
    process: &Process,
    disposition: Disposition,
    taken: Taken,
    has_children: bool,
) -> &'static str {
    match process.state {
        'D' => return "uninterruptible sleep: blocked in the kernel (I/O, a hung mount, or a cgroup freezer grace cannot see); even SIGKILL waits until that returns",
        'T' | 't' => return "stopped: it cannot act on any signal until it is continued",
        _ => {}
    }
    if process.entered_from_outside {
        return "entered the namespace from outside (`kubectl exec`, `nsenter`): not started by the command";
    }
    if has_children && (is_shell(&process.name) || executes_a_shell(process.pid)) {
        return "a shell that did not exec its server: it does not pass SIGTERM on to its children (use `exec server`)";
    }
    match disposition {
        Disposition::Ignores => "ignores the signal: only SIGKILL ends it",
        Disposition::Blocks if taken.pending => "blocks the signal: it has not looked at it yet",
        Disposition::Blocks => {
            "blocks the signal and took it (signalfd or sigwait), but has not exited"
        }
        Disposition::Catches => {
            "handles the signal but has not exited: still draining, or its handler does not exit"
        }
        Disposition::Default if taken.in_sigwait => {
            "waits for signals in sigwaitinfo: it took the signal but has not exited"
        }
        Disposition::Default => {
            "the signal's default action would end it: it was not sent one, or only just"
        }
        Disposition::Unknown => "it could not be inspected",
    }
}

/// Reads `SigBlk`, `SigIgn` and `SigCgt` (hex masks, bit N-1 for signal N) for `signal`. Blocked comes
/// first: a blocked signal waits whatever the handler is.
fn disposition(status: &str, signal: Signal) -> Disposition {
    let has = |field: &str| -> Option<bool> {
        let line = status.lines().find(|line| line.starts_with(field))?;
        let mask = u64::from_str_radix(line.get(field.len()..)?.trim(), 16).ok()?;
        Some(mask & (1 << (signal.number() - 1)) != 0)
    };
    match (has("SigBlk:"), has("SigIgn:"), has("SigCgt:")) {
        (Some(true), _, _) => Disposition::Blocks,
        (_, Some(true), _) => Disposition::Ignores,
        (_, _, Some(true)) => Disposition::Catches,
        (Some(false), Some(false), Some(false)) => Disposition::Default,
        _ => Disposition::Unknown,
    }
}

/// Whether `signal` is pending for the thread (`SigPnd`) or the process (`ShdPnd`).
fn is_pending(status: &str, signal: Signal) -> bool {
    ["SigPnd:", "ShdPnd:"].iter().any(|field| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal.number() - 1)) != 0)
    })
}

/// /proc/PID/cmdline with spaces between the arguments, cut to [`MAX_COMMAND_LINE`] characters; for a
/// process running or in uninterruptible sleep (but not `frozen`), the path of its executable and `…`.
///
/// Reading the arguments takes the process's memory-map lock, which a process holds for writing while it
/// forks (or maps memory): a fork bomb's processes hold it nearly all the time, and, starved of the CPU,
/// for long. Reads of one took 274 ms on average, up to 2.4 s, and made a survey before the SIGKILL 3.8 s
/// late. A process that is asleep (S), or frozen by a cgroup freezer (D, at a point where it holds no
/// lock), holds it for nothing; the executable's path needs no lock.
fn command_line(pid: i32, frozen: bool) -> String {
    let may_hold_its_memory_map = !frozen
        && crate::tree::read_process(pid)
            .map_or(true, |process| matches!(process.state, 'R' | 'D'));
    if may_hold_its_memory_map {
        return fs::read_link(format!("/proc/{pid}/exe"))
            .map(|exe| format!("{} …", exe.display()))
            .unwrap_or_default();
    }
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: String = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ");
    if text.chars().count() <= MAX_COMMAND_LINE {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_COMMAND_LINE - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tx\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000004000\nSigCgt:\t0000000000000002\n";

    #[test]
    fn reads_dispositions_from_the_masks() {
        let signal = |name: &str| name.parse::<Signal>().unwrap();
        assert_eq!(disposition(STATUS, Signal::TERM), Disposition::Ignores); // 0x4000: bit 14, signal 15
        assert_eq!(disposition(STATUS, signal("INT")), Disposition::Catches); // 0x2: bit 1, signal 2
        assert_eq!(disposition(STATUS, signal("ALRM")), Disposition::Default);
        let blocked = STATUS.replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000004000");
        assert_eq!(disposition(&blocked, Signal::TERM), Disposition::Blocks);
        assert_eq!(disposition("", Signal::TERM), Disposition::Unknown);
        assert!(is_pending(
            "SigPnd:\t0000000000000000\nShdPnd:\t0000000000004000\n",
            Signal::TERM
        ));
        assert!(!is_pending(STATUS, Signal::TERM));
    }

    #[test]
    fn hints_name_the_classic_causes() {
        let process = |name: &str, state| Process {
            pid: 2,
            parent_pid: 1,
            group_id: 2,
            name: name.into(),
            state,
            start_time: 0,
            exited: false,
            wait_status: None,
            entered_from_outside: false,
        };
        let none = Taken::default();
        let pending = Taken {
            pending: true,
            in_sigwait: false,
        };
        let waiting = Taken {
            pending: false,
            in_sigwait: true,
        };
        let cases = [
            ("sh", 'S', Disposition::Default, none, true, "did not exec"),
            (
                "sh",
                'S',
                Disposition::Default,
                none,
                false,
                "default action",
            ),
            (
                "python3",
                'S',
                Disposition::Default,
                waiting,
                false,
                "sigwaitinfo",
            ),
            (
                "python3",
                'S',
                Disposition::Ignores,
                none,
                false,
                "only SIGKILL",
            ),
            (
                "python3",
                'S',
                Disposition::Blocks,
                pending,
                false,
                "not looked",
            ),
            ("python3", 'S', Disposition::Blocks, none, false, "took it"),
            ("python3", 'T', Disposition::Catches, none, false, "stopped"),
            (
                "python3",
                'D',
                Disposition::Catches,
                none,
                false,
                "uninterruptible",
            ),
        ];
        for (name, state, disposition, taken, has_children, expected) in cases {
            let text = hint(&process(name, state), disposition, taken, has_children);
            assert!(
                text.contains(expected),
                "{name} {state} {disposition:?} {taken:?}: {text}"
            );
        }
        // A visitor's shell with a child is none of the command's: no "did not exec".
        let visitor = Process {
            entered_from_outside: true,
            ..process("sh", 'S')
        };
        let text = hint(&visitor, Disposition::Ignores, none, true);
        assert!(
            text.contains("entered the namespace from outside"),
            "{text}"
        );
    }

    #[test]
    fn tells_a_process_running_a_shell() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "read line"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // /proc/PID/exe names the shell once it has exec'd; until then it is this test binary.
        let pid = shell.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !executes_a_shell(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "sh never showed as a shell"
            );
            std::thread::yield_now();
        }
        assert!(!executes_a_shell(std::process::id() as i32));
        drop(shell.stdin.take());
        shell.wait().unwrap();
    }

    /// A process at the default action for SIGWINCH (a stop signal rewritten to it) is not told that the
    /// default action would end it.
    #[test]
    fn the_default_action_of_a_harmless_signal_is_not_said_to_end_it() {
        let me = crate::tree::read_process(std::process::id() as i32).unwrap();
        let winch = "WINCH".parse::<Signal>().unwrap();
        let diagnosis = diagnose(&me, winch, true, false);
        assert_eq!(diagnosis.disposition, Disposition::Default);
        assert!(
            diagnosis.hint.contains("does nothing to it"),
            "{}",
            diagnosis.hint
        );
    }

    #[test]
    fn a_process_in_no_frozen_cgroup_is_not_frozen() {
        assert_eq!(frozen_by(std::process::id() as i32), None);
        assert_eq!(frozen_by(-1), None);
    }

    #[test]
    fn inspects_a_live_process() {
        let me = crate::tree::read_process(std::process::id() as i32).unwrap();
        let diagnosis = diagnose(&me, Signal::TERM, true, false);
        assert!(!diagnosis.command_line.is_empty());
        assert_ne!(diagnosis.disposition, Disposition::Unknown);
    }
}
