//! The escalation at scale stands on two `stamp-child` modes: `tree N` (the tree that ignores
//! SIGTERM) and `kill-init MS COMMAND…` (the baseline); the services rows on a third, `service`. These run the built binary against real
//! processes and synchronise on its `ready` line and on pidfds; timeouts only guard against hangs.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STAMP_CHILD: &str = env!("CARGO_BIN_EXE_stamp-child");
/// Guards against hangs only.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `stamp-child ARGS…` with piped stdin and stdout and waits for its `ready` line.
fn start_ready(args: &[&str], stderr: Stdio) -> Child {
    let mut child = Command::new(STAMP_CHILD)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawning stamp-child");
    let stdout = child.stdout.take().expect("a stdout pipe");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(TIMEOUT)
        .expect("no line from stamp-child");
    assert_eq!(line, "ready\n");
    child
}

/// The children of `pid` (its threads are one: stamp-child starts none).
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("reading children")
        .split_whitespace()
        .map(|word| word.parse().expect("a pid"))
        .collect()
}

fn pidfd_open(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits until every pidfd is readable (its process exited); returns when each was seen.
fn wait_for_exits(pidfds: &[OwnedFd]) -> Vec<Instant> {
    let deadline = Instant::now() + TIMEOUT;
    let mut exits = vec![None; pidfds.len()];
    while exits.iter().any(Option::is_none) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "processes still alive after {TIMEOUT:?}"
        );
        let mut entries: Vec<libc::pollfd> = pidfds
            .iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `entries` is a valid array of `entries.len()` pollfd structs.
        unsafe {
            libc::poll(
                entries.as_mut_ptr(),
                entries.len() as libc::nfds_t,
                remaining.as_millis() as i32 + 1,
            )
        };
        let now = Instant::now();
        for (exit, entry) in exits.iter_mut().zip(&entries) {
            if exit.is_none() && entry.revents != 0 {
                *exit = Some(now);
            }
        }
    }
    exits.into_iter().flatten().collect()
}

/// A signal mask of /proc/PID/status (`SigIgn`, `SigBlk`).
fn signal_mask(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .expect("a mask line");
    u64::from_str_radix(mask.trim(), 16).expect("a hex mask")
}

fn ignores_sigterm(pid: i32) -> bool {
    signal_mask(pid, "SigIgn") & (1 << (libc::SIGTERM - 1)) != 0
}

#[test]
fn a_tree_ignores_sigterm_and_ends_on_eof() {
    let mut parent = start_ready(&["tree", "5"], Stdio::inherit());
    let listed = children(parent.id());
    assert_eq!(listed.len(), 5, "children {listed:?}");
    let mut pids = listed.clone();
    pids.push(parent.id() as i32);
    for &pid in &pids {
        assert!(ignores_sigterm(pid), "pid {pid} does not ignore SIGTERM");
    }
    let pidfds: Vec<OwnedFd> = pids.iter().map(|&pid| pidfd_open(pid)).collect();
    drop(parent.stdin.take());
    wait_for_exits(&pidfds);
    assert!(parent.wait().expect("waiting").success());
}

#[test]
fn kill_init_kills_the_whole_tree_once_the_period_is_over() {
    let period = Duration::from_millis(300);
    let period_ms = period.as_millis().to_string();
    let init = start_ready(
        &["kill-init", &period_ms, STAMP_CHILD, "tree", "5"],
        Stdio::piped(),
    );
    let [parent] = children(init.id())[..] else {
        panic!("kill-init should have one child");
    };
    let mut pids = children(parent as u32);
    assert_eq!(pids.len(), 5, "children {pids:?}");
    pids.push(parent);
    // kill-init blocks SIGTERM and SIGCHLD to wait for them; its command must not inherit that.
    for &pid in &pids {
        assert_eq!(
            signal_mask(pid, "SigBlk"),
            0,
            "pid {pid} has signals blocked"
        );
    }
    let pidfds: Vec<OwnedFd> = pids.iter().map(|&pid| pidfd_open(pid)).collect();
    let sent = Instant::now();
    // SAFETY: kill takes a pid (our child, not reaped yet) and a signal number.
    assert_eq!(unsafe { libc::kill(init.id() as i32, libc::SIGTERM) }, 0);
    let exits = wait_for_exits(&pidfds);
    for exit in &exits {
        assert!(
            *exit >= sent + period,
            "killed {:?} after SIGTERM, before the {period:?} period",
            exit.duration_since(sent)
        );
    }
    let output = init.wait_with_output().expect("waiting for kill-init");
    assert_eq!(output.status.code(), Some(137), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("kill-init: SIGKILL to 6 processes (one pidfd each) (the last sent ")
            && stderr.trim_end().ends_with("ms after it was due)"),
        "{stderr}"
    );
}

/// The syscall `pid` is blocked in and its first argument, from /proc/PID/syscall, once it is blocked
/// in `read` (polled every millisecond: the state is the kernel's, nothing prints it).
fn wait_blocked_in_read(pid: i32) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let syscall =
            std::fs::read_to_string(format!("/proc/{pid}/syscall")).expect("reading syscall");
        let mut fields = syscall.split_whitespace();
        if fields.next() == Some(&libc::SYS_read.to_string()) {
            let fd = fields.next().expect("an fd argument");
            return u64::from_str_radix(fd.trim_start_matches("0x"), 16).expect("a hex fd");
        }
        assert!(
            Instant::now() < deadline,
            "not blocked in read after {TIMEOUT:?}: {syscall}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_service_idles_on_a_closed_stdin_and_exits_143_on_sigterm() {
    // /dev/null as stdin, as grace gives a helper service: a read of stdin would return EOF at once.
    let mut service = Command::new(STAMP_CHILD)
        .arg("service")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning stamp-child");
    let stdout = service.stdout.take().expect("a stdout pipe");
    // Killed should an assertion fail (it holds the test's stderr, and would hold the harness's pipe).
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut service = KillOnDrop(service);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = sender.send(line.expect("reading stdout"));
        }
    });
    let line = |what: &str| {
        receiver
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no {what} line"))
    };
    assert_eq!(line("ready"), "ready");
    let pid = service.0.id() as i32;
    let fd = wait_blocked_in_read(pid);
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("reading the fd's link");
    assert!(
        target.to_string_lossy().starts_with("socket:"),
        "blocked reading fd {fd}, {}, not its own socket",
        target.display()
    );
    // SAFETY: kill takes a pid (our child, not reaped yet) and a signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let stamp = line("term");
    assert!(
        stamp
            .strip_prefix("term ")
            .is_some_and(|ns| ns.parse::<u64>().is_ok()),
        "{stamp:?}"
    );
    assert_eq!(service.0.wait().expect("waiting").code(), Some(143));
}
