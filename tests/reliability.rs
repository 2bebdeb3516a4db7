//! Reliability: grace under bad input, signal floods, zombie floods, races, and the checks that nothing is
//! lost and nothing outside its tree is touched. Each test prints a one-line summary of what it measured
//! (`reliability: …`), which docs/reliability.md quotes.
//!
//! Sizes: a CI size by default; `GRACE_RELIABILITY_FULL=1` runs the documented full size (100,000 signals,
//! 50,000 orphans in bursts of up to 20,000, more race iterations). The heavy tests take [`HEAVY`] so that
//! they never run at the same time: a zombie burst takes most of pid_max (32,768 here) on its own.
//!
//! Related suites: tests/cli.rs (usage errors, 126/127), tests/exit_status.rs (every exit status and
//! signal), tests/reaping.rs, tests/shutdown.rs; the parsers' property tests are unit tests in src/cli.rs,
//! src/config.rs and src/signals.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    accessible_to_nobody, child, child_script, children, grace_binary, is_alive, run_exact,
    send_signal, sh, state, unprivileged_directory, wait_for_state, zombie_children, Decoy, Grace,
    Mode, Running, Stream, LATE, MODES, TIMEOUT,
};

/// Taken by the tests that load the machine (floods, storms), so that they run one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the full, documented size was asked for (`GRACE_RELIABILITY_FULL=1`).
fn full_size() -> bool {
    std::env::var("GRACE_RELIABILITY_FULL").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// `ci` by default, `full` with `GRACE_RELIABILITY_FULL=1`.
fn size<T>(ci: T, full: T) -> T {
    if full_size() {
        full
    } else {
        ci
    }
}

/// What a panic prints; none of it may ever reach the user.
const PANIC_TEXT: [&str; 3] = ["panicked", "RUST_BACKTRACE", "stack backtrace"];

/// A process's peak resident set (`VmHWM`), in kB.
fn peak_memory_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("reading /proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for pid {pid}"))
}

/// How much grace's peak memory may grow under a flood: a few pages of code and stack touched for the first
/// time. A buffer that grew with the flood (8 bytes a signal, 24 a zombie) would be far over it.
const MEMORY_MARGIN_KB: u64 = 128;

/// A pidfd: the test's own handle on grace, so that a flood that outlives grace cannot hit a process that
/// reuses its pid (the rule grace itself follows, see docs/reliability.md).
struct PidFd(OwnedFd);

impl PidFd {
    fn open(pid: i32) -> PidFd {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(
            fd >= 0,
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Sends `signal`; `false` once the process has been reaped.
    fn send(&self, signal: i32) -> bool {
        // SAFETY: a null siginfo makes the kernel fill it in as kill(2) would.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if result == 0 {
            return true;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ESRCH),
            "pidfd_send_signal({signal}): {err}"
        );
        false
    }
}

/// `[unshare …] sh -c SCRIPT sh grace` for `mode`: a shell that sets up descriptors in `SCRIPT` and then
/// `exec "$@"`s grace, inside the PID namespace (so that grace, exec'd by its PID 1, is PID 1 itself).
fn grace_behind_shell(mode: Mode, script: &str) -> Command {
    let mut command = match mode {
        Mode::Pid1 => {
            let mut unshare = Command::new("unshare");
            unshare.args(["--pid", "--fork", "--mount-proc", "--kill-child", "sh"]);
            unshare
        }
        Mode::Subreaper => Command::new("sh"),
    };
    command.args(["-c", script, "sh", grace_binary()]);
    command
}

/// How many children /proc/PID/task/PID/children lists: all of a single-threaded process's children, in one
/// file (grace has one thread).
fn child_count(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|children| children.split_whitespace().count())
        .unwrap_or(0)
}

/// Polls `condition` until it holds; fails after `bound`. For what the kernel does not announce (a zombie
/// count), never in place of a line the test could wait for.
fn wait_for(what: &str, bound: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        thread::yield_now();
    }
}

/// The main child's pid from the test's side: grace's only child right after the start line.
fn main_child(grace_pid: i32) -> i32 {
    let found = children(grace_pid);
    assert_eq!(found.len(), 1, "grace has one child: {found:?}");
    found[0]
}

