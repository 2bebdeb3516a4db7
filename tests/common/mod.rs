//! The one harness every integration test uses: run the built grace (as PID 1 of a fresh PID namespace, or
//! as a subreaper), read its child's stdout and its own log line by line, signal it, and wait with a bound.
//! Tests synchronise on lines; the timeout only guards against hangs.
#![allow(dead_code)] // each test file uses its own part of the harness

pub mod json;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails as hung.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until `condition` holds, looking again and again, for what the kernel announces to nobody (another
/// process blocking, a leader turning into a zombie), never in place of a line; fails after [`TIMEOUT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// Where grace runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a new PID namespace with its own /proc (`unshare --pid --fork --mount-proc`).
    Pid1,
    /// A plain child of the test: grace makes itself a subreaper.
    Subreaper,
}

/// The modes a test runs grace in, `for mode in MODES`: both, but PID 1 alone under an emulator, which
/// refuses grace the subreaper role (see [`NO_SUBREAPER`]).
pub const MODES: Modes = Modes;

/// See [`MODES`].
pub struct Modes;

impl Modes {
    pub fn iter(&self) -> std::slice::Iter<'static, Mode> {
        const BOTH: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];
        if mode_tested(Mode::Subreaper) {
            BOTH.iter()
        } else {
            [Mode::Pid1].iter()
        }
    }
}

/// Whether a test's run in `mode` is checked here: for a table of runs per mode, as [`MODES`] does it.
pub fn mode_tested(mode: Mode) -> bool {
    mode == Mode::Pid1 || !NO_SUBREAPER.applies()
}

impl IntoIterator for Modes {
    type Item = Mode;
    type IntoIter = std::iter::Copied<std::slice::Iter<'static, Mode>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter().copied()
    }
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The child's stdout (passed through grace untouched).
    Stdout,
    /// stderr: grace's log, and the child's stderr.
    Stderr,
    /// Not a stream: the harness's mark, among the lines, that grace (or the outer process) has exited.
    Exit,
}

/// One line, and when the harness read it.
#[derive(Clone, Debug)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
    pub at: Instant,
}

/// The path of the Python test child.
pub fn child_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/child.py")
}

/// `python3 -u child.py MODE ARGS…` as a command line for grace.
pub fn child(arguments: &[&str]) -> Vec<String> {
    let mut command = vec![
        "python3".to_string(),
        "-u".to_string(),
        child_script().display().to_string(),
    ];
    command.extend(arguments.iter().map(|argument| argument.to_string()));
    command
}

/// The grace binary under test: `GRACE_TEST_BIN` (an absolute path, e.g. a cross-built
/// target/aarch64-unknown-linux-musl/release/grace) if set, else the host build cargo made for the tests.
pub fn grace_binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| match std::env::var("GRACE_TEST_BIN") {
        Ok(path) => {
            assert!(
                std::path::Path::new(&path).is_absolute(),
                "GRACE_TEST_BIN must be an absolute path: {path:?}"
            );
            path
        }
        Err(_) => env!("CARGO_BIN_EXE_grace").to_string(),
    })
}

/// Whether grace runs under an emulator (qemu-user, started by binfmt_misc): its ELF machine is not one this
/// kernel runs natively, i.e. neither the test's own nor the 32-bit one the kernel runs beside it.
pub fn emulated() -> bool {
    static EMULATED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EMULATED.get_or_init(|| {
        // e_machine: 2 bytes at offset 18 (little-endian on every target built here).
        let machine = |path: &str| -> u16 {
            let header = std::fs::read(path).unwrap_or_else(|error| panic!("{path}: {error}"));
            u16::from_le_bytes([header[18], header[19]])
        };
        const X86_64: u16 = 62;
        const I386: u16 = 3;
        const AARCH64: u16 = 183;
        const ARM: u16 = 40;
        let (host, grace) = (machine("/proc/self/exe"), machine(grace_binary()));
        let native = [
            host,
            match host {
                X86_64 => I386,
                AARCH64 => ARM,
                other => other,
            },
        ];
        !native.contains(&grace)
    })
}

