//! The bounded shutdown of the whole tree (see the timeline in src/shutdown.rs): the stop signal goes to
//! the main child, the rest of the tree gets SIGTERM before SIGKILL, nothing is killed before its time and
//! everything is killed soon after it, and grace exits as soon as its tree is empty.
//!
//! Times are measured from just before the test sends the stop signal: grace's clock starts later, so a
//! lower bound measured that way is exact. Upper bounds are generous ([`LATE`]).

mod common;

use std::time::Duration;

use common::{
    assert_on_time, child, children, is_alive, pid_in, send_signal, stop, wait_for_state, Decoy,
    Grace, Line, Mode, Running, Stream, LATE, MODES,
};

/// After the main child exits, how long grace leaves the rest of the tree alone (src/shutdown.rs).
const SETTLE: Duration = Duration::from_millis(200);

const SECOND: Duration = Duration::from_secs(1);

/// The main child's pid, from grace's start line (`started pid N: …`), as grace names it in its log.
fn main_pid(grace: &Running) -> i32 {
    let started = grace
        .seen()
        .iter()
        .find(|line| line.stream == Stream::Stderr && line.text.contains("started pid"))
        .expect("the start line was read");
    pid_in(&started.text)
}

/// X from a log line ending `…, X.XXXs after the stop signal`.
fn seconds_after_stop(text: &str) -> f64 {
    text.strip_suffix("s after the stop signal")
        .and_then(|rest| rest.rsplit(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no time after the stop signal in {text:?}"))
}

/// Whether `text` reports SIGKILL after `timer` (`grace period`, `cleanup timeout`) of `seconds` expired,
/// with `rest` following: grace spells a configured duration as written (`1s`) or to the millisecond.
fn says_expired(text: &str, timer: &str, seconds: u64, rest: &str) -> bool {
    [format!("{seconds}s"), format!("{seconds}.000s")]
        .iter()
        .any(|spelled| text.contains(&format!("{timer} of {spelled} expired: {rest}")))
}

/// Where in the whole output (both streams, in the order read) the first line containing `needle` is.
fn position(lines: &[Line], needle: &str) -> Option<usize> {
    lines.iter().position(|line| line.text.contains(needle))
}

#[test]
fn child_ignoring_term_is_killed_at_the_grace_period_and_not_before() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["-t", "1s"])
            .spawn(&child(&["ignore-term"]));
        let pid = pid_in(&grace.wait_stdout("ready pid").text);
        let sent = stop(&grace);
        let kill = grace.wait_log("SIGKILL to");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        assert!(
            kill.text.contains("warning: ")
                && says_expired(
                    &kill.text,
                    "grace period",
                    1,
                    &format!("SIGKILL to 1 process: {pid} (python3)")
                ),
            "{mode:?}: {:?}",
            kill.text
        );
        assert_on_time("SIGKILL", sent, kill.at, SECOND, &output);
        assert_on_time("grace's exit", sent, finished.at, SECOND, &output);
    }
}

#[test]
fn zero_grace_period_kills_at_once() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["--grace-period", "0"])
            .spawn(&child(&["ignore-term"]));
        let pid = pid_in(&grace.wait_stdout("ready pid").text);
        let sent = stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        finished.line(
            Stream::Stderr,
            &format!("grace period is 0: SIGKILL to 1 process: {pid} (python3)"),
        );
        assert_on_time("grace's exit", sent, finished.at, Duration::ZERO, &output);
    }
}

