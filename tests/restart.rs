//! Supervision in place: the command starts again on the restart signal, or when it exits (--restart),
//! after its tree has ended exactly as in a shutdown — nothing of one run lives into the next — with a
//! growing delay while it keeps failing, a limit, and a stop signal that always wins.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{child, is_alive, pid_in, sh, stop, Finished, Grace, Line, Mode, Stream, LATE, MODES};

/// A counter file of the test's own, removed when dropped.
struct Counter(PathBuf);

impl Counter {
    fn new(name: &str) -> Counter {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counter(std::env::temp_dir().join(format!(
            "grace-restart-{name}-{}-{number}",
            std::process::id()
        )))
    }

    /// `sh -c SCRIPT`: each run counts itself in the file, prints "run N", then runs `then` with $n set.
    fn command(&self, then: &str) -> Vec<String> {
        sh(&format!(
            "n=$(cat {file} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {file}; echo run $n; {then}",
            file = self.0.display()
        ))
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `run N` lines, with when each came.
fn runs(finished: &Finished) -> Vec<(u32, Instant)> {
    finished
        .lines
        .iter()
        .filter(|line| line.stream == Stream::Stdout)
        .filter_map(|line| {
            let number = line.text.strip_prefix("run ")?.parse().ok()?;
            Some((number, line.at))
        })
        .collect()
}

fn count(finished: &Finished, needle: &str) -> usize {
    finished
        .log()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

/// The restart signal ends a generation that stops on SIGTERM, and the command starts again with a new pid;
/// grace stays up, and on a stop signal exits with the last run's status.
#[test]
fn the_restart_signal_starts_a_clean_generation_again() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["--restart-signal", "HUP"])
            .spawn(&child(&["handle-term", "3"]));
        let first = pid_in(&grace.wait_stdout("ready pid").text);
        grace.signal(libc::SIGHUP);
        grace.wait_stdout("got TERM");
        let forwarded = grace.wait_log("(the restart signal)");
        assert!(
            forwarded
                .text
                .contains(&format!("forwarded SIGTERM to pid {first}")),
            "{}",
            forwarded.text
        );
        let restarted = grace.wait_log("restarted pid");
        assert!(
            restarted.text.contains("(generation 2)"),
            "{}",
            restarted.text
        );
        let second = pid_in(&grace.wait_stdout("ready pid").text);
        assert_ne!(first, second, "{mode:?}");
        assert_eq!(pid_in(&restarted.text), second);
        stop(&grace);
        grace.wait_stdout("got TERM");
        let finished = grace.finish();
        assert_eq!(finished.code(), 3, "{mode:?}\n{}", finished.dump());
        assert_eq!(count(&finished, "restarted pid"), 1);
        finished.line(Stream::Stderr, "restarting now: SIGHUP from");
    }
}

/// A generation that ignores SIGTERM, with a setsid daemon that ignores it too: the restart kills both at
/// the grace period, as a shutdown would, and only then starts the command again; the old daemon is gone
/// before the new run is up.
#[test]
fn a_stubborn_generation_and_its_daemon_are_killed_before_the_restart() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["--restart-signal", "USR1", "-t", "1s"])
            .spawn(&child(&["daemons", "stray:ignore", "--main", "ignore"]));
        let stray = pid_in(&grace.wait_stdout("daemon stray pid").text);
        grace.wait_stdout("daemons ready");
        let sent = Instant::now();
        grace.signal(libc::SIGUSR1);
        let kill = grace.wait_log("SIGKILL to 2 processes");
        assert!(
            kill.at.duration_since(sent) >= Duration::from_secs(1),
            "{}",
            grace.dump()
        );
        grace.wait_log("restarted pid");
        grace.wait_stdout("daemons ready");
        if mode == Mode::Subreaper {
            assert!(
                !is_alive(stray),
                "the old run's daemon lived into the new one"
            );
        }
        stop(&grace);
        let finished = grace.finish();
        assert_eq!(finished.code(), 137, "{mode:?}\n{}", finished.dump());
        let order: Vec<&str> = finished
            .log()
            .into_iter()
            .filter(|line| {
                line.contains("SIGKILL to 2 processes") || line.contains("restarted pid")
            })
            .collect();
        assert!(order[0].contains("SIGKILL"), "{order:?}");
    }
}

