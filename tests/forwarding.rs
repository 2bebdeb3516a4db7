//! Every catchable signal sent to grace reaches the child (translated by --rewrite, or to the whole group
//! with -g), in both modes; signals grace raises itself are not forwarded.

mod common;

use common::{child, sh, Grace, Mode, Stream, MODES};

/// Signals 1–31 but those that cannot be caught (KILL, STOP) and SIGCHLD, plus real-time ones.
fn forwardable() -> Vec<i32> {
    let crashes_the_emulator = common::SENT_FAULT_SIGNALS_CRASH.applies();
    let mut signals: Vec<i32> = (1..=31)
        .filter(|&signal| ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(&signal))
        .filter(|&signal| !(crashes_the_emulator && common::FAULT_SIGNALS.contains(&signal)))
        .collect();
    signals.extend([34, 37, 50, 64]); // RTMIN, RTMIN+3, a middle one, RTMAX (kernel numbering)
    signals
}

/// Sends `signal` and waits until the child reports it (a stop signal also brings a SIGCONT).
fn send_and_expect(grace: &mut common::Running, signal: i32, expected: i32) {
    grace.signal(signal);
    let line = grace.wait_until(
        |line| {
            line.stream == Stream::Stdout
                && line.text.starts_with("got ")
                && !line.text.starts_with(&format!("got {} ", libc::SIGCONT))
        },
        &format!("the child's report of signal {signal}"),
    );
    assert!(
        line.text.starts_with(&format!("got {expected} ")),
        "sent {signal}, expected {expected}, child said {:?}",
        line.text
    );
}

#[test]
fn every_catchable_signal_reaches_the_child() {
    for mode in MODES {
        // USR2 is not a stop signal here, so the run survives TERM and INT until the child exits.
        let exit_on = libc::SIGUSR2.to_string();
        let mut grace = Grace::new(mode)
            .args(["--stop-signals", "USR2"])
            .spawn(&child(&["signals", &exit_on]));
        grace.wait_stdout("ready");
        for signal in forwardable() {
            if signal == libc::SIGCONT {
                grace.signal(signal);
                grace.wait_stdout(&format!("got {} ", libc::SIGCONT));
                continue;
            }
            if signal == libc::SIGUSR2 {
                continue; // the stop signal ends the run below
            }
            send_and_expect(&mut grace, signal, signal);
        }
        grace.signal(libc::SIGUSR2);
        let stop = grace.wait_log("received SIGUSR2");
        assert!(stop.text.contains("forwarded SIGUSR2"), "{}", stop.text);
        grace.wait_stdout(&format!("got {} ", libc::SIGUSR2));
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    }
}

#[test]
fn stop_signals_are_forwarded_and_start_the_shutdown() {
    for mode in MODES {
        let mut grace = Grace::new(mode).spawn(&child(&["signals", "15"]));
        grace.wait_stdout("ready");
        grace.signal(libc::SIGTERM);
        let finished = grace.finish();
        assert!(
            finished
                .stdout()
                .iter()
                .any(|line| line.starts_with("got 15 ")),
            "{}",
            finished.dump()
        );
        assert_eq!(finished.code(), 0, "{}", finished.dump());
        assert!(
            finished.has(Stream::Stderr, "received SIGTERM from"),
            "{}",
            finished.dump()
        );
    }
}

#[test]
fn rewrite_translates_and_drops() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args([
                "--rewrite",
                "USR1:USR2",
                "-r",
                "HUP:0",
                "-r",
                "RTMIN+1:RTMAX",
            ])
            .spawn(&child(&["signals"]));
        grace.wait_stdout("ready");
        send_and_expect(&mut grace, libc::SIGUSR1, libc::SIGUSR2);
        // RTMIN+1 in the kernel's numbering, which grace no longer sees as such under qemu-user.
        if !common::RENUMBERED_REAL_TIME_SIGNALS.applies() {
            send_and_expect(&mut grace, 35, 64);
        }
        // HUP is dropped: the next thing the child sees is the WINCH sent after it. (Had HUP been forwarded,
        // the child would report it first: it takes pending standard signals lowest number first.)
        grace.signal(libc::SIGHUP);
        send_and_expect(&mut grace, libc::SIGWINCH, libc::SIGWINCH);
    }
}

#[test]
fn rewrite_is_read_from_the_environment() {
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    let mut grace = Grace::new(Mode::Subreaper)
        .env("GRACE_REWRITE", "USR1:USR2,HUP:0")
        .spawn(&child(&["signals"]));
    grace.wait_stdout("ready");
    send_and_expect(&mut grace, libc::SIGUSR1, libc::SIGUSR2);
    grace.signal(libc::SIGHUP);
    send_and_expect(&mut grace, libc::SIGWINCH, libc::SIGWINCH);
}

#[test]
fn process_group_mode_reaches_the_whole_group() {
    for mode in MODES {
        for flag in [Some("-g"), None] {
            let mut grace = Grace::new(mode);
            grace = match flag {
                Some(flag) => grace.args([flag]),
                None => grace.env("TINI_KILL_PROCESS_GROUP", "1"),
            };
            // A shell whose background jobs share its process group (no job control in `sh -c`); the shell
            // itself ignores SIGUSR1 (and its children inherit that, which does not stop them reading it).
            let script = format!(
                "trap '' USR1; {child} signals 10 | sed -u 's/^/first /' & {child} signals 10 | sed -u 's/^/second /' & wait",
                child = child(&[]).join(" ")
            );
            let mut grace = grace.spawn(&sh(&script));
            grace.wait_stdout("first ready");
            grace.wait_stdout("second ready");
            grace.signal(libc::SIGUSR1);
            grace.wait_stdout(&format!("first got {} ", libc::SIGUSR1));
            grace.wait_stdout(&format!("second got {} ", libc::SIGUSR1));
            let finished = grace.finish();
            assert_eq!(finished.code(), 0, "{}", finished.dump());
        }
    }
}