#[test]
fn child_handling_term_exits_promptly_and_grace_reports_each_step() {
    for mode in MODES {
        let command = child(&["handle-term", "3"]);
        let mut grace = Grace::new(mode).spawn(&command);
        let pid = pid_in(&grace.wait_stdout("ready pid").text);
        let sent = stop(&grace);
        grace.wait_stdout("got TERM");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 3, "{mode:?}\n{output}");
        // Well inside the default grace period of 8 s.
        assert_on_time("grace's exit", sent, finished.at, Duration::ZERO, &output);

        let role = match mode {
            Mode::Pid1 => "as PID 1",
            Mode::Subreaper => "as a subreaper",
        };
        let started = format!(
            "started pid {pid}: {} (grace period 8s, {role})",
            command.join(" ")
        );
        // From outside its namespace, the sender has no pid grace could name.
        let sender = match mode {
            Mode::Pid1 => "outside the namespace".to_string(),
            Mode::Subreaper => format!("received SIGTERM from pid {} (", std::process::id()),
        };
        let received = "received SIGTERM from ";
        let forwarded = format!("forwarded SIGTERM to pid {pid} (python3)");
        let exited = format!("main child pid {pid} (python3) exited with status 3, ");
        let exiting = "exiting with status 3, ";
        let log = finished.log();
        let index = |needle: &str| {
            log.iter()
                .position(|line| line.contains(needle))
                .unwrap_or_else(|| panic!("{mode:?}: no log line contains {needle:?}\n{output}"))
        };
        let steps = [&started, received, &exited, exiting].map(index);
        assert!(
            steps.windows(2).all(|pair| pair[0] < pair[1]),
            "{mode:?}: log lines out of order\n{output}"
        );
        assert!(
            log[steps[1]].contains(&sender) && log[steps[1]].contains(&forwarded),
            "{mode:?}: {}",
            log[steps[1]]
        );
        let exit_time = seconds_after_stop(log[steps[2]]);
        assert!(exit_time < 1.0, "{mode:?}: {}", log[steps[2]]);
        assert!(
            seconds_after_stop(log[steps[3]]) >= exit_time,
            "{mode:?}: {}",
            log[steps[3]]
        );
    }
}

#[test]
fn daemon_handling_term_gets_it_after_the_main_child_exits_and_one_ignoring_it_is_killed() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["-t", "3s", "--cleanup-timeout", "1s"])
            .spawn(&child(&[
                "daemons",
                "good:handle",
                "bad:ignore",
                "--main",
                "handle",
            ]));
        let good = pid_in(&grace.wait_stdout("daemon good pid").text);
        let bad = pid_in(&grace.wait_stdout("daemon bad pid").text);
        grace.wait_stdout("daemons ready");
        let sent = stop(&grace);
        grace.wait_stdout("main got TERM");
        let main_exit = grace.wait_log("main child pid");
        let terminate = grace.wait_log("sending SIGTERM");
        let good_term = grace.wait_stdout("daemon good got TERM");
        let kill = grace.wait_log("SIGKILL to");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");

        assert!(
            main_exit.text.contains("exited with status 0"),
            "{}",
            main_exit.text
        );
        for daemon in [good, bad] {
            assert!(
                terminate
                    .text
                    .contains("main child has exited: 2 processes remain")
                    && terminate.text.contains(&format!("{daemon} (python3)")),
                "{mode:?}: {:?}",
                terminate.text
            );
        }
        assert!(
            says_expired(
                &kill.text,
                "cleanup timeout",
                1,
                &format!("SIGKILL to 1 process: {bad} (python3)")
            ),
            "{mode:?}: {:?}",
            kill.text
        );
        // The main child exits no earlier than the stop signal; the rest waits the settle, then the cleanup
        // timeout.
        assert_on_time(
            "the good daemon's TERM",
            sent,
            good_term.at,
            SETTLE,
            &output,
        );
        assert_on_time("SIGKILL", sent, kill.at, SETTLE + SECOND, &output);
        assert_on_time("grace's exit", sent, finished.at, SETTLE + SECOND, &output);
        let order = [
            "main child pid",
            "daemon good got TERM",
            "SIGKILL to",
            "exiting with status 0",
        ]
        .map(|needle| position(&finished.lines, needle));
        assert!(
            order.windows(2).all(|pair| pair[0] < pair[1]),
            "{mode:?}: out of order {order:?}\n{output}"
        );
    }
}