/// For a check that the emulator, not grace, makes fail: when grace is emulated, prints why and a one-line
/// shell command (run from the repository root) that shows the emulator doing it, and returns true so that
/// the caller leaves out that check, or that mode, alone. Natively it returns false: everything is checked.
/// The notice goes straight to stderr, past the test harness's capture, so every run shows what it left out.
pub fn emulator_limit(reason: &str, reproduction: &str) -> bool {
    static SHOWN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let emulated = emulated();
    if emulated {
        let test = thread::current().name().unwrap_or("?").to_string();
        let mut shown = SHOWN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (test, reason.to_string());
        if !shown.contains(&key) {
            let _ = writeln!(
                std::io::stderr(),
                "\nemulator limit in {}, not checked: {reason}\n    reproduce: {reproduction}",
                key.0
            );
            shown.push(key);
        }
    }
    emulated
}

/// A behaviour of the emulator (qemu-user 7.2, Debian's qemu-user-static) that no grace could hide.
pub struct EmulatorLimit {
    pub reason: &'static str,
    pub reproduction: &'static str,
}

impl EmulatorLimit {
    /// See [`emulator_limit`].
    pub fn applies(&self) -> bool {
        emulator_limit(self.reason, self.reproduction)
    }
}

/// qemu-user refuses prctl(PR_SET_CHILD_SUBREAPER): orphans of grace's tree go to the machine's init, so
/// grace in subreaper mode cannot be what that mode tests (it can only warn, or stop).
pub const NO_SUBREAPER: EmulatorLimit = EmulatorLimit {
    reason: "qemu-user answers prctl(PR_SET_CHILD_SUBREAPER) with EINVAL, so grace cannot be a subreaper: \
             subreaper mode is tested natively only",
    reproduction: "qemu-aarch64-static -strace \"$GRACE_TEST_BIN\" -- true 2>&1 | grep prctl  \
                   # prctl(36,1,0,0,0,…) = -1 errno=22 (Invalid argument)",
};

/// Whether this grace stops when it cannot become a subreaper, as it did before it learnt to warn and run
/// instead: then, under the emulator, a test that runs it as a plain child cannot even start it. Asked once,
/// of the binary itself (`grace -- true`).
pub fn subreaper_refusal_is_fatal() -> bool {
    static FATAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let fatal = *FATAL.get_or_init(|| {
        emulated()
            && !Command::new(grace_binary())
                .args(["--", "true"])
                .stdin(Stdio::null())
                .output()
                .expect("running grace")
                .status
                .success()
    });
    fatal
        && emulator_limit(
            "this grace exits with status 1 when it cannot become a subreaper, which qemu-user refuses \
             (EINVAL): pending grace's change to warn and run instead",
            "\"$GRACE_TEST_BIN\" -- true; echo $?  # error: becoming a child subreaper: EINVAL; 1",
        )
}

/// qemu-user maps the host's real-time signal N to N-2 in the emulated process (its libc keeps two for
/// itself), so numbers cross the boundary shifted, and it carries no block of host signals 35 and 36.
pub const RENUMBERED_REAL_TIME_SIGNALS: EmulatorLimit = EmulatorLimit {
    reason: "qemu-user renumbers real-time signals between the host and the emulated process \
             (host N is N-2 inside)",
    reproduction:
        "target/busybox-arm64/bin/busybox sh -c '/bin/sh -c \"kill -40 \\$\\$\"; echo $?'  \
                   # 166 (SIGRTMIN+4), natively 168",
};

/// The signals of [`SENT_FAULT_SIGNALS_CRASH`], which tests leave out of what they send under the emulator.
pub const FAULT_SIGNALS: [i32; 4] = [libc::SIGILL, libc::SIGFPE, libc::SIGSEGV, libc::SIGBUS];