/// --restart on-failure: the command starts again while it fails, and grace exits once it succeeds.
/// never (the default) and on-failure with a success exit at once; always restarts a success too, until
/// --max-restarts.
#[test]
fn each_policy_decides_what_follows_an_exit() {
    // on-failure: 5, 5, then 0.
    let counter = Counter::new("on-failure");
    let grace = Grace::new(Mode::Pid1)
        .args(["--restart", "on-failure", "--restart-delay", "0"])
        .spawn(&counter.command("[ $n -ge 3 ] && exit 0; exit 5"));
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    assert_eq!(runs(&finished).len(), 3, "{}", finished.dump());
    // The first restart of the loop at once, the next after the one-second floor.
    for delay in ["0.000s", "1.000s"] {
        assert_eq!(
            count(&finished, &format!("restarting in {delay}")),
            1,
            "{}",
            finished.dump()
        );
    }

    // never: the first failure is the end.
    let counter = Counter::new("never");
    let finished = Grace::new(Mode::Subreaper)
        .spawn(&counter.command("exit 5"))
        .finish();
    assert_eq!(finished.code(), 5);
    assert_eq!(runs(&finished).len(), 1);
    assert_eq!(count(&finished, "restarting"), 0, "{}", finished.dump());

    // on-failure and a success: no restart.
    let counter = Counter::new("success");
    let finished = Grace::new(Mode::Subreaper)
        .args(["--restart", "on-failure"])
        .spawn(&counter.command("exit 0"))
        .finish();
    assert_eq!(finished.code(), 0);
    assert_eq!(runs(&finished).len(), 1);

    // always: successes too, until the limit; the last status is grace's.
    let counter = Counter::new("always");
    let finished = Grace::new(Mode::Subreaper)
        .args([
            "--restart",
            "always",
            "--restart-delay",
            "0",
            "--max-restarts",
            "2",
        ])
        .spawn(&counter.command("exit $((n + 10))"))
        .finish();
    assert_eq!(finished.code(), 13, "{}", finished.dump());
    assert_eq!(runs(&finished).len(), 3);
    finished.line(
        Stream::Stderr,
        "not restarting: --max-restarts reached (2 restarts)",
    );
}

/// While the command keeps failing fast, each wait doubles, and from the second on it is at least a second:
/// with `--restart-delay 0` the first restart is immediate, the next ones wait 1 s and 2 s (exact lower
/// bounds, as logged and as measured between the runs) — a crash loop cannot spin.
#[test]
fn the_delay_doubles_from_a_floor_while_the_command_keeps_failing() {
    let counter = Counter::new("backoff");
    let finished = Grace::new(Mode::Subreaper)
        .args([
            "--restart",
            "on-failure",
            "--restart-delay",
            "0",
            "--max-restarts",
            "3",
        ])
        .spawn(&counter.command("exit 5"))
        .finish();
    assert_eq!(finished.code(), 5, "{}", finished.dump());
    for delay in ["0.000s", "1.000s", "2.000s"] {
        finished.line(Stream::Stderr, &format!("restarting in {delay}"));
    }
    let starts = runs(&finished);
    assert_eq!(starts.len(), 4, "{}", finished.dump());
    for (index, wanted) in [0, 1000, 2000].into_iter().enumerate() {
        let gap = starts[index + 1].1.duration_since(starts[index].1);
        let wanted = Duration::from_millis(wanted);
        assert!(
            gap >= wanted && gap < wanted + LATE,
            "run {}: {gap:?}\n{}",
            index + 2,
            finished.dump()
        );
    }
}

/// Every restart setting is read from the environment too. Run 1 waits and is restarted by the signal
/// (a restart by signal is the operator's, and does not count against the limit); run 2 fails, and is
/// restarted (the one restart allowed); run 3 fails, and that is the end, with its status.
#[test]
fn the_restart_settings_come_from_the_environment() {
    let counter = Counter::new("environment");
    let mut grace = Grace::new(Mode::Subreaper)
        .env("GRACE_RESTART", "on-failure")
        .env("GRACE_RESTART_DELAY", "0")
        .env("GRACE_MAX_RESTARTS", "1")
        .env("GRACE_RESTART_SIGNAL", "USR2")
        .spawn(&counter.command(
            "if [ $n -eq 1 ]; then trap 'exit 6' TERM; echo waiting; while :; do sleep 0.05; done; fi; \
             exit $((n + 5))",
        ));
    grace.wait_stdout("waiting");
    grace.signal(libc::SIGUSR2);
    let finished = grace.finish();
    assert_eq!(finished.code(), 8, "{}", finished.dump());
    assert_eq!(runs(&finished).len(), 3, "{}", finished.dump());
    assert_eq!(count(&finished, "restarted pid"), 2, "{}", finished.dump());
    finished.line(Stream::Stderr, "restarting now: SIGUSR2 from");
    finished.line(
        Stream::Stderr,
        "not restarting: --max-restarts reached (1 restarts)",
    );
}

