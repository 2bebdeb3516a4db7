//! One init as a plain child of the bench, not PID 1 of a namespace: it is then a child
//! subreaper of its tree (grace becomes one whenever it is not PID 1). Nothing ends the tree
//! when such an init dies, so whoever starts one also holds its tree (see `escalation_scale`).

use crate::error::{bail, Context, Error, Result};
use crate::lines::Lines;
use crate::namespace::{stderr_tail, EXIT_TIMEOUT, READY_TIMEOUT};
use crate::{procfs, sys};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running init (our child) and its child program, their stdin and stdout wired to the bench.
pub struct Subreaper {
    label: String,
    init: Child,
    init_pidfd: OwnedFd,
    stdin: Option<ChildStdin>,
    lines: Lines,
    stderr_log: PathBuf,
    reaped: bool,
}

impl Subreaper {
    /// Starts `argv` (an init and its child) as a child of the bench and waits for the child's
    /// `ready` line. The init's stderr goes to `stderr_log`, truncated.
    pub fn start(label: &str, argv: &[OsString], stderr_log: &Path) -> Result<Self> {
        let stderr = File::create(stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let (program, arguments) = argv.split_first().context("an empty command line")?;
        let mut command = Command::new(program);
        command
            .args(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        sys::kill_when_parent_dies(&mut command);
        let mut init = command
            .spawn()
            .with_context(|| format!("{label}: starting {}", program.to_string_lossy()))?;
        let init_pidfd = match sys::pidfd_open(init.id() as i32) {
            Ok(fd) => fd,
            Err(err) => {
                let _ = init.kill();
                let _ = init.wait();
                return Err(Error::msg(format!("{label}: pidfd_open(init): {err}")));
            }
        };
        let stdin = init.stdin.take();
        let stdout = init.stdout.take().context("the init has no stdout pipe")?;
        let mut run = Self {
            label: label.to_owned(),
            init,
            init_pidfd,
            stdin,
            lines: Lines::new(stdout),
            stderr_log: stderr_log.to_owned(),
            reaped: false,
        };
        let line = run.read_line()?;
        if line != "ready" {
            bail!(
                "{label}: expected `ready`, got {line:?}{}",
                run.stderr_tail()
            );
        }
        Ok(run)
    }

    /// The init's main child: the program the bench asked it to run.
    pub fn main_child(&self) -> Result<i32> {
        let children = procfs::children(self.init.id() as i32)?;
        children
            .first()
            .copied()
            .with_context(|| format!("{}: the init has no child", self.label))
    }

    /// Sends `signal` to the init (through its pidfd).
    pub fn signal_init(&self, signal: i32) -> Result<()> {
        sys::pidfd_send_signal(self.init_pidfd.as_fd(), signal)
            .with_context(|| format!("{}: signalling the init", self.label))
    }

    /// The next line the child prints, waiting at most READY_TIMEOUT.
    fn read_line(&mut self) -> Result<String> {
        let deadline = sys::monotonic_ns() + READY_TIMEOUT.as_nanos() as u64;
        loop {
            if let Some(line) = self.lines.take() {
                return Ok(line);
            }
            if self.lines.is_closed() {
                bail!(
                    "{}: the child's output ended before a line was printed{}",
                    self.label,
                    self.stderr_tail()
                );
            }
            let now = sys::monotonic_ns();
            if now >= deadline {
                bail!(
                    "{}: timed out waiting for the child's output{}",
                    self.label,
                    self.stderr_tail()
                );
            }
            let remaining = std::time::Duration::from_nanos(deadline - now);
            if sys::poll_readable(&[self.lines.fd()], remaining)?[0] {
                self.lines.fill()?;
            }
        }
    }

    /// Ends the run: EOF on the child's stdin (every `stamp-child` mode exits on it), then the
    /// init's exit, which is awaited at most 5 s (then it is SIGKILLed and that is an error).
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let exited = sys::poll_readable(&[self.init_pidfd.as_fd()], EXIT_TIMEOUT)?[0];
        if !exited {
            let _ = self.init.kill();
        }
        self.init.wait()?;
        self.reaped = true;
        if !exited {
            bail!(
                "{}: the init did not exit within {EXIT_TIMEOUT:?}; killed{}",
                self.label,
                self.stderr_tail()
            );
        }
        Ok(())
    }

    /// The last lines the init wrote to stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr_log)
    }
}

impl Drop for Subreaper {
    /// Kills and reaps the init. Its tree outlives it (reparented to the host's subreaper), but
    /// every `stamp-child` exits on the EOF that dropping its stdin here gives it.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        drop(self.stdin.take());
        let _ = self.init.kill();
        let _ = self.init.wait();
    }
}