/// qemu-user takes a fault signal (SIGILL, SIGFPE, SIGSEGV, SIGBUS) that another process sent for a fault of
/// the emulated CPU; when it comes while the emulated process is in a system call (grace, waiting for
/// signals), qemu itself may crash. SIGSEGV and SIGBUS are the two its host handler keeps unblocked and
/// inspects first, as the emulator's own faults.
pub const SENT_FAULT_SIGNALS_CRASH: EmulatorLimit = EmulatorLimit {
    reason: "fault signals sent with kill() can crash qemu-user (SIGSEGV) in an emulated process that blocks \
             them: a SIGILL or SIGFPE about one time in two, a SIGSEGV or SIGBUS now and then (each was lost \
             once in a run of tools/test with both CPUs busy) and always in a flood of thousands",
    reproduction: "(unshare -fp --mount-proc --kill-child \"$GRACE_TEST_BIN\" -- sleep 2 & sleep 1; \
                   kill -FPE $(cat /proc/$!/task/$!/children); wait $!; echo $?)  \
                   # 139 about half the time, else 136 as natively",
};

/// qemu-user installs a handler for every signal, so a SIG_IGN the emulated process inherited is lost when
/// it execs.
pub const INHERITED_IGNORE_LOST: EmulatorLimit = EmulatorLimit {
    reason: "an ignored signal an emulated process inherited is no longer ignored after its exec",
    reproduction: "sh -c \"trap '' INT; exec target/busybox-arm64/bin/busybox env grep SigIgn /proc/self/status\"  \
                   # 0000000000000000, natively 0000000000000002",
};

/// How late a deadline may be observed before a test calls it missed: generous, as the machines are shared.
/// The lower bounds are exact.
pub const LATE: Duration = Duration::from_millis(1500);

/// Sends SIGTERM to grace; returns the moment just before it, from which grace's deadlines are at least
/// their nominal time away.
pub fn stop(grace: &Running) -> Instant {
    let sent = Instant::now();
    grace.signal(libc::SIGTERM);
    sent
}

/// Asserts that `what`, seen at `at`, came no earlier than `due` after `since` and less than [`LATE`]
/// after that.
pub fn assert_on_time(what: &str, since: Instant, at: Instant, due: Duration, output: &str) {
    let elapsed = at.saturating_duration_since(since);
    assert!(
        elapsed >= due,
        "{what} came {elapsed:?} after the stop signal, before its time of {due:?}\n{output}"
    );
    assert!(
        elapsed < due + LATE,
        "{what} came {elapsed:?} after the stop signal, more than {LATE:?} after its time of {due:?}\n{output}"
    );
}

