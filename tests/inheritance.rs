//! The child starts as if grace were not there: it inherits exactly the signal mask, the ignored signals and
//! the descriptors grace inherited, and none of grace's own. And -p: grace gets a signal when its parent
//! dies, and passes it on like any other.

mod common;

use std::process::{Command, Stdio};

use common::{
    child, child_script, grace_binary, output_within, run_to_end, Grace, Mode, Running, MODES,
};

/// What the wrapper sets up before it execs: SIGUSR1 and SIGRTMIN+2 (kernel numbering) blocked; SIGHUP,
/// SIGINT, SIGPIPE and SIGCHLD ignored; one extra inheritable descriptor. SIGCHLD ignored is the hard one:
/// grace must not keep it (the kernel would reap its children and tell it nothing) and the child must get
/// it all the same.
const BLOCKED: [i32; 2] = [libc::SIGUSR1, 36];
const IGNORED: [i32; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE, libc::SIGCHLD];

fn numbers(signals: &[i32]) -> String {
    signals
        .iter()
        .map(|signal| signal.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn mask(signals: &[i32]) -> u64 {
    signals
        .iter()
        .fold(0, |mask, signal| mask | 1 << (signal - 1))
}

/// The line /proc/PID/status shows for a set of signals.
fn status_line(field: &str, signals: &[i32]) -> String {
    format!("{field}:\t{:016x}", mask(signals))
}

/// The mask in the `field` line of a status report.
fn mask_of(report: &[String], field: &str) -> u64 {
    let line = report
        .iter()
        .find_map(|line| line.strip_prefix(&format!("{field}:\t")))
        .unwrap_or_else(|| panic!("no {field} line in {report:?}"));
    u64::from_str_radix(line, 16).expect("a hexadecimal mask")
}

/// Two reports of what a process inherited: child.py's (mask and descriptors; Python ignores SIGPIPE and
/// SIGXFSZ itself) and grep's (which changes no disposition, so its SigIgn is exactly what it inherited).
fn probes() -> [Vec<String>; 2] {
    [
        child(&["status"]),
        ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
            .map(String::from)
            .to_vec(),
    ]
}

/// `python3 child.py exec-with …` up to its `--`: a wrapper that sets up `BLOCKED`, `IGNORED` and a
/// descriptor, then execs the rest of its command line.
fn wrapper() -> Vec<String> {
    child(&[
        "exec-with",
        "--block",
        &numbers(&BLOCKED),
        "--ignore",
        &numbers(&IGNORED),
        "--fd",
        "--",
    ])
}

/// Runs `program` through the wrapper and returns its stdout lines.
fn through_wrapper(program: &[String]) -> Vec<String> {
    let mut words = wrapper();
    words.extend(program.iter().cloned());
    run_wrapped(command_of(&words))
}

/// Runs grace through the wrapper (inside the PID namespace in PID-1 mode, where it execs grace as PID 1),
/// grace running `program`, and returns the stdout lines.
fn grace_through_wrapper(mode: Mode, program: &[String]) -> Vec<String> {
    run_wrapped(Grace::new(mode).wrapped(wrapper()).command(program))
}

fn run_wrapped(mut command: Command) -> Vec<String> {
    let output = output_within(command.stdin(Stdio::null()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}\n{stderr}", output.status);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// The part of a report that can match under the emulator, which loses inherited ignores and renumbers
/// real-time signals (see the limits named): no SigIgn line, and SigBlk for the standard signals only.
/// Natively the report is left whole.
fn comparable(report: &[String]) -> Vec<String> {
    let ignored_lost = common::INHERITED_IGNORE_LOST.applies();
    let real_time_lost = common::RENUMBERED_REAL_TIME_SIGNALS.applies();
    report
        .iter()
        .filter(|line| !(ignored_lost && line.starts_with("SigIgn:")))
        .map(|line| match line.strip_prefix("SigBlk:\t") {
            Some(mask) if real_time_lost => {
                let mask = u64::from_str_radix(mask, 16).expect("a hexadecimal mask");
                format!("SigBlk:\t{:016x}", mask & 0xffff_ffff)
            }
            _ => line.clone(),
        })
        .collect()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(String::from).collect()
}

fn command_of(command_line: &[String]) -> Command {
    let mut command = Command::new(&command_line[0]);
    command.args(&command_line[1..]);
    command
}

#[test]
fn the_child_inherits_what_grace_inherited() {
    for probe in probes() {
        let direct = through_wrapper(&probe);
        // The wrapper really set things up (otherwise the comparison below proves nothing).
        let extra_fd = direct[0]
            .strip_prefix("fd ")
            .expect("the wrapper's fd line");
        assert!(
            direct.contains(&status_line("SigBlk", &BLOCKED)),
            "{direct:?}"
        );
        if probe[0] == "grep" {
            // At least these: the test itself may have inherited more (glibc's posix_spawn leaves its
            // internal signals 32 and 33 ignored in the children of a process that handles them).
            let ignored = mask_of(&direct, "SigIgn");
            let wanted = mask(&IGNORED);
            assert_eq!(ignored & wanted, wanted, "{direct:?}");
        } else {
            let fds = direct.iter().find(|line| line.starts_with("fds ")).unwrap();
            assert!(
                fds.split_whitespace().any(|fd| fd == extra_fd),
                "{direct:?}"
            );
        }
        for mode in MODES {
            let through_grace = grace_through_wrapper(mode, &probe);
            assert_eq!(
                comparable(&through_grace),
                comparable(&direct),
                "{mode:?} {probe:?}"
            );
        }
    }
}

#[test]
fn with_nothing_inherited_the_child_starts_clean() {
    for probe in probes() {
        let output = command_of(&probe)
            .stdin(Stdio::null())
            .output()
            .expect("running the probe");
        assert!(output.status.success(), "{probe:?}: {:?}", output.status);
        let direct = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            direct.contains(&status_line("SigBlk", &[])),
            "{probe:?}: {direct}"
        );
        for mode in MODES {
            let (status, through_grace, log) = run_to_end(Grace::new(mode), &probe);
            assert!(status.success(), "{mode:?} {probe:?}: {status:?}\n{log}");
            assert_eq!(
                comparable(&lines(&through_grace)),
                comparable(&lines(&direct)),
                "{mode:?} {probe:?}\n{log}"
            );
        }
    }
}

#[test]
fn parent_death_signal_is_received_and_forwarded() {
    if common::subreaper_refusal_is_fatal() {
        return; // grace runs as a plain child here
    }
    // An intermediate process starts grace with -p TERM and is then SIGKILLed: grace gets SIGTERM, passes it
    // to its child, and exits with the child. grace's output reaches the test through the intermediate's
    // pipes, which grace inherited.
    let intermediate = Command::new("python3")
        .arg("-u")
        .arg(child_script())
        .args(["popen", grace_binary(), "-p", "TERM", "--"])
        .args(child(&["handle-term"]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the intermediate");
    let mut running = Running::attach(Mode::Subreaper, intermediate);
    let grace_pid = pid_after(&running.wait_stdout("popen pid ").text, "popen pid ");
    running.wait_log("started pid"); // logged after PR_SET_PDEATHSIG is set
    let child_pid = pid_after(&running.wait_stdout("ready pid ").text, "ready pid ");
    // Neither is the test's child, and with the intermediate gone nothing else would end them if the test fails.
    let _cleanup = common::KillOnFailure(vec![grace_pid, child_pid]);
    running.signal(libc::SIGKILL); // the intermediate: `running` was attached to it
    let received = running.wait_log("received SIGTERM");
    assert!(
        received.text.contains("forwarded SIGTERM"),
        "{}",
        received.text
    );
    running.wait_stdout("got TERM");
    running.wait_log("exiting with status 0");
    let finished = running.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&finished.status),
        Some(libc::SIGKILL),
        "the intermediate\n{}",
        finished.dump()
    );
}

fn pid_after(line: &str, prefix: &str) -> i32 {
    line.strip_prefix(prefix)
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}