#[test]
fn signals_grace_raises_itself_are_not_forwarded() {
    // grace's stderr is a pipe whose reader goes away: its next log line raises SIGPIPE in grace, which
    // must stay grace's business. The child then sees only the signals the test sent.
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    let mut command = Grace::new(Mode::Subreaper)
        .args(["-v"])
        .command(&child(&["signals", "15"])); // the child exits on SIGTERM, and grace with it
    let mut outer = KillOnDrop(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting grace"),
    );
    let mut stdout = BufReader::new(outer.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("reading");
    assert!(line.starts_with("ready"), "{line}");
    drop(outer.stderr.take()); // the log's reader is gone
    let grace_pid = outer.id() as i32;
    // Three rounds: a grace that looped on its own SIGPIPE would stop forwarding after the first.
    for signal in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGUSR1] {
        // Each forward writes a -v log line, which fails with EPIPE and raises SIGPIPE in grace.
        unsafe { libc::kill(grace_pid, signal) };
        line.clear();
        stdout.read_line(&mut line).expect("reading");
        assert!(
            line.starts_with(&format!("got {signal} ")),
            "expected only the signals sent, got {line:?}"
        );
    }
    // And it is idle again, blocked in poll: a grace that logged its own SIGPIPE would raise the next one
    // with that very line and never sleep again.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while common::process_state(grace_pid) != Some('S') {
        assert!(
            std::time::Instant::now() < deadline,
            "grace never went back to sleep: it spins"
        );
        std::thread::yield_now();
    }
    unsafe { libc::kill(grace_pid, libc::SIGTERM) };
    line.clear();
    stdout.read_line(&mut line).expect("reading");
    assert!(line.starts_with("got 15 "), "{line:?}");
    let status = outer.wait().expect("waiting for grace");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Kills and reaps grace when the test ends, passed or failed (a failed test may leave the child behind:
/// it blocks every signal, so only grace's own shutdown or SIGKILL ends it).
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A signal that the process which became grace sent itself before its exec (blocked, so pending when grace
/// starts, its sender grace's own pid) is the child's, and is forwarded, as tini does; a signal grace raises
/// itself (SIGPIPE from a log write, above) is not.
#[test]
fn a_signal_pending_when_grace_started_is_forwarded() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .wrapped(child(&["exec-with", "--raise", "10", "--"]))
            .spawn(&child(&["signals", "15"]));
        grace.wait_stdout("ready");
        grace.signal(libc::SIGTERM);
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
        let got: Vec<&str> = finished
            .lines
            .iter()
            .filter(|line| line.stream == common::Stream::Stdout && line.text.starts_with("got "))
            .map(|line| line.text.as_str())
            .collect();
        assert_eq!(got.len(), 2, "{mode:?}\n{}", finished.dump());
        assert!(
            got[0].starts_with("got 10 from "),
            "{mode:?}\n{}",
            finished.dump()
        );
        assert!(
            got[1].starts_with("got 15 from "),
            "{mode:?}\n{}",
            finished.dump()
        );
    }
}

/// A stop signal rewritten to one whose default action does not end a process (SIGWINCH: ignored) stops only
/// a child that handles it — Apache httpd's graceful stop is SIGWINCH — so grace accepts it; when the stop
/// comes and the main child does not handle it, grace warns that the stop will not stop it.
#[test]
fn a_stop_signal_rewritten_to_one_ignored_by_default_warns_unless_the_child_handles_it() {
    // A child that takes SIGWINCH (28) as its stop: no warning, it exits.
    let mut grace = Grace::new(Mode::Pid1)
        .args(["-r", "TERM:WINCH"])
        .spawn(&child(&["signals", "28"]));
    grace.wait_stdout("ready");
    grace.signal(libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    assert!(
        !finished.has(common::Stream::Stderr, "does not handle"),
        "{}",
        finished.dump()
    );

    if common::subreaper_refusal_is_fatal() {
        return;
    }
    // A child at SIGWINCH's default, asleep in pause(): the stop does nothing to it, and grace says so at
    // once. (Only of a child asleep or stopped: while one runs, /proc cannot tell the default from one that
    // the forward has just woken out of sigwaitinfo, so grace says nothing rather than something false.)
    let mut grace = Grace::new(Mode::Subreaper)
        .args(["-r", "TERM:WINCH", "-t", "1s"])
        .spawn(&child(&["ignore-term"]));
    let pid = common::pid_in(&grace.wait_stdout("ready").text);
    common::wait_for_state(pid, 'S');
    grace.signal(libc::SIGTERM);
    let warning = grace.wait_log("does not handle SIGWINCH");
    assert!(warning.text.contains("warning:"), "{}", warning.text);
    assert!(
        warning.text.contains("forwarded as SIGWINCH"),
        "{}",
        warning.text
    );
    let finished = grace.finish();
    assert_eq!(finished.code(), 137, "{}", finished.dump());
    // The report at the SIGKILL does not say that SIGWINCH's default action would have ended it.
    let report = finished.line(
        common::Stream::Stderr,
        &format!("main child pid {pid} (python3), parent"),
    );
    assert!(
        report.text.contains("does nothing to it"),
        "{}",
        report.text
    );
}