/// The number after the word `pid` in a line such as `ready pid 42` or `started pid 42: …`.
pub fn pid_in(text: &str) -> i32 {
    let mut words = text.split_whitespace();
    words.find(|&word| word == "pid");
    words
        .next()
        .and_then(|word| word.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// `grace` itself, or `unshare … grace` for PID-1 mode: the command every run starts from.
fn launcher(mode: Mode) -> Command {
    wrapped_launcher(mode, &[])
}

/// The same, with `wrapper` (a program and its arguments that end by exec-ing the rest of the command line,
/// such as tests/support/seccomp.py) run first, inside the namespace in PID-1 mode so that grace, exec'd by
/// it, is PID 1.
fn wrapped_launcher(mode: Mode, wrapper: &[String]) -> Command {
    let mut words: Vec<String> = wrapper.to_vec();
    words.push(grace_binary().to_string());
    match mode {
        Mode::Pid1 => {
            let mut unshare = Command::new("unshare");
            unshare
                .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                .args(words);
            unshare
        }
        Mode::Subreaper => {
            let mut command = Command::new(&words[0]);
            command.args(&words[1..]);
            command
        }
    }
}

/// `python3 tests/support/seccomp.py ERRNO CALLS… --`: a wrapper that runs grace under a seccomp filter
/// refusing `calls` with `errno` (see that file).
pub fn seccomp(errno: &str, calls: &[&str]) -> Vec<String> {
    let mut wrapper = vec![
        "python3".to_string(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/support/seccomp.py")
            .display()
            .to_string(),
        errno.to_string(),
    ];
    wrapper.extend(calls.iter().map(|call| call.to_string()));
    wrapper.push("--".to_string());
    wrapper
}

/// Builds one run of grace.
pub struct Grace {
    mode: Mode,
    wrapper: Vec<String>,
    arguments: Vec<String>,
    environment: Vec<(String, String)>,
    stdin_null: bool,
}

impl Grace {
    pub fn new(mode: Mode) -> Grace {
        Grace {
            mode,
            wrapper: Vec::new(),
            arguments: Vec::new(),
            environment: Vec::new(),
            stdin_null: true,
        }
    }

    /// Starts grace through `wrapper`, a command that sets something up and execs the rest (see
    /// [`seccomp`], or `child.py exec-with`).
    pub fn wrapped(mut self, wrapper: Vec<String>) -> Grace {
        self.wrapper = wrapper;
        self
    }

    /// grace's own options (before `--`).
    pub fn args<I, S>(mut self, arguments: I) -> Grace
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.arguments.extend(
            arguments
                .into_iter()
                .map(|argument| argument.as_ref().to_string()),
        );
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Grace {
        self.environment.push((name.to_string(), value.to_string()));
        self
    }

    /// The command line for this run: `[unshare …] grace ARGS… -- COMMAND…`.
    pub fn command(&self, command: &[String]) -> Command {
        let mut process = wrapped_launcher(self.mode, &self.wrapper);
        process.args(&self.arguments).arg("--").args(command);
        // Whether grace runs in a Kubernetes pod changes its default grace period: a test says so itself.
        process.env_remove("KUBERNETES_SERVICE_HOST");
        // Which build runs is the harness's business, not the command's (tests/cli.rs lists GRACE_* variables).
        process.env_remove("GRACE_TEST_BIN");
        process.envs(self.environment.iter().map(|(name, value)| (name, value)));
        if self.stdin_null {
            process.stdin(Stdio::null());
        }
        process
    }

    /// Starts grace running `command` and waits for its start line.
    pub fn spawn(self, command: &[String]) -> Running {
        self.spawn_waiting_for(command, "started pid")
    }

    /// Starts grace running `command` and waits for a line of its log containing `start_line`: with
    /// several services, `starting`.
    pub fn spawn_waiting_for(self, command: &[String], start_line: &str) -> Running {
        let mode = self.mode;
        let mut process = self.command(command);
        process.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut outer = process.spawn().expect("starting grace");
        let (sender, lines) = mpsc::channel();
        forward_lines(
            outer.stdout.take().expect("stdout"),
            Stream::Stdout,
            sender.clone(),
        );
        forward_lines(
            outer.stderr.take().expect("stderr"),
            Stream::Stderr,
            sender.clone(),
        );
        let started = Instant::now();
        let mut running = Running {
            mode,
            outer,
            grace_pid: None,
            lines,
            exits: sender,
            seen: Vec::new(),
            matched: Vec::new(),
            started,
        };
        running.wait_log(start_line);
        running.grace_pid = match mode {
            Mode::Subreaper => Some(running.outer.id() as i32),
            Mode::Pid1 => only_child(running.outer.id() as i32),
        };
        running
    }
}

/// The single child of `pid` (unshare's forked child: grace, as seen from the host), or None when it has
/// gone already: a command that exits at once can take grace with it before the test looks.
fn only_child(pid: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("reading children");
    let mut pids = children
        .split_whitespace()
        .map(|pid| pid.parse::<i32>().expect("a pid"));
    let child = pids.next();
    assert_eq!(pids.next(), None, "unshare has one child");
    child
}

fn forward_lines(stream: impl Read + Send + 'static, kind: Stream, sender: mpsc::Sender<Line>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buffer), Ok(read) if read > 0) {
            let text = String::from_utf8_lossy(&buffer)
                .trim_end_matches('\n')
                .to_string();
            buffer.clear();
            if sender
                .send(Line {
                    stream: kind,
                    text,
                    at: Instant::now(),
                })
                .is_err()
            {
                return;
            }
        }
    });
}

/// A running grace.
pub struct Running {
    mode: Mode,
    /// grace itself, or `unshare` in PID-1 mode.
    outer: Child,
    /// grace's pid as the test sees it; None if grace had exited before the test could read it.
    grace_pid: Option<i32>,
    lines: Receiver<Line>,
    /// Where [`Running::finish`]'s waiter reports the exit, among the lines.
    exits: mpsc::Sender<Line>,
    /// Every line read so far, in order.
    seen: Vec<Line>,
    /// Per line of `seen`: whether a wait has matched it already.
    matched: Vec<bool>,
    started: Instant,
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub at: Instant,
    pub lines: Vec<Line>,
}

