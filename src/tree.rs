//! The process tree grace is responsible for, found through /proc, and signalled through pidfds so that a
//! pid that was reaped and reused in the meantime is never hit.
//!
//! As PID 1 the tree is every other process in the PID namespace. Otherwise it is grace's descendants,
//! found by walking down from grace. Membership cannot change while a process lives (an orphan is
//! reparented to its nearest subreaper ancestor, which is grace or inside grace's tree), so a process found
//! in the tree stays in it until it dies: signalling it again needs only proof that it is the same process
//! (its start time), not another walk.
//!
//! Kernel threads are never part of it: they show in /proc only in the initial PID namespace (grace as a
//! machine's or microVM's first process), ignore signals, and never exit.
//!
//! As PID 1, a listing also tells which processes entered the namespace from outside (`kubectl exec`,
//! `nsenter`): visitors, which a final stop ends with the rest but a restart leaves alone.

use std::cell::Cell;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::signals::Signal;
use crate::sys;

/// One process of the tree, as /proc showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub parent_pid: i32,
    /// Its process group's id, as grace's namespace sees it: 0 when the group's leader is outside the
    /// namespace (a process that entered it keeps its group).
    pub group_id: i32,
    /// The kernel's short name for it (`comm`, at most 15 bytes).
    pub name: String,
    /// `R`, `S`, `D`, `T`, `Z`…, as in ps. `Z` with [`Process::exited`] false: its main thread exited
    /// (pthread_exit) while other threads still run, so it is alive.
    pub state: char,
    /// Clock ticks after boot at which it started: with the pid, what identifies a process over time.
    pub start_time: u64,
    /// Every thread of it has exited: a zombie waiting to be reaped, dead already.
    pub exited: bool,
    /// For a process that has exited, its wait status (field 52 of /proc/PID/stat, Linux 3.5 and later),
    /// when /proc shows it.
    pub wait_status: Option<i32>,
    /// As PID 1, it entered the namespace from outside, or descends from a process that did (see
    /// [`mark_visitors`]): not started by grace's command. Known from a listing of the namespace only.
    pub entered_from_outside: bool,
}

