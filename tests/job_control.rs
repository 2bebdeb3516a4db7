//! grace as a job of an interactive shell: Ctrl-Z stops `grace -- cat` as a job, `fg` and `bg` continue it,
//! the terminal goes to the child while it runs and back to grace's group when it exits, a restart takes the
//! terminal only in the foreground, a job started with `&` works once brought to the foreground, and under a
//! wrapper without job control (`bash -c`) Ctrl-Z stops the whole job. A real interactive bash on a
//! pseudo-terminal (util-linux `script`), typed into like a person would.

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{child, grace_binary, TIMEOUT};

/// A terminal session: what was typed goes to bash, what the terminal shows is read as it comes.
struct Terminal {
    script: Child,
    keyboard: ChildStdin,
    screen: Receiver<Vec<u8>>,
    shown: String,
    /// How far the waits have read: each wait looks only at what came after the last one's match.
    read: usize,
    /// Marker lines typed so far (see [`Terminal::after_a_stop`]).
    markers: u32,
    /// The shell's session (its pid: it leads it), to end what is left in it, even once the shell is gone.
    session: Option<i32>,
}

const PROMPT: &str = "READY> ";

impl Terminal {
    fn start() -> Terminal {
        // No rc files, a known prompt; `script` gives bash a new pseudo-terminal as its controlling terminal,
        // so it runs with job control, and copies its own stdin to it. No line editor: what is typed while
        // bash runs a command then waits in the terminal, in its cooked mode, instead of meeting readline's
        // switches between modes. `script` runs the command with `$SHELL -c`, and dash (Debian's sh, and
        // script's choice when SHELL is unset, as under CI) forks for it rather than exec: `exec` makes
        // bash itself the session leader whose pid the tests take for the shell's, whatever SHELL says.
        let mut script = Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                "exec bash --norc --noprofile --noediting -i",
                "/dev/null",
            ])
            .env("SHELL", "/bin/sh")
            .env("TERM", "dumb")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting script (util-linux)");
        let keyboard = script.stdin.take().expect("stdin");
        let mut output = script.stdout.take().expect("stdout");
        let (sender, screen) = mpsc::channel();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = output.read(&mut buffer) {
                if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                    return;
                }
            }
        });
        let mut terminal = Terminal {
            script,
            keyboard,
            screen,
            shown: String::new(),
            read: 0,
            markers: 0,
            session: None,
        };
        // bash sets its own prompt for an interactive shell; set ours, written so that the echo of the
        // command line cannot be taken for it.
        terminal.wait_for("bash-");
        terminal.session = session_of_child(terminal.script.id());
        let leader = terminal
            .session
            .expect("script's child, the session leader");
        let command = std::fs::read_to_string(format!("/proc/{leader}/comm")).unwrap_or_default();
        assert_eq!(
            command.trim(),
            "bash",
            "the session leader is not the interactive bash"
        );
        terminal.type_in("PS1='READ\\[\\]Y> '\n");
        terminal.wait_for(PROMPT);
        terminal
    }

    fn type_in(&mut self, keys: &str) {
        self.keyboard.write_all(keys.as_bytes()).expect("typing");
        self.keyboard.flush().expect("typing");
    }

    /// Waits until `text` shows after what the last wait matched; fails after [`TIMEOUT`].
    fn wait_for(&mut self, text: &str) {
        if !self.shows_within(text, TIMEOUT) {
            panic!(
                "the terminal did not show {text:?}; it shows:\n{}",
                self.shown
            );
        }
    }

    /// Whether `text` shows, after what the last wait matched, within `bound`.
    fn shows_within(&mut self, text: &str, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(at) = self.shown[self.read..].find(text) {
                self.read += at + text.len();
                return true;
            }
            if !self.receive(deadline) {
                return false;
            }
        }
    }

    /// Adds what the terminal shows next to `shown`; false once `deadline` has passed (however much the
    /// terminal keeps showing) or the terminal has closed.
    fn receive(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        match self.screen.recv_timeout(deadline - now) {
            Ok(bytes) => {
                self.shown.push_str(&String::from_utf8_lossy(&bytes));
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for the prompt that follows a job's stop, then until bash runs what is typed. bash, alone,
    /// now and again discards a line typed the moment that prompt shows (measured: 1 stop in 30 to 300,
    /// with or without its line editor, the line never run): a marker line takes that moment, typed again
    /// if it does not run.
    fn after_a_stop(&mut self) {
        self.wait_for(PROMPT);
        self.markers += 1;
        let marker = format!("marker {}\r\n", self.markers);
        for _ in 0..5 {
            self.type_in(&format!("echo \"marker $(({}*1))\"\n", self.markers));
            if self.shows_within(&marker, Duration::from_secs(5)) {
                break;
            }
            eprintln!("note: bash did not run a line typed after a job stopped; typing it again");
        }
        self.wait_for(PROMPT);
    }

    /// Waits until `text` shows, followed by a number (a pid), and returns that number.
    fn wait_for_number_after(&mut self, text: &str) -> u32 {
        self.wait_for(text);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let rest = &self.shown[self.read..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 && digits < rest.len() {
                let number = rest[..digits].parse().expect("a number");
                self.read += digits;
                return number;
            }
            if !self.receive(deadline) {
                panic!(
                    "no number after {text:?}; the terminal shows:\n{}",
                    self.shown
                );
            }
        }
    }
}

impl Drop for Terminal {
    /// Ends the session: what a failed test left running there (a grace restarting its command when the
    /// shell's SIGHUP kills it) gets SIGTERM and SIGCONT, so that grace shuts its tree down, then SIGKILL.
    fn drop(&mut self) {
        let _ = self.script.kill();
        let _ = self.script.wait();
        let Some(session) = self.session else { return };
        let deadline = Instant::now() + TIMEOUT;
        for signals in [&[libc::SIGTERM, libc::SIGCONT][..], &[libc::SIGKILL]] {
            for pid in in_session(session) {
                for &signal in signals {
                    // SAFETY-free: kill(2) on processes of the session this test started.
                    unsafe { libc::kill(pid, signal) };
                }
            }
            while !in_session(session).is_empty() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20)); // cleanup after the test, not synchronisation
            }
        }
    }
}