impl Finished {
    /// grace's exit code (it always exits with one; it is never killed in these tests).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("grace was killed: {:?}\n{}", self.status, dump(&self.lines)))
    }

    pub fn log(&self) -> Vec<&str> {
        lines_of(&self.lines, Stream::Stderr)
    }

    pub fn stdout(&self) -> Vec<&str> {
        lines_of(&self.lines, Stream::Stdout)
    }

    /// The first line of `stream` containing `needle`, or a failure that shows everything.
    pub fn line(&self, stream: Stream, needle: &str) -> &Line {
        self.lines
            .iter()
            .find(|line| line.stream == stream && line.text.contains(needle))
            .unwrap_or_else(|| {
                panic!(
                    "no {stream:?} line contains {needle:?}\n{}",
                    dump(&self.lines)
                )
            })
    }

    pub fn has(&self, stream: Stream, needle: &str) -> bool {
        self.lines
            .iter()
            .any(|line| line.stream == stream && line.text.contains(needle))
    }

    pub fn dump(&self) -> String {
        dump(&self.lines)
    }
}

fn lines_of(lines: &[Line], stream: Stream) -> Vec<&str> {
    lines
        .iter()
        .filter(|line| line.stream == stream)
        .map(|line| line.text.as_str())
        .collect()
}

fn dump(lines: &[Line]) -> String {
    let mut text = String::from("--- output so far ---\n");
    for line in lines {
        let tag = if line.stream == Stream::Stdout {
            "out"
        } else {
            "err"
        };
        text.push_str(&format!("{tag}| {}\n", line.text));
    }
    text
}

impl Running {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// grace's pid from the test's point of view (in PID-1 mode, its pid outside the namespace).
    pub fn grace_pid(&self) -> i32 {
        self.grace_pid.expect(
            "grace had exited before the test read its pid: its command must outlive the start",
        )
    }

    /// Sends `signal` to grace.
    pub fn signal(&self, signal: i32) {
        // SAFETY-free: libc::kill is a plain system call on a pid this test owns.
        let result = unsafe { libc::kill(self.grace_pid(), signal) };
        assert_eq!(
            result,
            0,
            "kill({}, {signal}): {}",
            self.grace_pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits for a line of the child's stdout containing `needle`.
    pub fn wait_stdout(&mut self, needle: &str) -> Line {
        self.wait_for(Stream::Stdout, needle)
    }

    /// Waits for a line of grace's log (stderr) containing `needle`.
    pub fn wait_log(&mut self, needle: &str) -> Line {
        self.wait_for(Stream::Stderr, needle)
    }

    /// Waits for the next line of `stream`, whatever it says.
    pub fn next_line(&mut self, stream: Stream) -> Line {
        self.wait_until(
            |line| line.stream == stream,
            &format!("the next {stream:?} line"),
        )
    }

    fn wait_for(&mut self, stream: Stream, needle: &str) -> Line {
        let what = format!("a {stream:?} line containing {needle:?}");
        self.wait_until(
            |line| line.stream == stream && line.text.contains(needle),
            &what,
        )
    }

    /// Waits for the earliest line that no wait has matched yet and that satisfies `matches`, and marks it
    /// as matched: lines read while waiting for something else stay available. Fails after [`TIMEOUT`].
    pub fn wait_until(&mut self, mut matches: impl FnMut(&Line) -> bool, what: &str) -> Line {
        let deadline = Instant::now() + TIMEOUT;
        let mut index = 0;
        loop {
            while index < self.seen.len() {
                if !self.matched[index] && matches(&self.seen[index]) {
                    self.matched[index] = true;
                    return self.seen[index].clone();
                }
                index += 1;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    self.seen.push(line);
                    self.matched.push(false);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}\n{}", dump(&self.seen))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "grace closed its output before {what}\n{}",
                        dump(&self.seen)
                    )
                }
            }
        }
    }

    /// The lines read so far.
    pub fn seen(&self) -> &[Line] {
        &self.seen
    }

    /// Waits for grace to exit, reading the rest of its output.
    pub fn finish(mut self) -> Finished {
        let deadline = Instant::now() + TIMEOUT;
        // A thread waits for the exit (without reaping it) and reports it among the lines: the end of the
        // output cannot tell, since a process grace leaves running may hold its stdout and stderr open.
        let pid = self.outer.id();
        let exits = self.exits.clone();
        thread::spawn(move || {
            // SAFETY: waitid writes into the zeroed siginfo it is given, and nothing else.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let waited =
                unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if waited == 0 {
                let _ = exits.send(Line {
                    stream: Stream::Exit,
                    text: String::new(),
                    at: Instant::now(),
                });
            }
        });
        let at = loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.stream == Stream::Exit => break line.at,
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.outer.kill();
                    panic!(
                        "grace did not exit within {TIMEOUT:?}\n{}",
                        dump(&self.seen)
                    );
                }
            }
        };
        let status = self.outer.wait().expect("waiting for grace");
        // Whatever is still buffered in the pipes: until they close, or a second passes with nothing (a
        // process left running holds them).
        drop(std::mem::replace(&mut self.exits, mpsc::channel().0));
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        Finished {
            status,
            at,
            lines: std::mem::take(&mut self.seen),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave grace and its tree behind (in PID-1 mode --kill-child takes the
        // namespace along with unshare).
        if matches!(self.outer.try_wait(), Ok(None)) {
            if let (Mode::Subreaper, Some(grace_pid)) = (self.mode, self.grace_pid) {
                // Outside a namespace grace's tree would outlive it: freeze grace (so it reaps and reparents
                // nothing meanwhile), kill its descendants, then grace.
                unsafe { libc::kill(grace_pid, libc::SIGSTOP) };
                for process in descendants(grace_pid) {
                    unsafe { libc::kill(process.pid, libc::SIGKILL) };
                }
            }
            let _ = self.outer.kill();
            let _ = self.outer.wait();
        }
    }
}

