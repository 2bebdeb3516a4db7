//! On a terminal the child's process group becomes the foreground group, so Ctrl-C reaches it directly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{child, grace_binary};

#[test]
fn child_gets_the_terminal_and_ctrl_c() {
    if common::subreaper_refusal_is_fatal() {
        return; // grace runs as a plain child here
    }
    // `script` runs grace on a new pseudo-terminal and copies its own stdin to it: the test types into it.
    let inner = format!("{} -- {}", grace_binary(), child(&["terminal"]).join(" "));
    let mut script = Command::new("script")
        .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting script (util-linux)");
    let mut output = BufReader::new(script.stdout.take().expect("stdout"));
    let mut seen = String::new();
    let mut read_until = |needle: &str, seen: &mut String| loop {
        let mut line = String::new();
        let read = output.read_line(&mut line).expect("reading the terminal");
        assert!(
            read > 0,
            "terminal closed before {needle:?}; output so far:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains(needle) {
            return line;
        }
    };
    let ready = read_until("ready", &mut seen);
    assert!(
        ready.contains("foreground=yes"),
        "the child is not in the terminal's foreground: {ready}"
    );
    script
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"\x03")
        .expect("typing Ctrl-C");
    read_until("got INT", &mut seen);
    drop(script.stdin.take()); // script then exits when the command does
    read_until("exiting with status", &mut seen);
    let status = script.wait().expect("waiting for script");
    assert!(status.success(), "{status:?}\n{seen}");
    assert!(seen.contains("exiting with status 0"), "{seen}");
}

#[test]
fn ctrl_c_reaches_grace_as_pid_1_while_it_waits_to_restart() {
    // grace as a container's PID 1 on a terminal (`podman run -it`): the session leader of a new PID
    // namespace, the terminal its controlling terminal. When the main child exits, its process group is
    // empty: Ctrl-C must reach grace, not that group, and ends the 60 s wait at once.
    let inner = format!(
        "exec unshare --pid --fork --mount-proc --kill-child setsid --ctty {} --restart always --restart-delay 60s -- sh -c 'exit 3'",
        grace_binary()
    );
    let mut script = Ended(
        Command::new("script")
            .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting script (util-linux)"),
    );
    let script = &mut script.0;
    let (sender, lines) = std::sync::mpsc::channel();
    let output = BufReader::new(script.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in output.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    let mut read_until = |needle: &str| loop {
        let line = lines
            .recv_timeout(common::TIMEOUT)
            .unwrap_or_else(|_| panic!("no {needle:?} on the terminal; it shows:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return;
        }
    };
    read_until("restarting in 60");
    let typed = std::time::Instant::now();
    script
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"\x03")
        .expect("typing Ctrl-C");
    read_until("while waiting to restart: nothing more starts");
    read_until("exiting with status 3");
    let took = typed.elapsed();
    eprintln!("figures: Ctrl-C during the restart delay ended grace (PID 1) in {took:?}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

/// `script`, killed with what it runs when the test ends, passed or failed: its child is `unshare
/// --kill-child` (exec'd by the shell), whose death SIGKILLs the namespace's PID 1.
struct Ended(std::process::Child);

impl Drop for Ended {
    fn drop(&mut self) {
        let pid = self.0.id();
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            for child in children
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
            {
                // SAFETY-free: kill(2) on the unshare this test started.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_z_without_a_shell_above_does_not_stop_the_job() {
    // `script -c 'grace -- cat'`: grace leads the terminal's session, so its process group has no shell
    // above it (orphaned), and the kernel does not stop such a group on Ctrl-Z. Without grace, cat alone goes
    // on; with grace, cat's own group is stopped (its parent, grace, is in the same session), and grace
    // must not stop for good with nobody to continue it.
    for graced in [false, true] {
        let inner = if graced {
            format!("{} -- cat", grace_binary())
        } else {
            "cat".to_string()
        };
        let mut script = Ended(
            Command::new("script")
                .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting script (util-linux)"),
        );
        let script = &mut script.0;
        let (sender, lines) = std::sync::mpsc::channel();
        let output = BufReader::new(script.stdout.take().expect("stdout"));
        std::thread::spawn(move || {
            for line in output.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut keyboard = script.stdin.take().expect("stdin");
        let mut seen = String::new();
        // Waits for `count` more lines that `matches` accepts; `what` names them for the failure.
        let mut read_until = |what: &str, count: usize, matches: &dyn Fn(&str) -> bool| {
            let mut found = 0;
            while found < count {
                let line = lines
                    .recv_timeout(common::TIMEOUT)
                    .unwrap_or_else(|_| panic!("no {what:?} on the terminal; it shows:\n{seen}"));
                seen.push_str(&line);
                seen.push('\n');
                if matches(&line) {
                    found += 1;
                }
            }
        };
        // A line typed shows twice: the terminal's echo, then cat's copy (the echoed "^Z" left out).
        let typed_and_copied =
            |text: &'static str| move |line: &str| line.replace("^Z", "").trim_end() == text;
        if graced {
            read_until("started pid", 1, &|line| line.contains("started pid"));
        }
        keyboard.write_all(b"one\n").expect("typing");
        read_until("one", 2, &typed_and_copied("one"));
        keyboard.write_all(b"\x1a").expect("typing Ctrl-Z");
        let not_stopped = "grace's process group was not stopped";
        if graced {
            read_until(not_stopped, 1, &|line| line.contains(not_stopped));
        }
        keyboard.write_all(b"two\n").expect("typing");
        read_until("two", 2, &typed_and_copied("two"));
        keyboard.write_all(b"\x04").expect("typing Ctrl-D");
        if graced {
            read_until("exiting with status 0", 1, &|line| {
                line.contains("exiting with status 0")
            });
        }
    }
}