/// The session of `parent`'s child (the shell `script` started as a session leader: its pid).
fn session_of_child(parent: u32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// The processes of `session`, from /proc.
fn in_session(session: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .get(3)
                .and_then(|field| field.parse().ok())
                == Some(session)
        })
        .collect()
}

#[test]
fn ctrl_z_stops_grace_as_a_job_and_fg_and_bg_continue_it() {
    let mut terminal = Terminal::start();
    terminal.type_in(&format!("{} -- cat\n", grace_binary()));
    terminal.wait_for("started pid");
    terminal.type_in("hello\n");
    terminal.wait_for("hello\r\nhello"); // the terminal's echo, then cat's copy

    // Ctrl-Z: the terminal stops cat's group; grace stops itself; bash sees the job stopped.
    terminal.type_in("\x1a");
    terminal.wait_for("stopping grace too");
    terminal.wait_for("Stopped");
    terminal.after_a_stop();

    // fg: bash continues grace's group with the terminal; grace hands it to cat and continues it.
    terminal.type_in("fg\n");
    terminal.wait_for("continued in the foreground");
    terminal.type_in("again\n");
    terminal.wait_for("again\r\nagain");

    // Ctrl-Z, then bg: continued without the terminal. cat, in the background, reads the terminal and is
    // stopped by SIGTTIN: the job stops again.
    terminal.type_in("\x1a");
    terminal.wait_for("Stopped");
    terminal.after_a_stop();
    terminal.type_in("bg\n");
    terminal.wait_for("continued in the background");
    terminal.wait_for("stopped by SIGTTIN: stopping grace too");
    // bash's `wait` returns once the job has stopped (128 + SIGTTIN), or at once if it has: after that,
    // `fg` continues a stopped job, not one about to stop.
    terminal.type_in("wait %1; echo \"waited $?\"\n");
    terminal.wait_for("waited 149");
    terminal.after_a_stop();

    // fg again, and Ctrl-D: cat reads its end of input and exits 0, and so does grace.
    terminal.type_in("fg\n");
    terminal.wait_for("continued in the foreground");
    terminal.type_in("last\n");
    terminal.wait_for("last\r\nlast");
    terminal.type_in("\x04");
    terminal.wait_for("exiting with status 0");
    terminal.wait_for(PROMPT);
    terminal.type_in("echo \"status=$?\"\n");
    terminal.wait_for("status=0");
    terminal.type_in("exit\n");
}