/// A stop signal while grace waits to restart ends grace at once, with the last status; nothing new starts.
#[test]
fn a_stop_signal_during_the_wait_ends_grace_at_once() {
    for mode in MODES {
        let counter = Counter::new("wait");
        let mut grace = Grace::new(mode)
            .args(["--restart", "always", "--restart-delay", "30s"])
            .spawn(&counter.command("exit 4"));
        grace.wait_log("restarting in 30.000s");
        let sent = stop(&grace);
        let finished = grace.finish();
        assert_eq!(finished.code(), 4, "{mode:?}\n{}", finished.dump());
        assert!(
            finished.at.duration_since(sent) < LATE,
            "{}",
            finished.dump()
        );
        assert_eq!(runs(&finished).len(), 1, "{}", finished.dump());
        finished.line(
            Stream::Stderr,
            "while waiting to restart: nothing more starts",
        );
    }
}

/// What the last run left (a setsid daemon that ignores SIGTERM) gets the cleanup before the next run starts:
/// SIGTERM, SIGKILL after --cleanup-timeout, and only then the restart.
#[test]
fn leftovers_are_cleaned_up_between_runs() {
    for mode in MODES {
        let counter = Counter::new("leftovers");
        let daemon = child(&["daemons", "leftover:ignore", "--main", "exit:0"]).join(" ");
        let mut grace = Grace::new(mode)
            .args([
                "--restart",
                "on-failure",
                "--restart-delay",
                "0",
                "--cleanup-timeout",
                "1s",
            ])
            .spawn(&counter.command(&format!(
                "if [ $n -eq 1 ]; then {daemon}; exit 1; fi; echo second run up; exit 0"
            )));
        let leftover = pid_in(&grace.wait_stdout("daemon leftover pid").text);
        let second = grace.wait_stdout("second run up");
        if mode == Mode::Subreaper {
            assert!(
                !is_alive(leftover),
                "{mode:?}: the first run's daemon met the second run"
            );
        }
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
        let kill = finished.line(
            Stream::Stderr,
            "cleanup timeout of 1s expired: SIGKILL to 1 process",
        );
        assert!(kill.at <= second.at, "{mode:?}\n{}", finished.dump());
        let restarted = finished.line(Stream::Stderr, "restarted pid");
        assert!(kill.at <= restarted.at);
    }
}

/// Repeated restart signals during a restart are one restart; a stop signal during it makes it the final
/// shutdown.
#[test]
fn repeats_coalesce_and_a_stop_signal_makes_the_restart_final() {
    let mut grace = Grace::new(Mode::Pid1)
        .args(["--restart-signal", "HUP", "-t", "2s"])
        .spawn(&child(&["ignore-term"]));
    grace.wait_stdout("ready");
    for _ in 0..3 {
        grace.signal(libc::SIGHUP);
    }
    grace.wait_log("(the restart signal)");
    grace.wait_log("restarted pid");
    grace.wait_stdout("ready");
    grace.signal(libc::SIGHUP);
    grace.wait_log("(the restart signal)");
    let sent = stop(&grace);
    let finished = grace.finish();
    assert_eq!(finished.code(), 137, "{}", finished.dump());
    assert_eq!(count(&finished, "restarted pid"), 1, "{}", finished.dump());
    finished.line(Stream::Stderr, "this is the final shutdown now");
    assert!(finished.at.duration_since(sent) < Duration::from_secs(2) + LATE);
}

/// A stop signal that grace was started with ignored (a background job of a non-interactive shell has
/// SIGINT and SIGQUIT ignored) is forwarded, not taken as a stop: `kill -INT` meant for nobody stops nothing.
#[test]
fn an_ignored_stop_signal_is_forwarded_not_obeyed() {
    for mode in MODES {
        let sigint_ignored = child(&["exec-with", "--ignore", "2", "--"]);
        let mut grace = Grace::new(mode)
            .wrapped(sigint_ignored)
            .spawn(&child(&["signals", "15"]));
        grace.wait_log("SIGINT was ignored when grace started");
        grace.wait_stdout("ready");
        grace.signal(libc::SIGINT);
        let got: Line = grace.wait_stdout("got 2 from");
        assert!(!got.text.is_empty());
        stop(&grace);
        grace.wait_stdout("got 15 from");
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
        assert_eq!(
            count(&finished, "received SIGINT"),
            0,
            "{}",
            finished.dump()
        );
    }
}