#[test]
fn main_child_ignoring_term_lets_the_daemons_have_term_before_the_deadline() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["-t", "2s", "--cleanup-timeout", "1s"])
            .spawn(&child(&[
                "daemons",
                "good:handle",
                "bad:ignore",
                "--main",
                "ignore",
            ]));
        let main = main_pid(&grace);
        let good = pid_in(&grace.wait_stdout("daemon good pid").text);
        let bad = pid_in(&grace.wait_stdout("daemon bad pid").text);
        grace.wait_stdout("daemons ready");
        let sent = stop(&grace);
        let terminate = grace.wait_log("sending SIGTERM");
        let good_term = grace.wait_stdout("daemon good got TERM");
        let kill = grace.wait_log("SIGKILL to");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");

        // At the deadline less the cleanup timeout, the rest of the tree (not the main child) gets SIGTERM.
        assert!(
            terminate.text.contains("main child still running")
                && terminate
                    .text
                    .contains("2 processes remain, sending SIGTERM: ")
                && terminate.text.contains(&format!("{good} (python3)"))
                && terminate.text.contains(&format!("{bad} (python3)")),
            "{mode:?}: {:?}",
            terminate.text
        );
        assert_on_time(
            "the good daemon's TERM",
            sent,
            good_term.at,
            SECOND,
            &output,
        );
        assert!(good_term.at < kill.at, "{mode:?}\n{output}");
        for pid in [main, bad] {
            assert!(
                says_expired(&kill.text, "grace period", 2, "SIGKILL to 2 processes: ")
                    && kill.text.contains(&format!("{pid} (python3)")),
                "{mode:?}: {:?}",
                kill.text
            );
        }
        assert_on_time("SIGKILL", sent, kill.at, 2 * SECOND, &output);
        finished.line(
            Stream::Stderr,
            &format!("main child pid {main} (python3) was killed by SIGKILL (status 137)"),
        );
    }
}

#[test]
fn daemon_gets_term_when_the_main_child_exits_on_its_own() {
    for mode in MODES {
        let mut grace =
            Grace::new(mode).spawn(&child(&["daemons", "good:handle", "--main", "exit:5"]));
        let good = pid_in(&grace.wait_stdout("daemon good pid").text);
        let good_term = grace.wait_stdout("daemon good got TERM");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 5, "{mode:?}\n{output}");
        finished.line(Stream::Stderr, "exited with status 5");
        finished.line(
            Stream::Stderr,
            &format!("main child has exited: 1 process remains, sending SIGTERM: {good} (python3)"),
        );
        assert!(
            !finished.has(Stream::Stderr, "received SIG")
                && !finished.has(Stream::Stderr, "SIGKILL to"),
            "{mode:?}: no stop signal, and nothing to kill\n{output}"
        );
        // Once the daemon has gone, grace does not wait out the cleanup timeout of 2 s.
        assert!(
            finished.at.duration_since(good_term.at) < LATE,
            "{mode:?}\n{output}"
        );
    }
}

#[test]
fn stopped_main_child_gets_sigcont_with_the_stop_signal() {
    for mode in MODES {
        let mut grace = Grace::new(mode).spawn(&child(&["handle-term"]));
        let ready = grace.wait_stdout("ready pid");
        // In PID-1 mode the child prints its pid in the namespace; the test needs the host's.
        let main = match children(grace.grace_pid()).as_slice() {
            [main] => *main,
            others => panic!("{mode:?}: grace should have one child, has {others:?}"),
        };
        if mode == Mode::Subreaper {
            assert_eq!(main, pid_in(&ready.text));
        }
        send_signal(main, libc::SIGSTOP);
        wait_for_state(main, 'T');
        let sent = stop(&grace);
        grace.wait_stdout("got TERM");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        // Without SIGCONT it would stay stopped until SIGKILL at the grace period of 8 s.
        assert_on_time("grace's exit", sent, finished.at, Duration::ZERO, &output);
    }
}

#[test]
fn repeated_stop_signal_is_forwarded_again_and_keeps_the_deadline() {
    // The second SIGTERM is sent when grace SIGTERMs the rest of the tree, at the deadline less the cleanup
    // timeout (2 s after the first): a deadline restarted by it would come at 5 s instead of 3 s.
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["-t", "3s", "--cleanup-timeout", "1s"])
            .spawn(&child(&["with-daemons", "idle:ignore", "--", "signals"]));
        let daemon = pid_in(&grace.wait_stdout("daemon idle pid").text);
        let main = pid_in(&grace.wait_stdout("ready pid").text);
        let first = stop(&grace);
        grace.wait_log("received SIGTERM");
        grace.wait_stdout(&format!("got {} ", libc::SIGTERM));
        let rest = grace.wait_log("main child still running");
        assert!(
            rest.text
                .contains(&format!("sending SIGTERM: {daemon} (python3)")),
            "{mode:?}: {:?}",
            rest.text
        );
        let output_so_far = grace.dump();
        assert_on_time(
            "the daemon's SIGTERM",
            first,
            rest.at,
            2 * SECOND,
            &output_so_far,
        );
        stop(&grace);
        let repeat = grace.wait_log("received SIGTERM");
        assert!(
            repeat.text.contains("(stop signal #2, ")
                && repeat.text.contains(&format!(
                    "forwarded SIGTERM to pid {main} (python3); deadline unchanged"
                )),
            "{mode:?}: {:?}",
            repeat.text
        );
        grace.wait_stdout(&format!("got {} ", libc::SIGTERM));
        let kill = grace.wait_log("SIGKILL to");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        assert!(
            says_expired(&kill.text, "grace period", 3, "SIGKILL to 2 processes: "),
            "{mode:?}: {:?}",
            kill.text
        );
        assert_on_time("SIGKILL", first, kill.at, 3 * SECOND, &output);
    }
}