/// Runs `command` to completion, as `Command::output` does, but fails the test (and kills it) if it takes
/// longer than [`TIMEOUT`]: a regression must fail, not hang the suite.
pub fn output_within(command: &mut Command) -> std::process::Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut process = command.spawn().expect("starting a process");
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        process
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        process
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let (done, finished) = mpsc::channel();
    let pid = process.id();
    let waiter = thread::spawn(move || {
        let status = process.wait().expect("waiting");
        let _ = done.send(());
        status
    });
    if finished.recv_timeout(TIMEOUT).is_err() {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = waiter.join();
        panic!("{command:?} did not finish within {TIMEOUT:?}");
    }
    std::process::Output {
        status: waiter.join().expect("the waiter"),
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

/// Runs grace to completion with no interaction and returns its exit status and output.
pub fn run_to_end(grace: Grace, command: &[String]) -> (ExitStatus, String, String) {
    let output = output_within(&mut grace.command(command));
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The state letter of `pid` (`R`, `S`, `Z`…), if it exists.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Whether `pid` is alive and not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// `sh -c SCRIPT` as a command line.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_string(), "-c".to_string(), script.to_string()]
}

pub fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

/// Runs grace with exactly `arguments` (no `--` added: the test controls parsing) and waits for it.
/// Arguments are OS strings, so a test can pass bytes that are not UTF-8.
pub fn run_exact<I, S>(mode: Mode, arguments: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut process = launcher(mode);
    process
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .expect("running grace")
}

impl Running {
    /// Reads the lines of a process the test started itself, with stdout and stderr piped, that runs grace
    /// somewhere below it (e.g. a wrapper that execs or spawns grace). Nothing is waited for: there may be
    /// no start line to wait for. [`Running::signal`] and [`Running::grace_pid`] then refer to `outer`.
    pub fn attach(mode: Mode, mut outer: Child) -> Running {
        let (sender, lines) = mpsc::channel();
        forward_lines(
            outer.stdout.take().expect("stdout piped"),
            Stream::Stdout,
            sender.clone(),
        );
        forward_lines(
            outer.stderr.take().expect("stderr piped"),
            Stream::Stderr,
            sender.clone(),
        );
        Running {
            mode,
            grace_pid: Some(outer.id() as i32),
            outer,
            lines,
            exits: sender,
            seen: Vec::new(),
            matched: Vec::new(),
            started: Instant::now(),
        }
    }
}

impl Running {
    /// Waits until `count` lines of `stream` containing `needle` that no wait has matched yet have been
    /// read, marks them as matched and returns them in order. Unlike a loop of [`Running::wait_log`], it
    /// scans each line once, so it suits thousands of lines; the [`TIMEOUT`] bound applies to each line.
    pub fn wait_count(&mut self, stream: Stream, needle: &str, count: usize) -> Vec<Line> {
        let mut found = Vec::with_capacity(count);
        let mut index = 0;
        let mut deadline = Instant::now() + TIMEOUT;
        loop {
            while index < self.seen.len() && found.len() < count {
                let line = &self.seen[index];
                if !self.matched[index] && line.stream == stream && line.text.contains(needle) {
                    self.matched[index] = true;
                    found.push(line.clone());
                    deadline = Instant::now() + TIMEOUT;
                }
                index += 1;
            }
            if found.len() == count {
                return found;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    self.seen.push(line);
                    self.matched.push(false);
                }
                Err(error) => panic!(
                    "{} waiting for line {} of {count} of {stream:?} containing {needle:?}\n{}",
                    match error {
                        RecvTimeoutError::Timeout => "timed out",
                        RecvTimeoutError::Disconnected => "grace closed its output",
                    },
                    found.len() + 1,
                    dump(&self.seen)
                ),
            }
        }
    }
}