impl Process {
    /// Whether it died of SIGKILL or is dying of it (alive now, but sent one), as far as /proc tells: a
    /// process that exited on its own shows its status.
    pub fn ended_by_sigkill(&self) -> bool {
        !self.exited
            || self
                .wait_status
                .map_or(true, |status| status & 0x7f == libc::SIGKILL)
    }
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
#[derive(Debug)]
pub struct Tree {
    scope: Scope,
    /// Whether /proc shows grace's own PID namespace. Without it the tree can only be signalled as a whole
    /// (as PID 1, with kill(-1); as a subreaper, through the main child's process group) and nothing can be
    /// named. Looked at again while it does not: as a machine's first process, grace starts before its
    /// command mounts /proc.
    proc_usable: Cell<bool>,
    /// grace's own pid, which /proc/self must name.
    own_pid: i32,
    /// As PID 1, pid 2 existed before grace started anything: this is a machine's initial PID namespace,
    /// where kthreadd is pid 2 and kernel threads count for kill(-1, 0) (a container's namespace is empty
    /// until grace's child starts). Without /proc, grace then cannot tell them from processes.
    kernel_threads: bool,
    /// Whether pidfds work here: kernels before 5.3 have none, and a seccomp profile older than them refuses
    /// them (EPERM or ENOSYS). Cleared at the first refusal, so later signals go straight to kill().
    pidfds_usable: Cell<bool>,
}

/// What one attempt to signal a process of the tree came to.
#[derive(Debug)]
pub enum Delivery {
    Sent,
    /// It exited (or left the tree by dying and having its pid reused) before the signal was sent.
    Gone,
    /// grace may not signal it (EPERM): it runs as another user, or entered from a more privileged
    /// namespace. It is alive, and nothing grace can do will end it.
    NotPermitted,
    Failed(io::Error),
}

/// The flag of a kernel thread in the `flags` field of /proc/PID/stat (PF_KTHREAD).
const PF_KTHREAD: u64 = 0x0020_0000;

impl Tree {
    /// The tree of the calling process: the namespace when it is PID 1, its descendants otherwise. Call
    /// before starting the child.
    pub fn of_current_process() -> Tree {
        let pid = std::process::id() as i32;
        let scope = if pid == 1 {
            Scope::Namespace
        } else {
            Scope::Descendants { root: pid }
        };
        Tree {
            scope,
            proc_usable: Cell::new(proc_shows(pid)),
            own_pid: pid,
            kernel_threads: scope == Scope::Namespace && sys::send_signal(2, 0).is_ok(),
            pidfds_usable: Cell::new(true),
        }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether grace is the first process of a machine, where kernel threads share its namespace.
    pub fn has_kernel_threads(&self) -> bool {
        self.kernel_threads
    }

    /// Whether processes can be listed and named.
    pub fn can_list(&self) -> bool {
        if !self.proc_usable.get() && proc_shows(self.own_pid) {
            self.proc_usable.set(true);
        }
        self.proc_usable.get()
    }

    /// Every live process of the tree but grace itself, parents before their children. Zombies are left out:
    /// they are dead already and only wait for their parent to reap them.
    pub fn members(&self) -> Vec<Process> {
        let mut members = self.listing();
        members.retain(|process| !process.exited);
        members
    }

    /// Every process of the tree but grace itself, zombies included, parents before their children (see
    /// [`parents_first`]).
    pub fn listing(&self) -> Vec<Process> {
        if !self.can_list() {
            return Vec::new();
        }
        let mut listed: Vec<Process> = match self.scope {
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
        if self.scope == Scope::Namespace {
            crate::sort::by_key(&mut listed, |process| crate::sort::pid_key(process.pid));
            mark_visitors(&mut listed);
        }
        parents_first(&mut listed);
        listed
    }

    /// Sends `signal` to `process` if it is still that very process.
    ///
    /// The pidfd is opened first and the start time checked after: once open, it names one process for good,
    /// so if the check passes, the signal goes to the process that was listed (a member of the tree, which it
    /// stays while it lives) and to nothing else.
    pub fn signal(&self, process: &Process, signal: Signal) -> Delivery {
        match self.open_checked(process) {
            Ok(pidfd) => self.send_checked(process.pid, pidfd.as_ref(), signal),
            Err(delivery) => delivery,
        }
    }

    /// A pidfd on `process`, checked to be that very process: a signal sent through it later reaches that
    /// process or fails, with no other check. `None` when pidfds are not usable here or it has exited.
    pub fn pin(&self, process: &Process) -> Option<OwnedFd> {
        if !self.pidfds_usable.get() {
            return None;
        }
        self.open_checked(process).ok().flatten()
    }

    /// Sends `signal` through `pidfd`, a pin on `process` (see [`Tree::pin`]); through a checked kill()
    /// if the kernel refuses pidfd_send_signal.
    pub fn signal_pinned(&self, process: &Process, pidfd: &OwnedFd, signal: Signal) -> Delivery {
        match sys::pidfd_send_signal(pidfd.as_fd(), signal.number()) {
            Ok(()) => Delivery::Sent,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Delivery::Gone,
            // EPERM is also what a seccomp profile says: a checked kill() tells the two apart.
            Err(err) if is_refused(&err) => {
                if is_still(process) {
                    delivery(self.kill_after_refusal(process.pid, signal))
                } else {
                    Delivery::Gone
                }
            }
            Err(err) => Delivery::Failed(err),
        }
    }

    /// A pidfd on `process` (None where pidfds are not usable), opened before the start time is checked:
    /// Err with the delivery to report when it has gone or the pidfd could not be opened.
    fn open_checked(&self, process: &Process) -> Result<Option<OwnedFd>, Delivery> {
        let pidfd = if self.pidfds_usable.get() {
            match sys::pidfd_open(process.pid) {
                Ok(pidfd) => Some(pidfd),
                Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Err(Delivery::Gone),
                Err(err) if is_refused(&err) => {
                    self.pidfds_usable.set(false);
                    None
                }
                Err(err) => return Err(Delivery::Failed(err)),
            }
        } else {
            None
        };
        if !is_still(process) {
            return Err(Delivery::Gone);
        }
        Ok(pidfd)
    }

    /// Sends through `pidfd` when there is one; otherwise, or when the kernel refuses the pidfd call, with
    /// kill(), which leaves the short window between the check and the kill open to a pid reuse.
    fn send_checked(&self, pid: i32, pidfd: Option<&OwnedFd>, signal: Signal) -> Delivery {
        delivery(match pidfd {
            Some(pidfd) => match sys::pidfd_send_signal(pidfd.as_fd(), signal.number()) {
                // EPERM is also what a seccomp profile says: kill() tells the two apart.
                Err(err) if is_refused(&err) => self.kill_after_refusal(pid, signal),
                sent => sent,
            },
            None => sys::send_signal(pid, signal.number()),
        })
    }

    /// kill() where the kernel refused a pidfd call; if kill() is allowed, the refusal was a seccomp
    /// profile's, and pidfds are not tried again.
    fn kill_after_refusal(&self, pid: i32, signal: Signal) -> io::Result<()> {
        let by_kill = sys::send_signal(pid, signal.number());
        if by_kill.is_ok() {
            self.pidfds_usable.set(false);
        }
        by_kill
    }
}

/// Orders a listing so that every process comes after its parent: by depth below the processes whose parent
/// is not listed, then by pid. Signals go out in this order, one process at a time, and a parent signalled
/// after its child could act on the child's death first: a supervisor forks a replacement, a shell whose
/// `wait` returns exits on its own before its SIGKILL and leaves the report short. Pid order is not enough:
/// once pids wrap past the kernel's pid_max, a child's pid is lower than its parent's.
pub fn parents_first(listed: &mut Vec<Process>) {
    use std::collections::HashMap;
    let index_of: HashMap<i32, usize> = listed
        .iter()
        .enumerate()
        .map(|(index, process)| (process.pid, index))
        .collect();
    // Each depth is kept once known, so that every chain is walked once however deep the tree.
    let mut depths: Vec<Option<u32>> = vec![None; listed.len()];
    let mut path = Vec::new();
    for start in 0..listed.len() {
        path.clear();
        let mut current = Some(start);
        let base = loop {
            let Some(index) = current else { break 0 };
            if let Some(&Some(depth)) = depths.get(index) {
                break depth + 1;
            }
            // A chain longer than the listing would be a loop: pid reuse in a racing listing.
            if path.len() > listed.len() {
                break 0;
            }
            path.push(index);
            current = listed
                .get(index)
                .and_then(|process| index_of.get(&process.parent_pid))
                .copied();
        };
        for (above, &index) in path.iter().rev().enumerate() {
            if let Some(slot) = depths.get_mut(index) {
                *slot = Some(base + above as u32);
            }
        }
    }
    let depth_of = |process: &Process| {
        index_of
            .get(&process.pid)
            .and_then(|&index| depths.get(index).copied().flatten())
            .unwrap_or(0)
    };
    crate::sort::by_key(listed, |process| {
        u64::from(depth_of(process)) << 32 | crate::sort::pid_key(process.pid)
    });
}

/// Marks the processes of a listing of grace's namespace (by pid; grace, pid 1, may be left out) that are not
/// its command's:
/// those whose parent is outside the namespace (pid 0 from inside: `nsenter`, `kubectl exec`), those in a
/// process group whose leader is outside it (a visitor's process keeps its group, and so does a process a
/// visitor left behind, orphaned to grace), and their descendants. A process of the command has neither:
/// its parent is inside (an orphan goes to grace), and its group is the main child's (grace starts it in a
/// group of its own) or one a process inside made, as a group outside cannot be named from inside.
///
/// What a visitor started in a group or session of its own (an interactive `kubectl exec -it` shell's
/// background job) and then left orphaned looks like the command's: nothing in /proc tells them apart.
pub fn mark_visitors(listed: &mut [Process]) {
    // Nothing entered from outside (the usual case): one pass.
    let outside =
        |process: &Process| process.pid != 1 && (process.parent_pid == 0 || process.group_id == 0);
    if !listed.iter().any(outside) {
        return;
    }
    // A parent is found by binary search (the listing is by pid); each answer is kept (`known`, by index), so
    // that every chain is walked once however deep the tree (a chain of a thousand processes would otherwise
    // take a million steps).
    let mut known: Vec<Option<bool>> = vec![None; listed.len()];
    let mut path = Vec::new();
    for start in 0..listed.len() {
        path.clear();
        let mut current = Some(start);
        let visitor = loop {
            // A parent that exited as the listing was read: its children go to grace, and count as the
            // command's, which a restart must not leave behind.
            let Some(index) = current else { break false };
            if let Some(&Some(visitor)) = known.get(index) {
                break visitor;
            }
            // A chain longer than the listing would be a loop: pid reuse in a racing listing.
            let Some(process) = listed.get(index).filter(|_| path.len() <= listed.len()) else {
                break false;
            };
            if process.pid == 1 {
                break false; // grace
            }
            path.push(index);
            // Its group's leader, or its parent, is outside the namespace.
            if process.group_id == 0 || process.parent_pid == 0 {
                break true;
            }
            let parent = process.parent_pid;
            current = listed
                .binary_search_by_key(&parent, |process| process.pid)
                .ok();
        };
        for &index in &path {
            if let Some(slot) = known.get_mut(index) {
                *slot = Some(visitor);
            }
        }
    }
    for (process, visitor) in listed.iter_mut().zip(known) {
        process.entered_from_outside = visitor.unwrap_or(false);
    }
}

/// Whether the process at `process.pid` is still the one listed (the same start time).
fn is_still(process: &Process) -> bool {
    read_process(process.pid).is_some_and(|now| now.start_time == process.start_time)
}

/// What a signal's system call says of its delivery.
fn delivery(sent: io::Result<()>) -> Delivery {
    match sent {
        Ok(()) => Delivery::Sent,
        Err(err) => match err.raw_os_error() {
            Some(libc::ESRCH) => Delivery::Gone,
            Some(libc::EPERM) => Delivery::NotPermitted,
            _ => Delivery::Failed(err),
        },
    }
}

/// Whether /proc is a /proc of grace's own PID namespace: /proc/self names grace's own pid.
fn proc_shows(own_pid: i32) -> bool {
    fs::read_link("/proc/self")
        .map(|target| target.as_os_str() == own_pid.to_string().as_str())
        .unwrap_or(false)
}

/// A pidfd call refused by the kernel (too old) or by a seccomp filter, rather than failing on the process.
fn is_refused(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM))
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
            let children = match read_proc_text(&children_file.to_string_lossy()) {
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

/// Every process /proc lists but kernel threads, read one by one (a process may vanish between the listing
/// and the read).
fn all_processes() -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_process)
        .collect()
}

/// Reads a /proc file whole in as few system calls as it takes. /proc gives every file a size of 0, so
/// std's `fs::read` asks for its size, then reads 32 bytes and doubles from there: nine system calls for a
/// stat line, against four here (open, one read of up to 4 KiB, the read that finds the end, close). A survey
/// reads one file per process of the tree.
pub fn read_proc(path: &str) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut contents = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(contents),
            Ok(read) => contents.extend_from_slice(chunk.get(..read).unwrap_or_default()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// [`read_proc`], as text (not UTF-8: replaced, as lossily as it comes).
pub fn read_proc_text(path: &str) -> io::Result<String> {
    read_proc(path).map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}

/// Reads /proc/PID/stat; `None` for a kernel thread, or when there is no such process.
pub fn read_process(pid: i32) -> Option<Process> {
    let stat = read_proc(&format!("/proc/{pid}/stat")).ok()?;
    let Stat { process, flags } = parse_stat(pid, &stat)?;
    if flags & PF_KTHREAD != 0 {
        return None;
    }
    if process.state == 'Z' {
        return Some(Process {
            exited: !has_live_threads(pid),
            ..process
        });
    }
    Some(process)
}

/// Whether a process whose main thread is a zombie still has threads running: /proc/PID/task lists the
/// main thread until the process is reaped, and the other threads for as long as they live.
fn has_live_threads(pid: i32) -> bool {
    fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
}

/// What grace takes from /proc/PID/stat.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    process: Process,
    /// The kernel's PF_* flags (field 9).
    flags: u64,
}

/// Parses `pid (comm) state ppid … flags … starttime …`; comm may hold spaces and parentheses, so it ends
/// at the last `)`.
fn parse_stat(pid: i32, stat: &[u8]) -> Option<Stat> {
    let open = stat.iter().position(|&byte| byte == b'(')?;
    let close = stat.iter().rposition(|&byte| byte == b')')?;
    let name = String::from_utf8_lossy(stat.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent_pid = fields.next()?.parse().ok()?;
    let group_id = fields.next()?.parse().ok()?;
    // flags is field 9 of the line, starttime field 22, exit_code field 52; state was field 3, the parent
    // field 4, the process group field 5.
    let flags = fields.nth(9 - 5 - 1)?.parse().ok()?;
    let start_time = fields.nth(22 - 9 - 1)?.parse().ok()?;
    let exited = state == 'Z';
    let wait_status = fields
        .nth(52 - 22 - 1)
        .and_then(|status| status.parse().ok())
        .filter(|_| exited);
    Some(Stat {
        process: Process {
            pid,
            parent_pid,
            group_id,
            name,
            state,
            start_time,
            exited,
            wait_status,
            entered_from_outside: false,
        },
        flags,
    })
}

/// How many processes a list in a log line names before it summarises the rest: more than a multi-process
/// server has (the API server grace was made for has 23 to 28), far fewer than a fork bomb.
pub const NAMED_IN_A_LINE: usize = 32;

/// `pid (name), pid (name)…` for log lines: the first [`NAMED_IN_A_LINE`], then `and 968 more: 960 python3,
/// 8 sh` (a thousand processes would make a line of 20 KB).
pub fn describe(processes: &[Process]) -> String {
    let mut text = String::new();
    for (index, process) in processes.iter().take(NAMED_IN_A_LINE).enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!("{} ({})", process.pid, process.name));
    }
    let rest = processes.get(NAMED_IN_A_LINE..).unwrap_or_default();
    if !rest.is_empty() {
        let names = crate::wording::counted_kinds(
            rest.iter()
                .map(|process| (process.name.clone(), process.name.clone())),
            6,
        );
        text.push_str(&format!(" and {} more: {names}", rest.len()));
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
            group_id: pid,
            name: format!("p{pid}"),
            state: 'S',
            start_time,
            exited: false,
            wait_status: None,
            entered_from_outside: false,
        }
    }

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat =
            b"42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100 0 0";
        let parsed = parse_stat(42, stat).unwrap();
        assert_eq!(
            parsed,
            Stat {
                process: Process {
                    pid: 42,
                    parent_pid: 7,
                    group_id: 42,
                    name: "a) b (c)".into(),
                    state: 'S',
                    start_time: 12345,
                    exited: false,
                    wait_status: None,
                    entered_from_outside: false,
                },
                flags: 4194560,
            }
        );
        assert_eq!(parse_stat(1, b"1 (x) S"), None);
    }

    /// kthreadd, as /proc shows it in the initial PID namespace: PF_KTHREAD in its flags.
    #[test]
    fn kernel_threads_are_recognised_by_their_flags() {
        let stat = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 1 0 0 18446744073709551615";
        let parsed = parse_stat(2, stat).unwrap();
        assert_ne!(parsed.flags & PF_KTHREAD, 0);
        assert_eq!(parsed.process.start_time, 1);
    }

    #[test]
    fn a_long_list_names_the_first_and_counts_the_rest_by_name() {
        let mut many: Vec<Process> = (2..1002).map(|pid| process(pid, 1, 0)).collect();
        for process in many.iter_mut().skip(NAMED_IN_A_LINE) {
            process.name = if process.pid % 100 == 0 {
                "sh"
            } else {
                "python3"
            }
            .to_string();
        }
        let line = describe(&many);
        assert!(line.starts_with("2 (p2), 3 (p3), "), "{line}");
        assert!(
            line.contains(&format!(
                "{} (p{}) and 968 more: 958 python3, 10 sh",
                NAMED_IN_A_LINE + 1,
                NAMED_IN_A_LINE + 1
            )),
            "{line}"
        );
        assert!(line.len() < 1000, "{}", line.len());
        assert_eq!(describe(&many[..2]), "2 (p2), 3 (p3)");
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
    fn parents_come_before_their_children_whatever_their_pids() {
        let mut listed = vec![
            process(3, 32_767, 0), // a chain whose pids wrapped past pid_max: 32766, 32767, 3, 5
            process(5, 3, 0),      // its end
            process(9, 1, 0),      // an orphan, its parent (grace) not listed
            process(32_766, 1, 0), // the chain's head, a child of grace
            process(32_767, 32_766, 0),
            process(12, 9, 0),  // the orphan's child
            process(20, 21, 0), // a loop of parent links: pids reused while the listing was read
            process(21, 20, 0),
        ];
        parents_first(&mut listed);
        let order: Vec<i32> = listed.iter().map(|process| process.pid).collect();
        let position = |pid: i32| order.iter().position(|&listed| listed == pid).unwrap();
        assert_eq!(order.len(), 8);
        for (child, parent) in [(32_767, 32_766), (3, 32_767), (5, 3), (12, 9)] {
            assert!(
                position(parent) < position(child),
                "{parent} after {child}: {order:?}"
            );
        }
        // By depth, then by pid: the heads of the tree first.
        assert_eq!(order[..2], [9, 32_766]);
    }

    #[test]
    fn visitors_are_told_by_their_parent_or_their_group() {
        let with_group = |pid, parent_pid, group_id| Process {
            group_id,
            ..process(pid, parent_pid, 0)
        };
        let mut listed = vec![
            with_group(1, 0, 0), // grace: its own group may be outside, as under `unshare --fork`
            with_group(2, 1, 2), // the main child, in its own group
            with_group(3, 2, 2), // its worker
            with_group(4, 1, 4), // a setsid daemon of the command, orphaned to grace
            with_group(7, 0, 0), // entered from outside (nsenter)
            with_group(8, 7, 0), // the visitor's child
            with_group(9, 1, 0), // what a visitor left behind, orphaned to grace: the visitor's group
            with_group(10, 0, 10), // entered in a session of its own (kubectl exec -it)
            with_group(11, 10, 11), // its job, in a group of its own
            with_group(12, 99, 12), // its parent exited as the listing was read
        ];
        mark_visitors(&mut listed);
        let visitors: Vec<i32> = listed
            .iter()
            .filter(|process| process.entered_from_outside)
            .map(|process| process.pid)
            .collect();
        assert_eq!(visitors, [7, 8, 9, 10, 11]);
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
    /// at that pid (which is what a reaped and reused pid looks like) is `Gone`, and nothing is sent. The
    /// listing that matches is signalled, and once reaped it is `Gone`.
    #[test]
    fn only_the_very_process_that_was_listed_is_signalled() {
        use std::os::unix::process::ExitStatusExt;
        let tree = Tree {
            scope: Scope::Descendants {
                root: std::process::id() as i32,
            },
            proc_usable: Cell::new(true),
            own_pid: std::process::id() as i32,
            kernel_threads: false,
            pidfds_usable: Cell::new(true),
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