#[test]
fn subreaper_leaves_processes_outside_its_tree_alone() {
    if common::NO_SUBREAPER.applies() {
        return;
    }
    let decoy = Decoy::start();
    let mut grace = Grace::new(Mode::Subreaper)
        .args(["-t", "500ms"])
        .spawn(&child(&["daemons", "stray:ignore", "--main", "ignore"]));
    let main = main_pid(&grace);
    let stray = pid_in(&grace.wait_stdout("daemon stray pid").text);
    grace.wait_stdout("daemons ready");
    stop(&grace);
    let finished = grace.finish();
    let output = finished.dump();
    assert_eq!(finished.code(), 137, "{output}");
    // grace did SIGTERM the rest of its tree, then SIGKILL everything: neither reached the decoy.
    finished.line(
        Stream::Stderr,
        &format!("sending SIGTERM: {stray} (python3)"),
    );
    let kill = finished.line(Stream::Stderr, "SIGKILL to 2 processes");
    for pid in [main, stray] {
        assert!(kill.text.contains(&format!("{pid} (python3)")), "{output}");
    }
    assert!(
        is_alive(decoy.pid),
        "grace killed pid {}, outside its tree\n{output}",
        decoy.pid
    );
    assert_eq!(
        decoy.stop(),
        ["got TERM"],
        "the decoy heard from someone other than the test"
    );
}

#[test]
fn grace_exits_as_soon_as_the_tree_is_empty() {
    // Nothing is left once the main child exits, so nothing needs to settle: grace does not wait out the
    // 200 ms it would give remaining processes.
    for mode in MODES {
        let mut grace = Grace::new(mode).spawn(&child(&["handle-term"]));
        grace.wait_stdout("ready pid");
        stop(&grace);
        let exited = grace.wait_stdout("got TERM");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        let after = finished.at.duration_since(exited.at);
        assert!(
            after < Duration::from_millis(150),
            "{mode:?}: grace exited {after:?} after its child\n{output}"
        );
    }
}

/// As PID 1, a process that entered the namespace from outside (`kubectl exec`, `nsenter`) is not grace's
/// child and sends it no SIGCHLD; when the main child has gone, it still gets its SIGTERM before grace exits
/// (the kernel would SIGKILL it the moment grace does), and grace exits once it is gone.
#[test]
fn a_process_that_entered_the_namespace_gets_sigterm_before_grace_exits() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut grace = Grace::new(Mode::Pid1).spawn(&child(&["handle-term"]));
    grace.wait_stdout("ready");
    let script = "trap 'echo outsider got TERM; exit 0' TERM; echo outsider ready; while :; do sleep 0.1; done";
    let mut outsider = Command::new("nsenter")
        .args([
            "--target",
            &grace.grace_pid().to_string(),
            "--pid",
            "--mount",
            "sh",
            "-c",
            script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nsenter (util-linux)");
    let mut lines = BufReader::new(outsider.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("outsider ready")
    );
    grace.signal(libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("outsider got TERM"),
        "{}",
        finished.dump()
    );
    let status = outsider.wait().expect("waiting for nsenter");
    assert!(status.success(), "{status:?}");
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    let term = finished.line(Stream::Stderr, "sending SIGTERM: ");
    assert!(term.text.contains("(sh)"), "{}", finished.dump());
    assert!(
        !finished.has(Stream::Stderr, "SIGKILL to"),
        "{}",
        finished.dump()
    );
    assert!(
        !finished.has(Stream::Stderr, "was a shell"),
        "{}",
        finished.dump()
    );
}