fn assert_no_panic(text: &str, what: &str) {
    for needle in PANIC_TEXT {
        assert!(!text.contains(needle), "{what}: panic text in\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Bad input: every malformed value gives one line naming it and status 2 (tests/cli.rs has the first cases
// and the 126/127 spawn failures; the property tests in src/ cover arbitrary text and bytes).

/// Runs grace with `arguments` (and `environment`) and checks: status 2, nothing on stdout, exactly one line
/// on stderr, starting `grace: `, naming `names`, no panic text.
fn assert_usage_error(arguments: &[&OsStr], environment: &[(&str, &OsStr)], names: &str) {
    let what = format!("grace {arguments:?} with {environment:?}");
    let output = Command::new(grace_binary())
        .args(arguments)
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running grace");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_no_panic(&stderr, &what);
    assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
    assert!(output.stdout.is_empty(), "{what}: wrote to stdout");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: not one line:\n{stderr}");
    assert!(lines[0].starts_with("grace: "), "{what}: {stderr}");
    assert!(
        lines[0].contains(names),
        "{what}: {:?} does not name {names:?}",
        lines[0]
    );
}

#[test]
fn every_malformed_option_value_is_one_line_and_status_2() {
    let durations = [
        "",
        "-1",
        "-1s",
        "1e9s",
        "1x",
        "99999999999999999999",
        "18446744073709551616ms",
        "400d",
        "1 fortnight",
    ];
    let mut cases: Vec<(String, String, String)> = Vec::new();
    for option in [
        "--grace-period",
        "--cleanup-timeout",
        "--pre-stop-delay",
        "--final-timeout",
    ] {
        for value in durations {
            cases.push((option.into(), value.into(), format!("'{value}'")));
        }
    }
    let signals: [(&str, &[&str]); 5] = [
        (
            "--stop-signals",
            &[
                "FOO", "0", "65", "-1", "KILL", "STOP", "CHLD", "RTMIN+31", "TERM,", "SIG",
            ],
        ),
        (
            "--rewrite",
            &[
                "TERM:",
                "TERM",
                ":QUIT",
                "KILL:TERM",
                "STOP:TERM",
                "TERM:KILL",
                "TERM:STOP",
                "0:TERM",
                "TERM:65",
                "CHLD:TERM",
                "FOO:BAR",
            ],
        ),
        ("--parent-death-signal", &["0", "65", "BAR", "RTMAX+1"]),
        ("--final-signal", &["0", "65", "STOP", "SIGFOO"]),
        ("--success-exit", &["256", "-1", "x", "", "1000", "1.5"]),
    ];
    for (option, values) in signals {
        for value in values {
            cases.push((option.into(), value.to_string(), format!("'{value}'")));
        }
    }
    cases.push(("--log-format".into(), "xml".into(), "'xml'".into()));
    // A newline in a value is shown escaped: the message stays one line.
    cases.push(("-t".into(), "1\n2".into(), r"'1\n2'".into()));
    cases.push(("-r".into(), "TERM:\nQUIT".into(), r"'TERM:\nQUIT'".into()));
    let mut checked = 0;
    for (option, value, names) in &cases {
        assert_usage_error(
            &[OsStr::new(option), OsStr::new(value), OsStr::new("true")],
            &[],
            names,
        );
        checked += 1;
    }
    // Not UTF-8, for every option that takes a value.
    let invalid = OsStr::from_bytes(b"1\xffs");
    for option in [
        "-t",
        "--cleanup-timeout",
        "--pre-stop-delay",
        "--final-timeout",
        "--stop-signals",
        "-r",
        "-p",
        "--final-signal",
        "-e",
        "--log-format",
    ] {
        assert_usage_error(
            &[OsStr::new(option), invalid, OsStr::new("true")],
            &[],
            "UTF-8",
        );
        checked += 1;
    }
    // The same values from the environment: named with the variable; one that is not UTF-8 is refused, not
    // taken for unset.
    for (variable, value) in [
        ("GRACE_PERIOD", OsStr::new("-1s")),
        ("GRACE_PERIOD", OsStr::from_bytes(b"\xff")),
        ("GRACE_CLEANUP_TIMEOUT", OsStr::from_bytes(b"2\xffs")),
        ("GRACE_STOP_SIGNALS", OsStr::new("KILL")),
        ("GRACE_REWRITE", OsStr::new("TERM:STOP")),
        ("GRACE_FINAL_SIGNAL", OsStr::new("STOP")),
        ("GRACE_LOG", OsStr::from_bytes(b"\xfe")),
    ] {
        assert_usage_error(&[OsStr::new("true")], &[(variable, value)], variable);
        checked += 1;
    }
    for (arguments, names) in [
        (&["--frobnicate\n", "true"][..], r"--frobnicate\n"),
        (
            &["-t", "5s", "--pre-stop-delay", "5s", "true"][..],
            "pre-stop delay",
        ),
        (&["-q", "-v", "true"][..], "contradict"),
        (&["-t"][..], "missing argument"),
        (&[][..], "no command"),
    ] {
        let arguments: Vec<&OsStr> = arguments.iter().map(OsStr::new).collect();
        assert_usage_error(&arguments, &[], names);
        checked += 1;
    }
    eprintln!("reliability: bad input: {checked} malformed command lines and environments, each one line and status 2");
}

#[test]
fn a_command_name_with_a_newline_fails_in_one_line() {
    for mode in MODES {
        let output = run_exact(mode, ["--", "no-such\ncommand"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_no_panic(&stderr, "newline command");
        assert_eq!(output.status.code(), Some(127), "{mode:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{mode:?}: {stderr}");
        assert!(stderr.contains(r"no-such\ncommand"), "{mode:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Signal floods.

/// The standard signals of the flood: every catchable one but the stop signals (TERM, INT), the job-control
/// stops (TSTP, TTIN, TTOU) and CHLD (grace's own, never forwarded).
const STANDARD_KINDS: [i32; 23] = [
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGUSR1,
    libc::SIGSEGV,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGSTKFLT,
    libc::SIGCONT,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSYS,
];

/// Real-time signals 34 to 63 (the kernel's numbering); 64 tells the child to exit. 32 and 33 are left out:
/// glibc keeps them, so the Python child cannot wait for them.
const FIRST_REAL_TIME: i32 = 34;
const LAST_FLOODED: i32 = 63;
const CHILD_EXIT_SIGNAL: i32 = 64;

fn flood_kinds() -> Vec<i32> {
    let mut kinds = STANDARD_KINDS.to_vec();
    if common::SENT_FAULT_SIGNALS_CRASH.applies() {
        kinds.retain(|kind| !common::FAULT_SIGNALS.contains(kind));
    }
    kinds.extend(FIRST_REAL_TIME..=LAST_FLOODED);
    kinds
}

/// `got N from PID` → N.
fn received_signal(line: &str) -> Option<i32> {
    line.strip_prefix("got ")?.split(' ').next()?.parse().ok()
}

/// The process's RLIMIT_SIGPENDING: how many signals may be queued for its user at once.
fn pending_signal_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit, which lives for the call.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_SIGPENDING, &mut limit) };
    assert_eq!(result, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit.rlim_cur
}

/// Floods grace with `total` signals of every forwardable kind from several threads, one SIGTERM half-way
/// through; then checks that the child got every kind (each real-time one exactly as often as it was sent),
/// that grace stayed up with flat memory, and that the SIGTERM started a correct shutdown.
fn signal_flood(mode: Mode, total: usize) {
    const THREADS: usize = 4;
    let kinds = flood_kinds();
    // The grace period outlasts the flood: the shutdown ends when the child exits, which it does on 64.
    let mut grace = Grace::new(mode)
        .args(["-t", "5m"])
        .spawn(&child(&["signals", &CHILD_EXIT_SIGNAL.to_string()]));
    grace.wait_stdout("ready");
    let grace_pid = grace.grace_pid();
    let memory_before = peak_memory_kb(grace_pid);
    let mut sent: BTreeMap<i32, usize> = BTreeMap::new();
    for index in 0..total {
        *sent.entry(kinds[index % kinds.len()]).or_default() += 1;
    }
    let real_time_sent: usize = sent
        .iter()
        .filter(|(&kind, _)| kind >= FIRST_REAL_TIME)
        .map(|(_, count)| count)
        .sum();
    // Real-time signals queue, up to RLIMIT_SIGPENDING for the user (grace's queue and the child's count
    // together); below it, each one must arrive. Above it the kernel merges them like standard signals.
    let limit = pending_signal_limit();
    let exact = (real_time_sent as u64) + 1_000 < limit;

    let flood_started = Instant::now();
    let term_sent = thread::scope(|scope| {
        let senders: Vec<_> = (0..THREADS)
            .map(|thread_index| {
                let kinds = &kinds;
                scope.spawn(move || {
                    let pidfd = PidFd::open(grace_pid);
                    let mut term_sent = None;
                    let mine: Vec<usize> = (thread_index..total).step_by(THREADS).collect();
                    for (count, index) in mine.iter().enumerate() {
                        if thread_index == 0 && count == mine.len() / 2 {
                            term_sent = Some(Instant::now());
                            assert!(pidfd.send(libc::SIGTERM), "grace died during the flood");
                        }
                        let kind = kinds[index % kinds.len()];
                        assert!(pidfd.send(kind), "grace died during the flood");
                        if count % 2_000 == 0 {
                            let now = state(grace_pid);
                            assert!(
                                matches!(now, Some('R' | 'S')),
                                "grace is {now:?} during the flood"
                            );
                        }
                    }
                    term_sent
                })
            })
            .collect();
        senders
            .into_iter()
            .filter_map(|sender| sender.join().expect("a sender thread failed"))
            .next()
            .expect("thread 0 sent SIGTERM")
    });
    let flood_time = flood_started.elapsed();

    let stop_line = grace.wait_log("received SIGTERM");
    assert!(
        stop_line.text.contains("forwarded SIGTERM"),
        "{mode:?}: {}",
        stop_line.text
    );
    let stop_latency = stop_line.at.saturating_duration_since(term_sent);
    grace.wait_count(Stream::Stdout, "got 15 from", 1);
    for (&kind, &count) in &sent {
        let wanted = if kind >= FIRST_REAL_TIME && exact {
            count
        } else {
            1
        };
        grace.wait_count(Stream::Stdout, &format!("got {kind} from"), wanted);
    }
    let delivered = flood_started.elapsed();
    assert!(is_alive(grace_pid), "{mode:?}: grace is gone");
    let memory_after = peak_memory_kb(grace_pid);

    assert!(PidFd::open(grace_pid).send(CHILD_EXIT_SIGNAL));
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    finished.line(Stream::Stderr, "exited with status 0");
    let mut received: BTreeMap<i32, usize> = BTreeMap::new();
    for line in finished.stdout() {
        if let Some(kind) = received_signal(line) {
            *received.entry(kind).or_default() += 1;
        }
    }
    for problem in ["warning", "error", "could not"] {
        assert!(
            !finished.log().iter().any(|line| line.contains(problem)),
            "{mode:?}: a {problem:?} line in the log\n{}",
            finished
                .log()
                .iter()
                .filter(|line| line.contains(problem))
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(
        received.get(&libc::SIGTERM),
        Some(&1),
        "{mode:?}: one SIGTERM"
    );
    let unexpected: Vec<_> = received
        .keys()
        .filter(|kind| {
            !sent.contains_key(kind) && **kind != libc::SIGTERM && **kind != CHILD_EXIT_SIGNAL
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{mode:?}: received kinds never sent: {unexpected:?}"
    );
    let mut standard_received = 0;
    for (&kind, &count) in &sent {
        let got = received.get(&kind).copied().unwrap_or(0);
        if kind >= FIRST_REAL_TIME && exact {
            assert_eq!(got, count, "{mode:?}: real-time signal {kind}");
        } else {
            // Standard signals coalesce while pending; grace adds one SIGCONT to the forwarded SIGTERM.
            let most = count + usize::from(kind == libc::SIGCONT);
            assert!(
                (1..=most).contains(&got),
                "{mode:?}: signal {kind}: {got} of {count}"
            );
            standard_received += got;
        }
    }
    assert!(
        memory_after <= memory_before + MEMORY_MARGIN_KB,
        "{mode:?}: grace's peak memory grew from {memory_before} kB to {memory_after} kB"
    );
    let standard_sent = total - real_time_sent;
    eprintln!(
        "reliability: signal flood {mode:?}: {total} signals of {} kinds sent in {:.2}s from {THREADS} threads \
         + SIGTERM half-way; real-time: {real_time_sent} sent, {} received{}; standard: {standard_sent} sent, \
         {standard_received} received (coalesced), every kind at least once; SIGTERM handled {:.1} ms after \
         it was sent, all delivered after {:.2}s; grace VmHWM {memory_before} kB before, {memory_after} kB after",
        kinds.len(),
        flood_time.as_secs_f64(),
        received
            .iter()
            .filter(|(&kind, _)| (FIRST_REAL_TIME..=LAST_FLOODED).contains(&kind))
            .map(|(_, count)| count)
            .sum::<usize>(),
        if exact {
            " (each exactly)"
        } else {
            " (over RLIMIT_SIGPENDING)"
        },
        stop_latency.as_secs_f64() * 1000.0,
        delivered.as_secs_f64(),
    );
}

#[test]
fn a_signal_flood_is_forwarded_and_a_sigterm_inside_it_stops_the_child() {
    let _heavy = heavy();
    let total = size(20_000, 100_000);
    for mode in MODES {
        signal_flood(mode, total);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Zombie floods: bursts of orphans queued while grace is stopped, then reaped when it continues.

fn zombie_flood(mode: Mode, bursts: &[usize]) {
    let counts = bursts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut grace = Grace::new(mode).spawn(&child(&["orphan-bursts", &counts]));
    grace.wait_stdout("ready");
    let grace_pid = grace.grace_pid();
    let main = main_child(grace_pid);
    let memory_before = peak_memory_kb(grace_pid);
    let mut reap_times = Vec::new();
    for (index, &count) in bursts.iter().enumerate() {
        let burst = index + 1;
        grace.signal(libc::SIGSTOP);
        wait_for_state(grace_pid, 'T');
        send_signal(main, libc::SIGUSR1);
        grace.wait_stdout(&format!("orphaned {count} burst {burst}"));
        // The orphans were reparented to the stopped grace; wait until every one has exited, so that the
        // whole burst waits for grace as zombies.
        wait_for(
            &format!("{mode:?}: {count} zombies of burst {burst}"),
            Duration::from_secs(120),
            || zombie_children(grace_pid).len() >= count,
        );
        assert_eq!(
            state(grace_pid),
            Some('T'),
            "{mode:?}: grace ran while stopped"
        );
        let continued = Instant::now();
        grace.signal(libc::SIGCONT);
        // Only the main child is left once every zombie is reaped.
        wait_for(&format!("{mode:?}: reaping burst {burst}"), TIMEOUT, || {
            child_count(grace_pid) == 1
        });
        reap_times.push(continued.elapsed());
        let left = zombie_children(grace_pid);
        assert!(
            left.is_empty(),
            "{mode:?}: {} zombies left after burst {burst}",
            left.len()
        );
    }
    let memory_after = peak_memory_kb(grace_pid);
    grace.signal(libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    finished.line(Stream::Stdout, "got TERM");
    assert!(
        memory_after <= memory_before + MEMORY_MARGIN_KB,
        "{mode:?}: grace's peak memory grew from {memory_before} kB to {memory_after} kB"
    );
    let total: usize = bursts.iter().sum();
    eprintln!(
        "reliability: zombie flood {mode:?}: {total} orphans in bursts of {counts}, each queued as zombies while \
         grace was stopped; all reaped, in {} after SIGCONT; grace VmHWM {memory_before} kB before, \
         {memory_after} kB after",
        reap_times
            .iter()
            .map(|time| format!("{:.0} ms", time.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn zombie_bursts_queued_while_grace_is_stopped_are_all_reaped() {
    let _heavy = heavy();
    let bursts = size(vec![5_000, 5_000], vec![20_000, 20_000, 10_000]);
    for mode in MODES {
        zombie_flood(mode, &bursts);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Races.

/// The child exits on the first SIGRTMIN while the test keeps sending SIGRTMIN and SIGRTMIN+1 to grace:
/// real-time signals queue, so grace forwards whole batches of them, and some are still on their way (sent
/// by grace, not yet taken by the child) when the child exits. grace forwards by pid only until it has
/// reaped the child itself, so that pid cannot have been reused. To see a forward that came after the reap,
/// a second process takes the child's pid the moment it is free (forking with ns_last_pid set just below
/// it) and reports every signal that pid then receives: a forwarded SIGRTMIN or SIGRTMIN+1 there is a
/// signal to a reused pid. grace exits with the child's status.
#[test]
fn the_child_exits_while_forwarded_signals_are_in_flight() {
    /// A bound per run, far below RLIMIT_SIGPENDING, so that the queue never runs over.
    const MOST: usize = 5_000;
    let _heavy = heavy(); // its queued signals count against the same RLIMIT_SIGPENDING as the flood's
    let iterations = size(10, 100);
    let (mut total_sent, mut total_forwarded, mut total_received, mut taken_over) = (0, 0, 0, 0);
    for mode in MODES {
        for _ in 0..iterations {
            // -v: every forward is logged, so the test can count what was in flight.
            let mut grace = Grace::new(mode)
                .args(["-v"])
                .spawn(&child(&["signals-reuse", &FIRST_REAL_TIME.to_string()]));
            grace.wait_stdout("ready");
            let pidfd = PidFd::open(grace.grace_pid());
            let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sender = {
                let stop_sending = stop_sending.clone();
                thread::spawn(move || {
                    let mut sent = 0;
                    // On until the reuser has had its chance: grace exits only once it has gone too.
                    while sent < MOST || !stop_sending.load(std::sync::atomic::Ordering::Relaxed) {
                        let signal = FIRST_REAL_TIME + 1 - (sent % 2) as i32; // RTMIN+1, RTMIN, RTMIN+1…
                        if !pidfd.send(signal) {
                            break;
                        }
                        sent += 1;
                        if sent >= MOST {
                            thread::yield_now();
                        }
                    }
                    sent
                })
            };
            let finished = grace.finish();
            stop_sending.store(true, std::sync::atomic::Ordering::Relaxed);
            let sent = sender.join().expect("the sender");
            let what = format!("{mode:?}");
            assert_eq!(finished.code(), 0, "{what}\n{}", finished.dump());
            finished.line(Stream::Stdout, &format!("got {FIRST_REAL_TIME} from"));
            finished.line(Stream::Stderr, "exited with status 0");
            let to_reused_pid: Vec<&str> = finished
                .stdout()
                .into_iter()
                .filter(|line| {
                    [FIRST_REAL_TIME, FIRST_REAL_TIME + 1]
                        .iter()
                        .any(|signal| line.starts_with(&format!("reuser got {signal} from")))
                })
                .collect();
            assert!(
                to_reused_pid.is_empty(),
                "{what}: forwarded to the child's pid after it was reused: {to_reused_pid:?}\n{}",
                finished.dump()
            );
            // With -v every forward is a line, and the harness reads them slower than grace forwards: lines
            // grace could not write at once are dropped and counted (it never waits for its log), which is
            // no problem here.
            let problems: Vec<&str> = finished
                .log()
                .into_iter()
                .filter(|line| {
                    (line.contains("could not")
                        || line.contains("warning")
                        || line.contains("error"))
                        && !line.contains(" dropped: stderr did not accept")
                })
                .collect();
            assert!(
                problems.is_empty(),
                "{what}: grace signalled a process it had reaped: {problems:?}"
            );
            if finished.has(Stream::Stdout, "reuser took pid") {
                taken_over += 1;
            }
            let dropped: usize = finished
                .log()
                .iter()
                .filter_map(|line| {
                    line.split("warning: ")
                        .nth(1)?
                        .split(' ')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .sum();
            let logged = finished
                .log()
                .iter()
                .filter(|line| line.contains("debug: forwarded "))
                .count();
            // Every dropped line was a forward's (nothing else is logged during the flood).
            let forwarded = logged + dropped;
            let received = finished
                .stdout()
                .iter()
                .filter(|line| line.starts_with("got "))
                .count();
            assert!(
                received <= forwarded && forwarded <= sent,
                "{what}: sent {sent}, forwarded {forwarded}, received {received}"
            );
            total_sent += sent;
            total_forwarded += forwarded;
            total_received += received;
        }
    }
    let in_flight = total_forwarded - total_received;
    assert!(
        in_flight > 0,
        "no forwarded signal was ever in flight when the child exited: the race was not exercised"
    );
    assert!(
        taken_over > 0,
        "the child's pid was never taken over while signals came: the reuse was not exercised"
    );
    eprintln!(
        "reliability: in-flight race: {} runs ({iterations} per mode), the child exiting on SIGRTMIN under a \
         SIGRTMIN/SIGRTMIN+1 flood: {total_sent} sent to grace, {total_forwarded} forwarded, {total_received} \
         taken by the child, so {in_flight} were in flight when it exited; in {taken_over} runs another \
         process took the child's pid while the flood went on, and received none of them; every status 0",
        iterations * MODES.iter().count()
    );
}

/// The child handles SIGTERM by exiting with status 3 after a delay close to the grace period: some runs
/// exit just before the deadline, some are killed at it. Either way grace reports exactly what happened and
/// never kills before the deadline.
#[test]
fn the_child_exits_at_the_moment_of_the_deadline() {
    const GRACE: Duration = Duration::from_secs(1);
    let delays: Vec<u64> = size(
        vec![980, 995, 1000, 1005, 1020],
        (960..=1040).step_by(5).collect(),
    );
    let outcomes = thread::scope(|scope| {
        let workers: Vec<_> = MODES
            .iter()
            .map(|&mode| {
                let delays = &delays;
                scope.spawn(move || {
                    let (mut exited, mut killed) = (0, 0);
                    for &delay in delays {
                        let mut grace = Grace::new(mode).args(["-t", "1s"]).spawn(&child(&[
                            "handle-term-after",
                            &delay.to_string(),
                            "3",
                        ]));
                        grace.wait_stdout("ready");
                        let sent = Instant::now();
                        grace.signal(libc::SIGTERM);
                        let finished = grace.finish();
                        let what = format!("{mode:?} delay {delay} ms");
                        let code = finished.code();
                        let log = finished.log().join("\n");
                        assert!(!log.contains("could not"), "{what}\n{log}");
                        assert!(!log.contains("giving up"), "{what}\n{log}");
                        finished.line(Stream::Stderr, &format!("exiting with status {code}"));
                        match code {
                            3 => {
                                finished.line(Stream::Stderr, "exited with status 3");
                                exited += 1;
                            }
                            137 => {
                                finished.line(Stream::Stderr, "was killed by SIGKILL (status 137)");
                                let kill = finished.line(Stream::Stderr, "SIGKILL to");
                                let at = kill.at.saturating_duration_since(sent);
                                assert!(
                                    at >= GRACE,
                                    "{what}: killed before the grace period was over\n{log}"
                                );
                                assert!(
                                    at < GRACE + LATE,
                                    "{what}: killed {at:?} after SIGTERM, long after the deadline\n{log}"
                                );
                                killed += 1;
                            }
                            other => panic!("{what}: status {other}\n{}", finished.dump()),
                        }
                    }
                    (exited, killed)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a mode failed"))
            .collect::<Vec<_>>()
    });
    let exited: usize = outcomes.iter().map(|outcome| outcome.0).sum();
    let killed: usize = outcomes.iter().map(|outcome| outcome.1).sum();
    eprintln!(
        "reliability: deadline race: {} runs, the child exiting {}–{} ms after SIGTERM against a 1 s grace \
         period: {exited} exited on their own (status 3), {killed} were killed at the deadline (137), each \
         reported as such, none killed early",
        exited + killed,
        delays.first().copied().unwrap_or_default(),
        delays.last().copied().unwrap_or_default()
    );
}

/// Every process whose command line contains `marker`, other than the test's own.
fn processes_marked(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let entries = std::fs::read_dir("/proc").expect("listing /proc");
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .windows(marker.len())
                    .any(|window| window == marker.as_bytes())
            })
        })
        .collect()
}

/// Chains of orphans that keep forking (each hop forks the next and exits) and ignore SIGTERM, while the
/// grace period runs out: the SIGKILL sweep must repeat until the tree is empty, since every hop forked
/// just before its SIGKILL is new to the sweep. Decoys started first, outside the tree, must live.
fn fork_storm_during_the_sweep(mode: Mode) {
    const CHAINS: usize = 4;
    // A bound, never reached: at ~600 hops a second per chain, SIGKILL comes long before.
    const HOPS: usize = 100_000;
    let marker = format!(
        "reliability-storm-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos())
            .unwrap_or_default()
    );
    let decoys: Vec<Decoy> = (0..3).map(|_| Decoy::start()).collect();
    let pid_before = last_pid();
    let mut grace = Grace::new(mode).args(["-t", "500ms"]).spawn(&child(&[
        "fork-chains",
        &CHAINS.to_string(),
        &HOPS.to_string(),
        &marker,
    ]));
    grace.wait_stdout("chains ready");
    let sent = Instant::now();
    grace.signal(libc::SIGTERM);
    let finished = grace.finish();
    let took = finished.at.saturating_duration_since(sent);
    let survivors = processes_marked(&marker);
    for &pid in &survivors {
        // SAFETY-free: kill(2) on processes this test started; cleanup before failing.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let what = format!("{mode:?} fork storm");
    assert!(
        survivors.is_empty(),
        "{what}: {} processes of the storm survived grace: {survivors:?}\n{}",
        survivors.len(),
        finished.dump()
    );
    assert_eq!(finished.code(), 137, "{what}\n{}", finished.dump());
    assert!(
        !finished.has(Stream::Stdout, "chain complete"),
        "{what}: a chain finished before the sweep; the race was not exercised"
    );
    let log = finished.log().join("\n");
    assert!(
        !log.contains("giving up"),
        "{what}: grace gave up on survivors\n{log}"
    );
    finished.line(Stream::Stderr, "grace period of 500ms expired: SIGKILL to");
    for decoy in &decoys {
        decoy.assert_untouched(&what);
    }
    let pids_used = last_pid().wrapping_sub(pid_before).rem_euclid(pid_max());
    eprintln!(
        "reliability: fork storm {mode:?}: {CHAINS} chains of orphans forking (~{pids_used} pids used, {:.2}s \
         from SIGTERM to grace's exit) while the SIGKILL sweep ran: none survived; {} decoys outside the tree \
         untouched",
        took.as_secs_f64(),
        decoys.len()
    );
}

/// The last pid the kernel handed out in the host's PID namespace.
fn last_pid() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

fn pid_max() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(32_768)
}

#[test]
fn orphans_forking_during_the_sigkill_sweep_are_all_killed_and_decoys_live() {
    let _heavy = heavy();
    for mode in MODES {
        fork_storm_during_the_sweep(mode);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Nothing lost.

/// A child that handles SIGTERM and needs all but the last 100 ms of the grace period gets it: it is not
/// killed, and its status comes through.
#[test]
fn a_child_that_needs_the_whole_grace_period_gets_it() {
    const GRACE: Duration = Duration::from_secs(2);
    const NEEDS: Duration = Duration::from_millis(1_900);
    for mode in MODES {
        let mut grace = Grace::new(mode).args(["-t", "2s"]).spawn(&child(&[
            "handle-term-after",
            &NEEDS.as_millis().to_string(),
            "3",
        ]));
        grace.wait_stdout("ready");
        let sent = Instant::now();
        grace.signal(libc::SIGTERM);
        let done = grace.wait_stdout("done");
        let finished = grace.finish();
        assert_eq!(finished.code(), 3, "{mode:?}\n{}", finished.dump());
        assert!(
            !finished.has(Stream::Stderr, "SIGKILL to"),
            "{mode:?}\n{}",
            finished.dump()
        );
        let used = done.at.saturating_duration_since(sent);
        assert!(used >= NEEDS, "{mode:?}: done after {used:?}");
        eprintln!(
            "reliability: whole grace period {mode:?}: the child finished {:.3}s into a {}s grace period and \
             exited 3, not killed",
            used.as_secs_f64(),
            GRACE.as_secs()
        );
    }
}

/// Test data: every byte value, then pseudo-random bytes.
fn binary_data(length: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..length)
        .map(|index| {
            if index < 256 {
                return index as u8;
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn binary_stdout_and_stderr_come_through_byte_exact() {
    let length = size(4 << 20, 64 << 20);
    let data = binary_data(length);
    let file = TempFile(
        std::env::temp_dir().join(format!("grace-reliability-binary-{}", std::process::id())),
    );
    std::fs::write(&file.0, &data).expect("writing the test data");
    let path = file.0.display().to_string();
    for mode in MODES {
        let started = Instant::now();
        // -q: grace writes nothing of its own on a clean run, so stderr is the child's alone.
        let output: Output = Grace::new(mode)
            .args(["-q"])
            .command(&[
                "sh".into(),
                "-c".into(),
                r#"cat "$1"; cat "$1" >&2"#.into(),
                "sh".into(),
                path.clone(),
            ])
            .output()
            .expect("running grace");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{mode:?}: {}",
            String::from_utf8_lossy(&output.stderr)
                .chars()
                .take(500)
                .collect::<String>()
        );
        assert!(
            output.stdout == data,
            "{mode:?}: stdout differs ({} bytes of {length})",
            output.stdout.len()
        );
        assert!(
            output.stderr == data,
            "{mode:?}: stderr differs ({} bytes of {length})",
            output.stderr.len()
        );
        eprintln!(
            "reliability: binary output {mode:?}: {length} bytes (all 256 values) on stdout and on stderr, \
             byte-exact, in {:.2}s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// grace started with stdout closed (`>&-`): Rust's runtime reopens a closed descriptor 0, 1 or 2 on
/// /dev/null before `main`, so neither grace's signalfd nor a file the child opens later can take
/// descriptor 1 and receive the child's output; the child runs and its status comes through. A child that
/// closes its own stdout does not disturb grace either.
#[test]
fn a_closed_stdout_loses_nothing_else() {
    let probe = r#"if [ -e /proc/$$/fd/1 ]; then echo "fd 1: $(readlink /proc/$$/fd/1)" >&2;
                   else echo "fd 1 closed" >&2; fi; echo lost; exit 7"#;
    for mode in MODES {
        let output = grace_behind_shell(mode, r#"exec "$@" >&-"#)
            .args(["-q", "--", "sh", "-c", probe])
            .stdin(Stdio::null())
            .output()
            .expect("running grace");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_no_panic(&stderr, "closed stdout");
        assert_eq!(output.status.code(), Some(7), "{mode:?}: {stderr}");
        assert_eq!(stderr.trim(), "fd 1: /dev/null", "{mode:?}");

        let output = Grace::new(mode)
            .args(["-q"])
            .command(&sh(
                r#"exec >&-; echo "closed" >&2; echo lost 2>/dev/null; exit 5"#,
            ))
            .output()
            .expect("running grace");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(5), "{mode:?}: {stderr}");
        assert_eq!(stderr.trim(), "closed", "{mode:?}");
        assert!(output.stdout.is_empty(), "{mode:?}");
    }
}

/// The reader of the child's stdout goes away: the child dies of SIGPIPE, and grace says so with 141.
#[test]
fn a_broken_stdout_pipe_gives_the_childs_sigpipe_status() {
    for mode in MODES {
        let mut process = Grace::new(mode)
            .command(&sh("while :; do echo x; done"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running grace");
        drop(process.stdout.take()); // nobody reads: the child's next full write gets SIGPIPE
        let output = process.wait_with_output().expect("waiting for grace");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(128 + libc::SIGPIPE),
            "{mode:?}: {stderr}"
        );
        assert!(
            stderr.contains("was killed by SIGPIPE (status 141)"),
            "{mode:?}: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Isolation.

/// The child's descriptors are the three standard ones and the one the test passed on purpose (7); none of
/// grace's own (its signalfd; pidfds are always close-on-exec) leaks into it.
#[test]
fn no_descriptor_of_grace_leaks_into_the_child() {
    for mode in MODES {
        let mut command = grace_behind_shell(mode, r#"exec 7</dev/null; exec "$@""#);
        command
            .args(["--", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The test runner may hold descriptors open without close-on-exec (cargo's jobserver): close them,
        // so that what the child may have is exactly 0, 1, 2 and the 7 passed on purpose.
        // SAFETY: between fork and exec only the async-signal-safe close_range system call runs.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let outer = command.spawn().expect("running grace");
        let mut grace = Running::attach(mode, outer);
        grace.wait_log("started pid");
        let grace_pid = match mode {
            Mode::Subreaper => grace.grace_pid(),        // sh exec'd grace
            Mode::Pid1 => main_child(grace.grace_pid()), // unshare's child: sh, which exec'd grace
        };
        let main = main_child(grace_pid);
        // Once sleep sleeps: before that it may still be starting, with a locale file of its own open.
        common::wait_until("the child sleeps", || {
            std::fs::read_to_string(format!("/proc/{main}/wchan"))
                .is_ok_and(|wchan| wchan.contains("nanosleep"))
        });
        let descriptors = |pid: i32| -> BTreeMap<i32, String> {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("listing descriptors")
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let fd = entry.file_name().to_str()?.parse().ok()?;
                    let target = std::fs::read_link(entry.path()).ok()?;
                    Some((fd, target.display().to_string()))
                })
                .collect()
        };
        let own = descriptors(grace_pid);
        assert!(
            own.values().any(|target| target.contains("signalfd")),
            "{mode:?}: grace's signalfd not found in {own:?}"
        );
        let inherited = descriptors(main);
        assert_eq!(
            inherited.keys().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([0, 1, 2, 7]),
            "{mode:?}: the child's descriptors: {inherited:?} (grace's: {own:?})"
        );
        assert!(
            !inherited
                .values()
                .any(|target| target.starts_with("anon_inode:")),
            "{mode:?}: {inherited:?}"
        );
        send_signal(grace_pid, libc::SIGTERM);
        let finished = grace.finish();
        assert_eq!(
            finished.code(),
            128 + libc::SIGTERM,
            "{mode:?}\n{}",
            finished.dump()
        );
    }
}

/// `unshare --user --map-root-user`, run as nobody: an unprivileged user in a user namespace of its own,
/// with a PID namespace (grace is PID 1) or without (grace is a subreaper).
fn unprivileged(pid_namespace: bool, grace_arguments: &[&str], command: &[String]) -> Running {
    let binary = accessible_to_nobody(grace_binary(), true);
    let mut process = Command::new("setpriv");
    process
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["unshare", "--user", "--map-root-user"]);
    if pid_namespace {
        process.args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
    }
    process
        .arg(binary)
        .args(grace_arguments)
        .arg("--")
        .args(command)
        // PATH without the root-only directories (pyenv's shims under /root).
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let outer = process.spawn().expect("running setpriv");
    let mode = if pid_namespace {
        Mode::Pid1
    } else {
        Mode::Subreaper
    };
    let mut running = Running::attach(mode, outer);
    running.wait_log("started pid");
    running
}

/// `python3 -u child.py ARGUMENTS…`, with a child.py that `nobody` can read.
fn unprivileged_child(arguments: &[&str]) -> Vec<String> {
    let script = accessible_to_nobody(&child_script().display().to_string(), false);
    let mut command = vec![
        "python3".to_string(),
        "-u".to_string(),
        script.display().to_string(),
    ];
    command.extend(arguments.iter().map(|argument| argument.to_string()));
    command
}

/// grace's pid as the test sees it, for a run started by [`unprivileged`].
fn unprivileged_grace_pid(running: &Running, pid_namespace: bool) -> i32 {
    if pid_namespace {
        main_child(running.grace_pid()) // unshare forked grace
    } else {
        running.grace_pid() // setpriv and unshare exec'd grace
    }
}

#[test]
fn grace_works_unprivileged_in_a_user_namespace() {
    struct RemoveCopies;
    impl Drop for RemoveCopies {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(unprivileged_directory());
        }
    }
    let _copies = RemoveCopies;
    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "true",
        ])
        .output()
        .expect("running setpriv");
    assert!(
        probe.status.success(),
        "this kernel does not let an unprivileged user create user and PID namespaces: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    for pid_namespace in [true, false] {
        if !pid_namespace && !common::mode_tested(Mode::Subreaper) {
            continue;
        }
        let what = if pid_namespace {
            "unprivileged, PID 1 of a user+PID namespace"
        } else {
            "unprivileged, subreaper in a user namespace"
        };
        let mode_text = if pid_namespace {
            "as PID 1"
        } else {
            "as a subreaper"
        };

        // Forwarding and the exit status.
        let mut grace = unprivileged(
            pid_namespace,
            &[],
            &unprivileged_child(&["handle-term", "3"]),
        );
        // grace's start line: the child's first line may come before it.
        let started = &grace
            .seen()
            .iter()
            .find(|line| line.stream == Stream::Stderr && line.text.contains("started pid"))
            .expect("unprivileged() waited for it")
            .text;
        assert!(started.contains(mode_text), "{what}: {started}");
        grace.wait_stdout("ready");
        send_signal(unprivileged_grace_pid(&grace, pid_namespace), libc::SIGTERM);
        grace.wait_stdout("got TERM");
        let finished = grace.finish();
        assert_eq!(finished.code(), 3, "{what}\n{}", finished.dump());

        // Reaping orphans.
        let mut grace = unprivileged(pid_namespace, &[], &unprivileged_child(&["orphans", "500"]));
        let grace_pid = unprivileged_grace_pid(&grace, pid_namespace);
        grace.wait_stdout("orphaned 500");
        wait_for(&format!("{what}: reaping 500 orphans"), TIMEOUT, || {
            zombie_children(grace_pid).is_empty() && child_count(grace_pid) == 1
        });
        send_signal(grace_pid, libc::SIGTERM);
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{what}\n{}", finished.dump());

        // The whole tree's shutdown: a daemon that handles SIGTERM, one that ignores it (SIGKILL), and a
        // main child that ignores it too.
        let mut grace = unprivileged(
            pid_namespace,
            &["-t", "1s"],
            &unprivileged_child(&[
                "daemons",
                "good:handle",
                "stubborn:ignore",
                "--main",
                "ignore",
            ]),
        );
        let grace_pid = unprivileged_grace_pid(&grace, pid_namespace);
        grace.wait_stdout("daemons ready");
        send_signal(grace_pid, libc::SIGTERM);
        let finished = grace.finish();
        assert_eq!(finished.code(), 137, "{what}\n{}", finished.dump());
        finished.line(Stream::Stdout, "daemon good got TERM");
        let killed = finished.line(Stream::Stderr, "SIGKILL to");
        assert!(
            killed.text.contains("SIGKILL to 2 processes"),
            "{what}: {}\n{}",
            killed.text,
            finished.dump()
        );
        assert!(
            !finished.has(Stream::Stderr, "could not"),
            "{what}\n{}",
            finished.dump()
        );
        eprintln!(
            "reliability: {what}: forwarding (status 3), 500 orphans reaped, tree shutdown with SIGKILL (137)"
        );
    }
}
