//! The process tree grace is responsible for, found through /proc, and signalled through pidfds so that a
//! pid that was reaped and reused in the meantime is never hit.
//!
//! As PID 1 the tree is every other process in the PID namespace. Otherwise it is grace's descendants: a
//! process whose chain of parents leads to grace. Membership cannot change while a process lives (an orphan
//! is reparented to its nearest subreaper ancestor, which is grace or inside grace's tree), so a process
//! found in the tree stays in it until it dies.

use std::fs;
use std::io;
use std::os::fd::AsFd;

use crate::signals::Signal;
use crate::sys;

/// One live process of the tree, as /proc showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub parent_pid: i32,
    /// The kernel's short name for it (`comm`, at most 15 bytes).
    pub name: String,
    /// `R`, `S`, `D`, `T`, `Z`…, as in ps.
    pub state: char,
    /// Clock ticks after boot at which it started: with the pid, what identifies a process over time.
    pub start_time: u64,
}

/// Which processes make up the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// grace is PID 1: every other process in the namespace.
    Namespace,
    /// grace is a subreaper: the descendants of this pid (grace's own).
    Descendants { root: i32 },
}

/// Finds and signals the processes of grace's tree.
#[derive(Clone, Debug)]
pub struct Tree {
    scope: Scope,
    /// Whether /proc shows grace's own PID namespace. Without it the tree can only be signalled as a whole
    /// (as PID 1, with kill(-1)) and nothing can be named.
    proc_usable: bool,
}

/// What one attempt to signal a process of the tree came to.
#[derive(Debug)]
pub enum Delivery {
    Sent,
    /// It exited (or left the tree by dying and having its pid reused) before the signal was sent.
    Gone,
    Failed(io::Error),
}

/// How deep a chain of parents may be before it is taken as not leading to grace (pid_max bounds it anyway).
const MAX_ANCESTRY_DEPTH: usize = 4096;

impl Tree {
    /// The tree of the calling process: the namespace when it is PID 1, its descendants otherwise.
    pub fn of_current_process() -> Tree {
        let pid = std::process::id() as i32;
        let scope = if pid == 1 {
            Scope::Namespace
        } else {
            Scope::Descendants { root: pid }
        };
        let proc_usable = fs::read_link("/proc/self")
            .map(|target| target.as_os_str() == pid.to_string().as_str())
            .unwrap_or(false);
        Tree { scope, proc_usable }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether processes can be listed and named.
    pub fn can_list(&self) -> bool {
        self.proc_usable
    }

    /// Every live process of the tree but grace itself; zombies are left out (they are dead already and
    /// only wait for their parent to reap them).
    pub fn members(&self) -> Vec<Process> {
        if !self.proc_usable {
            return Vec::new();
        }
        let mut members: Vec<Process> = match self.scope {
            // The namespace's /proc shows only the namespace: listing all of it is listing the tree.
            Scope::Namespace => all_processes()
                .into_iter()
                .filter(|process| process.pid != 1)
                .collect(),
            // On a busy host /proc may list tens of thousands of processes; walking down from grace reads
            // only its own tree. The full scan is the fallback for kernels without /proc/PID/task/TID/children.
            Scope::Descendants { root } => {
                walk_descendants(root).unwrap_or_else(|| descendants(root, all_processes()))
            }
        };
        members.retain(|process| process.state != 'Z');
        members.sort_by_key(|process| process.pid);
        members
    }

    /// Sends `signal` to `process` if it is still that very process and still in the tree.
    ///
    /// The pidfd is opened first and everything is checked after: once open, it names one process for
    /// good, so if the checks pass, the signal goes to the process that was checked and to nothing else.
    pub fn signal(&self, process: &Process, signal: Signal) -> Delivery {
        let pidfd = match sys::pidfd_open(process.pid) {
            Ok(pidfd) => Some(pidfd),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Delivery::Gone,
            // Kernels before 5.3 have no pidfds, and older seccomp profiles refuse unknown calls with EPERM:
            // the same checks, then kill(), which leaves the short window between check and kill open to a
            // pid reuse.
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => None,
            Err(err) => return Delivery::Failed(err),
        };
        let still_ours = match read_process(process.pid) {
            Some(now) => now.start_time == process.start_time && self.contains(&now),
            None => false,
        };
        if !still_ours {
            return Delivery::Gone;
        }
        let sent = match &pidfd {
            Some(pidfd) => sys::pidfd_send_signal(pidfd.as_fd(), signal.number()),
            None => sys::send_signal(process.pid, signal.number()),
        };
        match sent {
            Ok(()) => Delivery::Sent,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Delivery::Gone,
            Err(err) => Delivery::Failed(err),
        }
    }

    /// Whether `process` belongs to the tree, by walking its parents up to grace.
    fn contains(&self, process: &Process) -> bool {
        let root = match self.scope {
            Scope::Namespace => return process.pid != 1,
            Scope::Descendants { root } => root,
        };
        let mut current = process.clone();
        for _ in 0..MAX_ANCESTRY_DEPTH {
            if current.parent_pid == root {
                return true;
            }
            match read_process(current.parent_pid) {
                // A parent always started no later than its child; a later start means the parent died and
                // its pid now belongs to someone else, so this chain proves nothing.
                Some(parent) if parent.start_time <= current.start_time => current = parent,
                _ => return false,
            }
        }
        false
    }
}

/// The descendants of `root`, found by reading each process's children lists (one per thread: a thread's
/// list holds the children it forked). `None` if the kernel does not provide them.
fn walk_descendants(root: i32) -> Option<Vec<Process>> {
    let mut found = Vec::new();
    let mut pending = vec![(root, 0)];
    while let Some((parent, parent_start)) = pending.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{parent}/task")) else {
            if parent == root {
                return None;
            }
            continue; // it exited meanwhile; its children are being reparented and the next sweep sees them
        };
        for task in tasks.filter_map(Result::ok) {
            let children_file = task.path().join("children");
            let children = match fs::read_to_string(&children_file) {
                Ok(children) => children,
                Err(err) if err.kind() == io::ErrorKind::NotFound && parent == root => return None,
                Err(_) => continue,
            };
            for pid in children
                .split_ascii_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok())
            {
                // Read after listing: the pid may have been reused since, so the link is checked again.
                match read_process(pid) {
                    Some(child)
                        if child.parent_pid == parent && child.start_time >= parent_start =>
                    {
                        pending.push((child.pid, child.start_time));
                        found.push(child);
                    }
                    _ => {}
                }
            }
        }
    }
    Some(found)
}

