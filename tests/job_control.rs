//! grace as a job of an interactive shell: Ctrl-Z stops `grace -- cat` as a job, `fg` and `bg` continue it,
//! and the terminal goes back to the child. A real interactive bash on a pseudo-terminal (util-linux
//! `script`), typed into like a person would.

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Instant;

use common::{grace_binary, TIMEOUT};

/// A terminal session: what was typed goes to bash, what the terminal shows is read as it comes.
struct Terminal {
    script: Child,
    keyboard: ChildStdin,
    screen: Receiver<Vec<u8>>,
    shown: String,
    /// How far the waits have read: each wait looks only at what came after the last one's match.
    read: usize,
}

const PROMPT: &str = "READY> ";

impl Terminal {
    fn start() -> Terminal {
        // No rc files, a known prompt; `script` gives bash a new pseudo-terminal as its controlling terminal,
        // so it runs with job control, and copies its own stdin to it.
        let mut script = Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                "bash --norc --noprofile -i",
                "/dev/null",
            ])
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
        };
        // bash sets its own prompt for an interactive shell; set ours, written so that the echo of the
        // command line cannot be taken for it.
        terminal.wait_for("bash-");
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
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(at) = self.shown[self.read..].find(text) {
                self.read += at + text.len();
                return;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(remaining) {
                Ok(bytes) => self.shown.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!(
                    "the terminal did not show {text:?}; it shows:\n{}",
                    self.shown
                ),
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
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
    terminal.wait_for(PROMPT);

    // fg: bash continues grace's group with the terminal; grace hands it to cat and continues it.
    terminal.type_in("fg\n");
    terminal.wait_for("continued in the foreground");
    terminal.type_in("again\n");
    terminal.wait_for("again\r\nagain");

    // Ctrl-Z, then bg: continued without the terminal. cat, in the background, reads the terminal and is
    // stopped by SIGTTIN: the job stops again.
    terminal.type_in("\x1a");
    terminal.wait_for("Stopped");
    terminal.wait_for(PROMPT);
    terminal.type_in("bg\n");
    terminal.wait_for("continued in the background");
    terminal.wait_for("stopped by SIGTTIN: stopping grace too");

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