/// The pids whose parent is `pid`, found by scanning every process's parent in /proc (a parent's
/// `task/*/children` can miss children of exited threads).
pub fn children(pid: i32) -> Vec<i32> {
    let entries = std::fs::read_dir("/proc").expect("listing /proc");
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| stat_fields(child).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// The children of `pid` that are zombies: exited, and not reaped.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    children(pid)
        .into_iter()
        .filter(|&child| state(child) == Some('Z'))
        .collect()
}

/// The state of `pid` as ps shows it (`R`, `S`, `T`, `Z`…), or `None` once it is gone.
pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// Waits until `pid` is in `wanted` state (e.g. `T` after SIGSTOP, which takes effect asynchronously).
/// The kernel offers no notification for another process's children stopping, so this polls /proc, yielding
/// the CPU between reads; [`TIMEOUT`] guards against a hang.
pub fn wait_for_state(pid: i32, wanted: char) {
    let deadline = Instant::now() + TIMEOUT;
    while state(pid) != Some(wanted) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not reach state {wanted} within {TIMEOUT:?} (state {:?})",
            state(pid)
        );
        thread::yield_now();
    }
}

/// `(state, parent pid)` from /proc/PID/stat; the name may hold spaces and parentheses, so it ends at the
/// last `)`.
fn stat_fields(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Sends `signal` to `pid` (a process of a test's own making), and fails the test if it cannot.
pub fn send_signal(pid: i32, signal: i32) {
    // SAFETY-free: libc::kill is a plain system call.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// One process as /proc showed it: the start time tells it apart from a later process that reuses its pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSnapshot {
    pub pid: i32,
    /// The kernel's short name (`comm`).
    pub name: String,
    /// Clock ticks after boot at which it started (field 22 of /proc/PID/stat).
    pub start_time: u64,
}

impl ProcessSnapshot {
    /// Whether this very process still exists, alive or as a zombie: same pid, same start time.
    pub fn still_exists(&self) -> bool {
        snapshot_of(self.pid).is_some_and(|now| now.start_time == self.start_time)
    }
}

/// Every descendant of `pid` (its children, their children…), found by scanning every process's parent.
pub fn descendants(pid: i32) -> Vec<ProcessSnapshot> {
    let mut found = Vec::new();
    let mut pending = vec![pid];
    while let Some(parent) = pending.pop() {
        for child in children(parent) {
            if let Some(snapshot) = snapshot_of(child) {
                pending.push(child);
                found.push(snapshot);
            }
        }
    }
    found.sort_by_key(|process| process.pid);
    found
}

/// The pid the test sees for `pid` as grace's tree sees it (they differ in PID-1 mode), from the `NSpid`
/// line of each of grace's descendants: the last pid there is the innermost namespace's.
pub fn host_pid(grace: &Running, pid: i32) -> i32 {
    descendants(grace.grace_pid())
        .into_iter()
        .map(|process| process.pid)
        .find(|&host| {
            std::fs::read_to_string(format!("/proc/{host}/status"))
                .ok()
                .and_then(|status| {
                    let line = status.lines().find(|line| line.starts_with("NSpid:"))?;
                    line.split_whitespace().last()?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .unwrap_or_else(|| panic!("pid {pid} is not in grace's tree\n{}", grace.dump()))
}

fn snapshot_of(pid: i32) -> Option<ProcessSnapshot> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    // After the name: state (field 3), parent (4), … start time (22).
    let start_time = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some(ProcessSnapshot {
        pid,
        name,
        start_time,
    })
}

impl Running {
    /// The output read so far, as a failure message shows it.
    pub fn dump(&self) -> String {
        dump(&self.seen)
    }
}

/// A process outside grace's tree (`child.py handle-term`, started by the test itself): it must come through
/// any run of grace untouched. SIGTERM makes it print "got TERM" and exit.
pub struct Decoy {
    process: Child,
    pub pid: i32,
    lines: Receiver<String>,
}

impl Decoy {
    /// Starts it and waits for its ready line.
    pub fn start() -> Decoy {
        let mut process = Command::new("python3")
            .arg("-u")
            .arg(child_script())
            .arg("handle-term")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting a decoy");
        let stdout = process.stdout.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let ready = lines.recv_timeout(TIMEOUT).expect("the decoy's ready line");
        assert!(ready.starts_with("ready pid"), "decoy said {ready:?}");
        let pid = process.id() as i32;
        Decoy {
            process,
            pid,
            lines,
        }
    }

    /// Fails unless the decoy is alive and has printed nothing since it was ready (it was sent no SIGTERM).
    pub fn assert_untouched(&self, what: &str) {
        assert!(is_alive(self.pid), "{what}: decoy {} was killed", self.pid);
        let said: Vec<String> = self.lines.try_iter().collect();
        assert!(said.is_empty(), "{what}: decoy {} said {said:?}", self.pid);
    }

    /// Sends SIGTERM, waits for the decoy to exit, and returns what it printed after its ready line.
    pub fn stop(mut self) -> Vec<String> {
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let mut said = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
            said.push(line);
        }
        let status = self.process.wait().expect("waiting for the decoy");
        assert!(status.success(), "decoy: {status:?}");
        said
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// `file` if `nobody` can read it where it is (and, for `executable`, run it), else a copy with mode 755 in a
/// directory of the system's temporary directory, which it can reach: a CI clone may live under /root.
pub fn accessible_to_nobody(file: &str, executable: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let check = if executable { "-x" } else { "-r" };
    let reachable = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", &format!(r#"test {check} "$1""#), "sh", file])
        .status()
        .is_ok_and(|status| status.success());
    if reachable {
        return PathBuf::from(file);
    }
    let directory = unprivileged_directory();
    std::fs::create_dir_all(&directory).expect("creating a directory");
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let name = PathBuf::from(file);
    let copy = directory.join(name.file_name().expect("a file name"));
    std::fs::copy(file, &copy).expect("copying for nobody");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// Where [`accessible_to_nobody`] puts its copies; removed when the test ends.
pub fn unprivileged_directory() -> PathBuf {
    std::env::temp_dir().join(format!("grace-unprivileged-{}", std::process::id()))
}

/// The cargo build directory (target/).
pub fn target_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
}

/// grace built static for `target` (musl): the binary that runs FROM scratch, in a microVM, on another
/// architecture. A nested `cargo build` works inside `cargo test` and is a 0.5 s no-op when fresh.
pub fn build_static(target: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--target", target, "--bin", "grace"])
        .arg("--target-dir")
        .arg(target_dir());
    // No bound: a cold release build (LTO) takes minutes on a small machine; cargo does not hang.
    let output = build.output().expect("running cargo");
    assert!(
        output.status.success(),
        "{build:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir().join(target).join("release/grace")
}

/// SIGKILLs the processes when dropped during a panic (a failing test); leaves them alone otherwise.
pub struct KillOnFailure(pub Vec<i32>);

impl Drop for KillOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &pid in &self.0 {
                // SAFETY-free: kill(2) on a pid this test started, directly or not.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
