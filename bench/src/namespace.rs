//! One init as PID 1 of a fresh PID namespace (`unshare --pid --fork --mount-proc --kill-child`),
//! its child's stdin and stdout wired to the bench, every wait bounded by a timeout.

use crate::error::{bail, Context, Error, Result};
use crate::lines::Lines;
use crate::{procfs, sys};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::Duration;

/// The `unshare` flags: a new PID namespace whose first process is the init, a private /proc
/// for it, and SIGKILL to the init should `unshare` die.
const UNSHARE_FLAGS: [&str; 4] = ["--pid", "--fork", "--mount-proc", "--kill-child"];

/// How long a child may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an init may take to exit once its child has exited.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `unshare` command line that runs `argv` as PID 1 of a fresh PID namespace.
fn unshare_command(argv: &[OsString]) -> Command {
    let mut command = Command::new("unshare");
    command.args(UNSHARE_FLAGS).args(argv);
    sys::kill_when_parent_dies(&mut command);
    command
}

/// Something the bench waits for.
#[derive(Debug)]
pub enum Event {
    /// A line the child printed (without its newline).
    Line(String),
    /// The init exited; `at_ns` is when the bench saw it (CLOCK_MONOTONIC).
    InitExited {
        /// CLOCK_MONOTONIC of the poll that saw the init's pidfd become readable.
        at_ns: u64,
    },
}

/// A running namespace: `unshare` (our child) → the init (PID 1 inside) → the child program.
pub struct Namespace {
    label: String,
    unshare: Child,
    unshare_pidfd: OwnedFd,
    stdin: Option<ChildStdin>,
    lines: Lines,
    init_pid: i32,
    init_pidfd: Option<OwnedFd>,
    init_exited_at: Option<u64>,
    init_exit_reported: bool,
    stderr_log: PathBuf,
    reaped: bool,
}

impl Namespace {
    /// Starts `argv` (an init and its child) in a fresh PID namespace and waits for the child's
    /// `ready` line. The init's stderr goes to `stderr_log`, truncated.
    pub fn start(label: &str, argv: &[OsString], stderr_log: &Path) -> Result<Self> {
        let stderr = File::create(stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut unshare = unshare_command(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("{label}: starting unshare"))?;
        let unshare_pid = unshare.id() as i32;
        let unshare_pidfd = match sys::pidfd_open(unshare_pid) {
            Ok(fd) => fd,
            Err(err) => {
                let _ = unshare.kill();
                let _ = unshare.wait();
                return Err(Error::msg(format!("{label}: pidfd_open(unshare): {err}")));
            }
        };
        let stdin = unshare.stdin.take();
        let stdout = unshare
            .stdout
            .take()
            .context("unshare has no stdout pipe")?;
        let mut namespace = Self {
            label: label.to_owned(),
            unshare,
            unshare_pidfd,
            stdin,
            lines: Lines::new(stdout),
            init_pid: 0,
            init_pidfd: None,
            init_exited_at: None,
            init_exit_reported: false,
            stderr_log: stderr_log.to_owned(),
            reaped: false,
        };
        let line = namespace.read_line(READY_TIMEOUT)?;
        if line != "ready" {
            bail!(
                "{label}: expected `ready`, got {line:?}{}",
                namespace.stderr_tail()
            );
        }
        let children = procfs::children(unshare_pid)?;
        let [init_pid] = children.as_slice() else {
            bail!("{label}: unshare has children {children:?}, expected one init");
        };
        namespace.init_pid = *init_pid;
        namespace.init_pidfd = Some(
            sys::pidfd_open(*init_pid)
                .with_context(|| format!("{label}: pidfd_open(init {init_pid})"))?,
        );
        Ok(namespace)
    }

    /// The init's pid as the host sees it.
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// The init's main child (host pid): the program the bench asked it to run.
    pub fn main_child(&self) -> Result<i32> {
        let children = procfs::children(self.init_pid)?;
        children
            .first()
            .copied()
            .with_context(|| format!("{}: the init has no child", self.label))
    }

    /// The init's pidfd (known once the child is ready).
    fn init_pidfd(&self) -> Result<BorrowedFd<'_>> {
        self.init_pidfd
            .as_ref()
            .map(AsFd::as_fd)
            .with_context(|| format!("{}: the init is not known yet", self.label))
    }