/// What cannot be a restart signal is refused with one line and status 2.
#[test]
fn bad_restart_settings_are_usage_errors() {
    for arguments in [
        &["--restart-signal", "TERM"][..],
        &["--restart-signal", "KILL"],
        &["--restart-signal", "CHLD"],
        &["--restart-signal", "STOP"],
        &["--restart", "sometimes"],
        &["--max-restarts", "-1"],
        &["--restart-delay", "soon"],
    ] {
        let mut words: Vec<&str> = arguments.to_vec();
        words.extend(["--", "true"]);
        let output = common::run_exact(Mode::Subreaper, &words);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{arguments:?}: {stderr}");
    }
}

/// A script of the test's own, in a directory of its own, removed when dropped.
struct Script(PathBuf);

impl Script {
    fn new(name: &str, text: &str) -> Script {
        let directory =
            std::env::temp_dir().join(format!("grace-restart-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("creating a directory");
        let script = Script(directory.join("server"));
        script.write(text);
        script
    }

    /// Puts `text` in place as an executable, at once (a rename), as a deploy would.
    fn write(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let new = self.0.with_extension("new");
        std::fs::write(&new, text).expect("writing the script");
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&new, &self.0).expect("renaming the script into place");
    }

    fn command(&self) -> Vec<String> {
        vec![self.0.display().to_string()]
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().expect("a directory"));
    }
}

/// A restart whose exec fails (the binary deleted by a deploy, a bad `#!`) is a failed run: retried after
/// the backoff, counted by --max-restarts, and grace ends with `exiting` and the status of the last failure
/// (127 not found, 126 not executable). A command that comes back is started again.
#[test]
fn a_failed_start_at_a_restart_is_a_failed_run() {
    for mode in MODES {
        // The first run deletes its own file: the first restart finds nothing (127), the test puts the file
        // back while grace waits out the backoff, and the restart after it runs.
        let text = "#!/bin/sh\necho run; rm \"$0\"; exit 1\n";
        let script = Script::new("deleted", text);
        let mut grace = Grace::new(mode)
            .args(["--restart", "on-failure", "--restart-delay", "0"])
            .spawn(&script.command());
        grace.wait_stdout("run");
        grace.wait_log("restart failed: ");
        grace.wait_log("restarting in 1.000s: the command could not be started again (status 127)");
        script.write("#!/bin/sh\necho back; exit 0\n");
        grace.wait_stdout("back");
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
        finished.line(Stream::Stderr, "exiting with status 0");

        // The first run breaks its own `#!` line: every restart fails with 126 until the limit.
        let text = "#!/bin/sh\necho run; echo '#!/nonexistent/interpreter' > \"$0\"; exit 1\n";
        let script = Script::new("bad-interpreter", text);
        let finished = Grace::new(mode)
            .args([
                "--restart",
                "on-failure",
                "--restart-delay",
                "0",
                "--max-restarts",
                "2",
            ])
            .spawn(&script.command())
            .finish();
        assert_eq!(finished.code(), 126, "{mode:?}\n{}", finished.dump());
        assert_eq!(
            count(&finished, "restart failed: "),
            2,
            "{}",
            finished.dump()
        );
        finished.line(Stream::Stderr, "bad interpreter");
        finished.line(Stream::Stderr, "restarting in 1.000s");
        finished.line(
            Stream::Stderr,
            "not restarting: --max-restarts reached (2 restarts)",
        );
        finished.line(Stream::Stderr, "exiting with status 126");
    }
}

/// The pid, as the test sees it, of the process that is `inner` in the PID namespace of `grace_pid`.
fn outer_pid(grace_pid: i32, inner: i32) -> i32 {
    let namespace =
        std::fs::read_link(format!("/proc/{grace_pid}/ns/pid")).expect("grace's namespace");
    let entries = std::fs::read_dir("/proc").expect("listing /proc");
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| {
            let same =
                std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == Some(namespace.clone());
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let inner_pid = status
                .lines()
                .find_map(|line| line.strip_prefix("NSpid:"))
                .and_then(|pids| pids.split_whitespace().last()?.parse::<i32>().ok());
            same && inner_pid == Some(inner)
        })
        .unwrap_or_else(|| panic!("no process is pid {inner} in grace's namespace"))
}