/// The descendants of `root` among `all`, following parent links that are consistent in start time.
fn descendants(root: i32, all: Vec<Process>) -> Vec<Process> {
    use std::collections::HashMap;
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    for (index, process) in all.iter().enumerate() {
        children.entry(process.parent_pid).or_default().push(index);
    }
    let mut found = Vec::new();
    let mut pending: Vec<(i32, u64)> = vec![(root, 0)];
    while let Some((parent, parent_start)) = pending.pop() {
        for &index in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            let Some(child) = all.get(index) else {
                continue;
            };
            if child.start_time >= parent_start && child.pid != root {
                pending.push((child.pid, child.start_time));
                found.push(child.clone());
            }
        }
    }
    found
}

/// Every process /proc lists, read one by one (a process may vanish between the listing and the read).
fn all_processes() -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_process)
        .collect()
}

/// Reads /proc/PID/stat.
pub fn read_process(pid: i32) -> Option<Process> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

/// Parses `pid (comm) state ppid … starttime …`; comm may hold spaces and parentheses, so it ends at the
/// last `)`.
fn parse_stat(pid: i32, stat: &[u8]) -> Option<Process> {
    let open = stat.iter().position(|&byte| byte == b'(')?;
    let close = stat.iter().rposition(|&byte| byte == b')')?;
    let name = String::from_utf8_lossy(stat.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent_pid = fields.next()?.parse().ok()?;
    // starttime is field 22 of the line; state was field 3.
    let start_time = fields.nth(22 - 3 - 2)?.parse().ok()?;
    Some(Process {
        pid,
        parent_pid,
        name,
        state,
        start_time,
    })
}

/// `pid (name)`, or `pid name, pid name…` for a list, for log lines.
pub fn describe(processes: &[Process]) -> String {
    let mut text = String::new();
    for (index, process) in processes.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!("{} ({})", process.pid, process.name));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i32, parent_pid: i32, start_time: u64) -> Process {
        Process {
            pid,
            parent_pid,
            name: format!("p{pid}"),
            state: 'S',
            start_time,
        }
    }

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat =
            b"42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100 0 0";
        let parsed = parse_stat(42, stat).unwrap();
        assert_eq!(
            parsed,
            Process {
                pid: 42,
                parent_pid: 7,
                name: "a) b (c)".into(),
                state: 'S',
                start_time: 12345
            }
        );
        assert_eq!(parse_stat(1, b"1 (x) S"), None);
    }

    #[test]
    fn reads_its_own_entry() {
        let me = read_process(std::process::id() as i32).unwrap();
        assert_eq!(me.parent_pid, nix::unistd::getppid().as_raw());
        assert_eq!(
            read_process(me.pid).map(|again| again.start_time),
            Some(me.start_time)
        );
    }

    #[test]
    fn descendants_follow_consistent_parent_links_only() {
        let all = vec![
            process(10, 1, 100), // grace
            process(11, 10, 110),
            process(12, 11, 120),
            process(13, 1, 90),   // outside
            process(14, 13, 95),  // outside, under 13
            process(15, 12, 100), // claims parent 12 but started before it: 12 is a reused pid
        ];
        let found: Vec<i32> = descendants(10, all)
            .iter()
            .map(|process| process.pid)
            .collect();
        let mut sorted = found.clone();
        sorted.sort();
        assert_eq!(sorted, [11, 12]);
    }

    /// The pid-reuse rule, made deterministic: a listing whose start time no longer matches the live process
    /// at that pid (which is what a reaped and reused pid looks like) is `Gone`, and nothing is sent; so is a
    /// live process outside the tree. The listing that matches is signalled, and once reaped it is `Gone`.
    #[test]
    fn only_the_very_process_that_was_listed_is_signalled() {
        use std::os::unix::process::ExitStatusExt;
        let tree = Tree {
            scope: Scope::Descendants {
                root: std::process::id() as i32,
            },
            proc_usable: true,
        };
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = sleeper.id() as i32;
        let listed = read_process(pid).unwrap();
        for start_time in [listed.start_time - 1, listed.start_time + 1] {
            let reused = Process {
                start_time,
                ..listed.clone()
            };
            assert!(matches!(tree.signal(&reused, Signal::KILL), Delivery::Gone));
        }
        // Outside the tree: the test's own parent (SIGCONT, harmless should the rule ever break).
        let outside = read_process(nix::unistd::getppid().as_raw()).unwrap();
        assert!(matches!(
            tree.signal(&outside, Signal::CONT),
            Delivery::Gone
        ));

        // SIGTERM to the listing that matches: had a stale one been sent, SIGKILL would have ended it.
        assert!(matches!(tree.signal(&listed, Signal::TERM), Delivery::Sent));
        assert_eq!(
            sleeper.wait().unwrap().signal(),
            Some(libc::SIGTERM),
            "a stale listing was signalled"
        );
        assert!(matches!(tree.signal(&listed, Signal::KILL), Delivery::Gone));
    }
}