    /// Sends `signal` to the init, from the host (through its pidfd: no pid-reuse race).
    pub fn signal_init(&self, signal: i32) -> Result<()> {
        sys::pidfd_send_signal(self.init_pidfd()?, signal)
            .with_context(|| format!("{}: signalling the init", self.label))
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("{}: writing {line:?} to the child", self.label))
    }

    /// The next line the child prints, waiting at most `timeout`.
    pub fn read_line(&mut self, timeout: Duration) -> Result<String> {
        let deadline = sys::monotonic_ns() + timeout.as_nanos() as u64;
        match self.next_event(false, deadline)? {
            Event::Line(line) => Ok(line),
            Event::InitExited { .. } => unreachable!("exit is not watched"),
        }
    }

    /// The next line, or the init's exit if `watch_exit`, before CLOCK_MONOTONIC `deadline_ns`.
    /// Lines already printed come first; the exit is reported once.
    pub fn next_event(&mut self, watch_exit: bool, deadline_ns: u64) -> Result<Event> {
        loop {
            if let Some(line) = self.lines.take() {
                return Ok(Event::Line(line));
            }
            if watch_exit && !self.init_exit_reported {
                if let Some(at_ns) = self.init_exited_at {
                    self.init_exit_reported = true;
                    return Ok(Event::InitExited { at_ns });
                }
            }
            if self.lines.is_closed() && !watch_exit {
                bail!(
                    "{}: the child's output ended before a line was printed{}",
                    self.label,
                    self.stderr_tail()
                );
            }
            let now = sys::monotonic_ns();
            if now >= deadline_ns {
                bail!(
                    "{}: timed out waiting for the child's output{}",
                    self.label,
                    self.stderr_tail()
                );
            }
            let timeout = Duration::from_nanos(deadline_ns - now);
            let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
            if !self.lines.is_closed() {
                fds.push(self.lines.fd());
            }
            let watch_pidfd = watch_exit && self.init_exited_at.is_none();
            if watch_pidfd {
                fds.push(self.init_pidfd()?);
            }
            if fds.is_empty() {
                bail!(
                    "{}: the init exited and the child's output ended without that line{}",
                    self.label,
                    self.stderr_tail()
                );
            }
            let ready = sys::poll_readable(&fds, timeout)?;
            let seen_at = sys::monotonic_ns();
            if watch_pidfd && ready[fds.len() - 1] {
                self.init_exited_at = Some(seen_at);
            }
            if !self.lines.is_closed() && ready[0] {
                self.lines.fill()?;
            }
        }
    }

    /// Waits at most `timeout` for the init to exit; true if it did.
    pub fn wait_init_exit(&self, timeout: Duration) -> Result<bool> {
        if self.init_exited_at.is_some() {
            return Ok(true);
        }
        Ok(sys::poll_readable(&[self.init_pidfd()?], timeout)?[0])
    }

    /// Tears the namespace down: EOF on the child's stdin makes every `stamp-child` mode exit,
    /// which makes the init exit. An init that does not exit within 5 s is SIGKILLed and the
    /// teardown reported as an error.
    pub fn finish(self) -> Result<()> {
        self.finish_with_status().map(drop)
    }

    /// As [`Namespace::finish`], and the init's exit status: `unshare --fork` exits with its child's
    /// code, and re-raises the signal that killed it.
    pub fn finish_with_status(mut self) -> Result<std::process::ExitStatus> {
        drop(self.stdin.take());
        let mut outcome = Ok(());
        if self.init_pidfd.is_some() && !self.wait_init_exit(EXIT_TIMEOUT)? {
            let _ = self.signal_init(libc::SIGKILL);
            outcome = Err(Error::msg(format!(
                "{}: the init did not exit within {EXIT_TIMEOUT:?} after its child did; killed{}",
                self.label,
                self.stderr_tail()
            )));
        }
        if !sys::poll_readable(&[self.unshare_pidfd.as_fd()], EXIT_TIMEOUT)?[0] {
            let _ = self.unshare.kill();
        }
        let status = self.unshare.wait()?;
        self.reaped = true;
        outcome.map(|()| status)
    }

    /// The last lines the init wrote to stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr_log)
    }
}

impl Drop for Namespace {
    /// Kills the init (the kernel then kills everything else in its namespace) and lets
    /// `unshare` reap it and exit; `unshare` itself is killed only if it does not. Killing
    /// `unshare` first would leave the init's zombie to the host's PID 1.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let init_pidfd = self.init_pidfd.take().or_else(|| {
            // Not known yet (the child never got ready): find it as unshare's only child.
            let children = procfs::children(self.unshare.id() as i32).ok()?;
            sys::pidfd_open(*children.first()?).ok()
        });
        if let Some(pidfd) = &init_pidfd {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        }
        let exited = sys::poll_readable(&[self.unshare_pidfd.as_fd()], EXIT_TIMEOUT)
            .is_ok_and(|ready| ready[0]);
        if !exited {
            let _ = self.unshare.kill();
        }
        let _ = self.unshare.wait();
    }
}

/// Runs `argv` as PID 1 of a fresh namespace with no input and returns how long it took from
/// spawning `unshare` until it exited, in nanoseconds. Fails if it does not exit 0 in `timeout`.
pub fn time_run(
    label: &str,
    argv: &[OsString],
    stderr_log: &Path,
    timeout: Duration,
) -> Result<u64> {
    let stderr =
        File::create(stderr_log).with_context(|| format!("creating {}", stderr_log.display()))?;
    let start = sys::monotonic_ns();
    let child = unshare_command(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("{label}: starting unshare"))?;
    let (status, end) = wait_with_deadline(child, timeout)
        .with_context(|| format!("{label}: {}", stderr_tail(stderr_log)))?;
    if !status.success() {
        bail!("{label}: exited with {status}{}", stderr_tail(stderr_log));
    }
    Ok(end - start)
}

/// Waits for `child` at most `timeout` (killing it then); returns its status and the
/// CLOCK_MONOTONIC time at which it was seen to exit.
fn wait_with_deadline(
    mut child: Child,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, u64)> {
    let pidfd = match sys::pidfd_open(child.id() as i32) {
        Ok(fd) => fd,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err.into());
        }
    };
    let exited = sys::poll_readable(&[pidfd.as_fd()], timeout)?[0];
    let end = sys::monotonic_ns();
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        bail!("did not exit within {timeout:?}; killed");
    }
    Ok((child.wait()?, end))
}

/// Like `Child::wait_with_output`, but kills the child after `timeout`. For short outputs only
/// (the pipes are read after the exit).
pub fn wait_with_output(mut child: Child, timeout: Duration) -> Result<Output> {
    let pidfd = sys::pidfd_open(child.id() as i32)?;
    if !sys::poll_readable(&[pidfd.as_fd()], timeout)?[0] {
        let _ = child.kill();
    }
    Ok(child.wait_with_output()?)
}

/// The last few lines of an init's stderr log, formatted to end an error message.
pub fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(" (its stderr ends: {})", tail.join(" | "))
    }
}