/// A process started in grace's PID namespace with nsenter, as `kubectl exec` would.
struct Visitor {
    nsenter: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Visitor {
    /// Starts `sh -c script` and returns it with the first line it prints.
    fn start(grace_pid: i32, script: &str) -> (Visitor, String) {
        use std::process::{Command, Stdio};
        let mut nsenter = Command::new("nsenter")
            .args([
                "--target",
                &grace_pid.to_string(),
                "--pid",
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("nsenter (util-linux)");
        let stdout = std::io::BufReader::new(nsenter.stdout.take().expect("stdout"));
        let mut visitor = Visitor { nsenter, stdout };
        let line = visitor.next_line();
        (visitor, line)
    }

    fn next_line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the visitor's line");
        line.trim_end().to_string()
    }
}

impl Drop for Visitor {
    fn drop(&mut self) {
        let _ = self.nsenter.kill();
        let _ = self.nsenter.wait();
    }
}

/// As PID 1, processes that entered the namespace from outside (`kubectl exec`, `nsenter`) are not the
/// run's: a restart's cleanup leaves them alone — a visitor's shell with its child, and a process a visitor
/// left behind (orphaned, so reparented to grace, but in the visitor's process group) — and names none of
/// them, while the run's own leftover still gets SIGTERM and SIGKILL. The final stop ends them all, and its
/// report says where the visitor's shell came from rather than calling it a shell that did not exec.
#[test]
fn a_restart_leaves_processes_that_entered_from_outside_alone() {
    let counter = Counter::new("visitors");
    let daemon = child(&["daemons", "leftover:ignore", "--main", "exit:0"]).join(" ");
    let mut grace = Grace::new(Mode::Pid1)
        .args([
            "--restart",
            "on-failure",
            "--restart-delay",
            "0",
            "--cleanup-timeout",
            "1s",
            "-t",
            "2s",
        ])
        .spawn(&counter.command(&format!(
            "if [ $n -eq 1 ]; then {daemon}; trap 'exit 1' USR1; echo waiting; while :; do sleep 0.05; done; fi; \
             echo second run up; exec {}",
            child(&["handle-term"]).join(" ")
        )));
    let leftover = pid_in(&grace.wait_stdout("daemon leftover pid").text);
    grace.wait_stdout("waiting");
    let grace_pid = grace.grace_pid();
    let leftover_outer = outer_pid(grace_pid, leftover);
    let (shell_visitor, said) = Visitor::start(
        grace_pid,
        "trap '' TERM; sleep 1000 & echo \"visitor shell $$ child $!\"; wait",
    );
    let words: Vec<&str> = said.split_whitespace().collect();
    let (shell, shell_child) = (words[2], words[4]);
    let (mut orphan_visitor, said) = Visitor::start(grace_pid, "sleep 1000 & echo \"orphan $!\"");
    let orphan = said
        .split_whitespace()
        .nth(1)
        .expect("the orphan's pid")
        .to_string();
    orphan_visitor
        .nsenter
        .wait()
        .expect("the orphan's parent exits");
    let outer: Vec<i32> = [shell, shell_child, orphan.as_str()]
        .iter()
        .map(|pid| outer_pid(grace_pid, pid.parse().expect("a pid")))
        .collect();
    let _cleanup = common::KillOnFailure(outer.clone());

    grace.signal(libc::SIGUSR1); // the first run fails: restart
    grace.wait_stdout("second run up");
    for (pid, what) in outer.iter().zip(["visitor shell", "its child", "orphan"]) {
        assert!(
            is_alive(*pid),
            "the restart killed the {what}\n{}",
            grace.dump()
        );
    }
    let kill = grace.wait_log("cleanup timeout of 1s expired: SIGKILL to 1 process");
    assert!(
        !is_alive(leftover_outer),
        "the run's leftover lived into the next run"
    );
    let restart_log = grace.dump();
    for visitor in [shell, shell_child, orphan.as_str()] {
        assert!(
            !restart_log.contains(&format!(" {visitor} (")),
            "the restart named visitor {visitor}\n{restart_log}"
        );
    }
    assert!(
        kill.text.contains(&format!("{leftover} (python3)")),
        "{}",
        kill.text
    );

    grace.wait_stdout("ready pid");
    stop(&grace);
    let finished = grace.finish();
    drop(shell_visitor);
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    for pid in &outer {
        assert!(
            !is_alive(*pid),
            "the final stop left {pid}\n{}",
            finished.dump()
        );
    }
    let term = finished
        .log()
        .into_iter()
        .rev()
        .find(|line| line.contains("sending SIGTERM"))
        .expect("the final stop's SIGTERM")
        .to_string();
    assert!(term.contains(&format!(" {shell} (sh)")), "{term}");
    assert!(
        !finished.has(Stream::Stderr, "did not exec"),
        "{}",
        finished.dump()
    );
    finished.line(Stream::Stderr, "entered the namespace from outside");
}

/// A restart by signal spares the processes that entered from outside too (no kill(-1) at its deadline); a
/// stop signal that turns the restart into the final stop, after the rest of the tree had its SIGTERM, gives
/// the visitor its SIGTERM then, before the SIGKILL at the deadline.
#[test]
fn a_restart_made_final_gives_processes_that_entered_from_outside_their_sigterm() {
    let mut grace = Grace::new(Mode::Pid1)
        .args([
            "--restart-signal",
            "HUP",
            "-t",
            "2s",
            "--cleanup-timeout",
            "1s",
        ])
        .spawn(&child(&["daemons", "worker:handle", "--main", "ignore"]));
    grace.wait_stdout("daemons ready");
    let grace_pid = grace.grace_pid();
    let (mut visitor, said) = Visitor::start(
        grace_pid,
        "trap 'echo visitor got TERM; exit 0' TERM; echo visitor pid $$; while :; do sleep 0.05; done",
    );
    let inner = pid_in(&said);
    let _cleanup = common::KillOnFailure(vec![outer_pid(grace_pid, inner)]);

    grace.signal(libc::SIGHUP);
    let term = grace.wait_log("main child still running with");
    assert!(!term.text.contains(&format!(" {inner} (")), "{}", term.text);
    grace.wait_stdout("daemon worker got TERM");
    stop(&grace);
    let visitor_term = grace.wait_log("the restart became the final stop");
    assert!(
        visitor_term
            .text
            .contains(&format!("sending SIGTERM: {inner} (sh)")),
        "{}",
        visitor_term.text
    );
    assert_eq!(visitor.next_line(), "visitor got TERM");
    let finished = grace.finish();
    assert_eq!(finished.code(), 137, "{}", finished.dump());
    assert!(
        !finished.has(Stream::Stderr, "restarted pid"),
        "{}",
        finished.dump()
    );
}

/// grace's nice value, from /proc/PID/stat (field 19; the name in field 2 may hold spaces).
fn nice_of(pid: i32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    let (_, after_name) = stat.rsplit_once(") ").expect("a stat line");
    after_name
        .split_whitespace()
        .nth(19 - 3)
        .and_then(|nice| nice.parse().ok())
        .expect("the nice field")
}

/// A shutdown raises grace's own priority (nice −20), so that a tree that keeps the CPUs busy cannot make it
/// late; the next run must not inherit that: it starts at the priority the first one had.
#[test]
fn a_shutdown_raises_grace_s_priority_and_the_next_run_does_not_inherit_it() {
    // The handler first: the line says it is in place.
    let script = "import os, signal\n\
                  signal.signal(signal.SIGTERM, lambda *_: print('got TERM', flush=True))\n\
                  print('nice', os.getpriority(os.PRIO_PROCESS, 0), flush=True)\n\
                  while True: signal.pause()\n";
    let command: Vec<String> = ["python3", "-u", "-c", script].map(String::from).to_vec();
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["--restart-signal", "HUP", "-t", "1s"])
            .spawn(&command);
        let first = grace.wait_stdout("nice ").text;
        let normal = nice_of(grace.grace_pid());
        assert_eq!(first, format!("nice {normal}"), "{mode:?}");
        grace.signal(libc::SIGHUP);
        grace.wait_stdout("got TERM");
        // Raised just after the forward (the handler need not wait for it), within the 1 s grace period
        // that the child, which ignores the signal, keeps running through.
        let grace_pid = grace.grace_pid();
        common::wait_until(&format!("{mode:?}: the priority raised"), || {
            nice_of(grace_pid) == -20
        });
        grace.wait_log("restarted pid");
        let second = grace.wait_stdout("nice ").text;
        assert_eq!(
            second, first,
            "{mode:?}: the next run inherited the shutdown's priority"
        );
        assert_eq!(
            nice_of(grace.grace_pid()),
            normal,
            "{mode:?}: not given back"
        );
        stop(&grace);
        let finished = grace.finish();
        assert_eq!(finished.code(), 137, "{mode:?}\n{}", finished.dump());
    }
}