#[test]
fn keyboard_signals_reach_grace_while_it_waits_to_restart() {
    let mut terminal = Terminal::start();
    terminal.type_in(&format!(
        "{} --restart always --restart-delay 60s -- sh -c 'echo \"run $((6*7))\"; exit 1'\n",
        grace_binary()
    ));
    terminal.wait_for("run 42");
    terminal.wait_for("restarting in");
    // No child group holds the terminal: grace's does. Ctrl-Z stops grace as a job, and `fg` continues it.
    terminal.type_in("\x1a");
    terminal.wait_for("Stopped");
    terminal.after_a_stop();
    terminal.type_in("fg\n");
    terminal.wait_for("continued while waiting to restart");
    // Ctrl-C ends grace at once, with the last run's status, not after the 60 s.
    let typed = Instant::now();
    terminal.type_in("\x03");
    terminal.wait_for("received SIGINT from");
    terminal.wait_for("while waiting to restart: nothing more starts");
    terminal.wait_for("exiting with status 1");
    let took = typed.elapsed();
    eprintln!("figures: Ctrl-C during the restart delay ended grace in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    terminal.wait_for(PROMPT);
    terminal.type_in("echo \"status=$?\"\n");
    terminal.wait_for("status=1");
    terminal.type_in("exit\n");
}

#[test]
fn ctrl_c_reaches_grace_during_the_cleanup_after_the_main_child_exits() {
    // The cleanup waits for the daemon the main child left: a daemon a subreaper adopts. Under an emulator
    // that refuses the role, it goes to the machine's init, and there is no cleanup to interrupt.
    if common::NO_SUBREAPER.applies() {
        return;
    }
    let mut terminal = Terminal::start();
    // The main child exits and leaves a setsid daemon that ignores SIGTERM: the cleanup lasts until its
    // SIGKILL, 4 s on, and the main child's process group is empty meanwhile.
    let command = child(&["daemons", "left:ignore", "--main", "exit:3"]).join(" ");
    terminal.type_in(&format!(
        "{} --restart always --cleanup-timeout 4s -- {command}\n",
        grace_binary()
    ));
    terminal.wait_for("daemon left pid");
    terminal.wait_for("exited with status 3");
    terminal.type_in("\x03");
    // The Ctrl-C reaches grace: the cleanup is the final shutdown, and nothing starts again.
    terminal.wait_for("received SIGINT after the main child exited");
    terminal.wait_for("exiting with status 3");
    terminal.wait_for(PROMPT);
    terminal.type_in("exit\n");
}

#[test]
fn a_restart_takes_the_terminal_in_the_foreground_only() {
    let mut terminal = Terminal::start();
    // In the foreground, each run has the terminal: it reads what is typed.
    terminal.type_in(&format!(
        "{} --restart always --restart-delay 100ms --max-restarts 1 -- sh -c 'read -r line; echo \"got $line\"; exit 1'\n",
        grace_binary()
    ));
    terminal.wait_for("started pid");
    terminal.type_in("one\n");
    terminal.wait_for("got one");
    terminal.wait_for("restarted pid");
    terminal.type_in("two\n");
    terminal.wait_for("got two");
    terminal.wait_for("exiting with status 1");
    terminal.wait_for(PROMPT);

    // Stopped and sent to the background with `bg`: the next run starts in the background, and the shell
    // keeps its terminal.
    terminal.type_in(&format!(
        "{} --restart always --restart-delay 100ms -- sleep 1000\n",
        grace_binary()
    ));
    let first = terminal.wait_for_number_after("started pid ");
    terminal.type_in("\x1a");
    terminal.wait_for("Stopped");
    terminal.after_a_stop();
    terminal.type_in("bg\n");
    terminal.wait_for("continued in the background");
    terminal.type_in(&format!("kill {first}\n"));
    terminal.wait_for("restarted pid");
    // The new run took the terminal (if it did) before its start was logged.
    let shell = terminal.session.expect("the shell");
    assert_eq!(
        stat_fields(shell).get(5),
        Some(&shell.to_string()),
        "the shell lost the terminal's foreground to the restarted command"
    );
    terminal.type_in("echo \"alive $((6*7))\"\n");
    terminal.wait_for("alive 42");
    terminal.wait_for(PROMPT);
    terminal.type_in("kill %1\n");
    terminal.wait_for("exiting with status 143");
    terminal.type_in("echo \"still $((6*7))\"\n");
    terminal.wait_for("still 42");
    terminal.type_in("exit\n");
}

#[test]
fn ctrl_z_stops_the_whole_job_under_a_wrapper_without_job_control() {
    let mut terminal = Terminal::start();
    // Without grace, Ctrl-Z stops the wrapper's whole process group: the shell sees the job stopped, and
    // `fg` and `bg` continue it. With grace the same.
    for graced in [false, true] {
        let (wrapped, number) = if graced {
            (format!("{} -- cat", grace_binary()), 42)
        } else {
            ("cat".to_string(), 41)
        };
        // Typing waits for what shows that the shell no longer reads the terminal itself (what is typed
        // while its line editor has it is lost), and for grace's own lines, so that they come before the
        // copy of what is typed.
        let line = format!(
            "bash -c 'echo \"start $(({number}*2))\"; {wrapped}; echo \"done $(({number}*3))\"'"
        );
        let after_continue = |terminal: &mut Terminal| {
            terminal.wait_for(&format!("{line}\r\n"));
            if graced {
                terminal.wait_for("continued in the foreground");
            }
        };
        terminal.type_in(&format!("{line}\n"));
        terminal.wait_for(&format!("start {}", number * 2));
        if graced {
            terminal.wait_for("started pid");
        }
        terminal.type_in("hello\n");
        terminal.wait_for("hello\r\nhello");
        terminal.type_in("\x1a");
        terminal.wait_for("Stopped");
        terminal.after_a_stop();
        terminal.type_in("fg\n");
        after_continue(&mut terminal);
        terminal.type_in("again\n");
        terminal.wait_for("again\r\nagain");
        // Ctrl-Z, then bg: cat reads the terminal from the background, SIGTTIN stops the job again.
        terminal.type_in("\x1a");
        terminal.wait_for("Stopped");
        terminal.after_a_stop();
        terminal.type_in("bg\n");
        terminal.wait_for(PROMPT);
        // bash's `wait` returns when the job changes state: 128 + SIGTTIN (21) once it is stopped.
        terminal.type_in("wait %1; echo \"waited $?\"\n");
        terminal.wait_for("waited 149");
        terminal.after_a_stop();
        terminal.type_in("fg\n");
        after_continue(&mut terminal);
        terminal.type_in("last\n");
        terminal.wait_for("last\r\nlast");
        terminal.type_in("\x04");
        terminal.wait_for(&format!("done {}", number * 3));
        terminal.wait_for(PROMPT);
    }
    terminal.type_in("exit\n");
}

#[test]
fn the_terminal_goes_back_to_the_wrapper_when_grace_exits() {
    let mut terminal = Terminal::start();
    terminal.type_in(&format!(
        "bash -c '{} -- true; read -r line; echo \"got $line\"'\n",
        grace_binary()
    ));
    terminal.wait_for("exiting with status 0");
    terminal.type_in("hello\n");
    terminal.wait_for("got hello");
    terminal.wait_for(PROMPT);
    terminal.type_in("exit\n");
}

#[test]
fn a_job_started_in_the_background_works_in_the_foreground() {
    let mut terminal = Terminal::start();
    // Without grace: `cat &` is stopped reading the terminal (SIGTTIN); `fg` gives it the terminal.
    for (command, text) in [
        ("cat".to_string(), "plain"),
        (format!("{} -- cat", grace_binary()), "graced"),
    ] {
        terminal.type_in(&format!("{command} &\n"));
        terminal.wait_for(PROMPT);
        // Once the shell sees the job stopped (its `wait` returns when the job changes state):
        terminal.type_in("wait %1; echo \"waited $?\"\n");
        terminal.wait_for("waited 149");
        terminal.after_a_stop();
        terminal.type_in("fg\n");
        terminal.wait_for(&format!("fg\r\n{command}\r\n"));
        if command != "cat" {
            terminal.wait_for("continued in the foreground");
        }
        terminal.type_in(&format!("{text}\n"));
        terminal.wait_for(&format!("{text}\r\n{text}"));
        terminal.type_in("\x04");
        terminal.wait_for(PROMPT);
        terminal.type_in("echo \"status=$?\"\n");
        terminal.wait_for("status=0");
    }

    // `fg` before the child reads: the shell gives grace's group the terminal (and sends no SIGCONT to a
    // running job); the child's read, from the background, is stopped by SIGTTIN, and grace hands it the
    // terminal instead of stopping the job.
    let gate = Gate::new("read");
    terminal.type_in(&format!(
        "{} -- sh -c 'read -r x < {}; exec cat' &\n",
        grace_binary(),
        gate.path.display()
    ));
    let grace = terminal.wait_for_number_after("[1] ");
    terminal.wait_for("started pid");
    terminal.type_in("fg\n");
    wait_until_foreground(grace);
    gate.open();
    terminal.wait_for("stopped by SIGTTIN while grace's group has the terminal");
    terminal.wait_for("continued in the foreground");
    terminal.type_in("late\n");
    terminal.wait_for("late\r\nlate");
    terminal.type_in("\x04");
    terminal.wait_for("exiting with status 0");
    terminal.wait_for(PROMPT);
    terminal.type_in("exit\n");
}

#[test]
fn a_shell_continuing_grace_in_the_foreground_gives_the_child_the_terminal() {
    let mut terminal = Terminal::start();
    // SIGSTOP to grace alone (not through its child): the shell sees the job stopped and takes the terminal
    // back. `fg` continues grace with the terminal: grace hands it to the child's group at once, so that a
    // child asking whether it is in the foreground is told yes.
    let gate = Gate::new("continue");
    let asks = child(&["terminal"]).join(" ");
    terminal.type_in(&format!(
        "{} -- sh -c 'read -r x < {}; exec {asks}'\n",
        grace_binary(),
        gate.path.display()
    ));
    terminal.wait_for("started pid");
    let grace = grace_pid_in(terminal.session.expect("the shell"));
    // SAFETY-free: kill(2) on the grace this test started.
    assert_eq!(unsafe { libc::kill(grace, libc::SIGSTOP) }, 0);
    terminal.wait_for("Stopped");
    terminal.after_a_stop();
    terminal.type_in("fg\n");
    terminal.wait_for("continued in the foreground");
    gate.open();
    terminal.wait_for("ready foreground=yes");
    terminal.type_in("\x03");
    terminal.wait_for("got INT");
    terminal.wait_for("exiting with status 0");
    terminal.wait_for(PROMPT);
    terminal.type_in("exit\n");
}

/// A named pipe a child's `read -r x < PATH` waits on until the test opens it.
struct Gate {
    path: std::path::PathBuf,
}

impl Gate {
    fn new(name: &str) -> Gate {
        let path =
            std::env::temp_dir().join(format!("grace-job-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
        assert!(made.success());
        Gate { path }
    }

    fn open(&self) {
        std::fs::write(&self.path, "go\n").expect("opening the gate");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, tty_nr, tpgid, …
fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat[stat.rfind(')').map_or(0, |at| at + 1)..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Waits until the terminal's foreground group is `group` (tpgid, as /proc shows it for that process).
fn wait_until_foreground(group: u32) {
    let deadline = Instant::now() + TIMEOUT;
    while stat_fields(group as i32).get(5).map(String::as_str) != Some(&group.to_string()) {
        assert!(
            Instant::now() < deadline,
            "{group} never got the terminal's foreground"
        );
        thread::sleep(Duration::from_millis(5)); // the shell sends nothing when it gives the terminal
    }
}

/// The grace that `shell` runs.
fn grace_pid_in(shell: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .expect("the shell's children");
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .find(|&pid: &i32| stat_fields(pid).get(2) == Some(&pid.to_string()))
        .expect("grace, leading its own process group")
}
