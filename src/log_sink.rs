//! Where grace's log lines go: stderr, without ever waiting for it. A log reader that stalls (a log shipper
//! that hangs, a runtime under disk pressure, a child that filled the pipe) must not stop grace from
//! forwarding, reaping and killing at the deadline.
//!
//! Lines wait in a bounded buffer and go out as the descriptor accepts them: right away when it can, later
//! when the supervisor's poll says it is writable. When the buffer is full, lines are dropped and counted;
//! the count goes out with the next line that fits. At exit grace tries for [`EXIT_FLUSH`] to write what is
//! left, and exits anyway.
//!
//! Non-blocking without touching the child: O_NONBLOCK belongs to the open file description, which grace
//! shares with the child, so setting it on descriptor 2 would make the child's own writes fail with EAGAIN.
//! grace opens /proc/self/fd/2 instead, which gives a description of its own of the same pipe, FIFO or
//! terminal; a socket (which cannot be reopened that way) is written with `send(MSG_DONTWAIT)`; a regular
//! file does not wait for a reader at all.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Stderr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::MsgFlags;
use nix::sys::stat::{fstat, SFlag};

use crate::sys;

/// How much log output may wait for a stalled reader: a few hundred lines. Memory stays bounded, and a
/// reader that comes back gets the latest lines, not an unbounded backlog.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// How long grace tries to write what is left of its log before it exits anyway.
pub const EXIT_FLUSH: Duration = Duration::from_millis(250);

/// How stderr is written.
#[derive(Debug)]
enum Target {
    /// A pipe, FIFO or terminal, reopened through /proc/self/fd/2: a non-blocking description of grace's own
    /// (in [`REOPENED`]).
    Reopened,
    /// A socket: each write is `send(MSG_DONTWAIT)`, which leaves the shared description as it is.
    Socket,
    /// A regular file or a block device, which never waits for a reader: written directly.
    File,
    /// A pipe or terminal that could not be reopened (no /proc): written only when poll says it has room.
    /// A child writing to it in the same instant can take that room first; then, and only then, a write waits.
    Polled,
    /// Closed, or its reader is gone for good (EPIPE): lines are discarded.
    Discard,
}

/// The sink: a target and the lines waiting for it.
#[derive(Debug)]
pub struct Sink {
    target: Target,
    pending: VecDeque<u8>,
    /// Lines dropped since the last one that was accepted.
    dropped: u64,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);
/// The reopened stderr, kept open for as long as grace runs, so that the loop can poll it.
static REOPENED: OnceLock<File> = OnceLock::new();
/// grace's handle on descriptor 2, kept for the same reason.
static STDERR: OnceLock<Stderr> = OnceLock::new();

/// Opens the sink on descriptor 2, without a descriptor of its own yet (see [`reopen`]). Call once,
/// before anything is logged.
pub fn init() {
    let sink = Sink::new(target_for_stderr());
    *SINK.lock().unwrap_or_else(PoisonError::into_inner) = Some(sink);
}

/// Gives the sink its own non-blocking description of a pipe, FIFO or terminal. Separate from [`init`] and
/// called once grace holds the descriptors it cannot do without (the signalfd): under a descriptor limit as
/// tight as `ulimit -n 4`, the log then falls back to polling rather than taking the signalfd's place.
pub fn reopen() {
    with_sink(|sink| {
        if !matches!(sink.target, Target::Polled) {
            return;
        }
        let Ok(stat) = fstat(libc::STDERR_FILENO) else {
            return;
        };
        if let Some(Ok(())) =
            reopen_non_blocking(stat.st_dev, stat.st_ino).map(|file| REOPENED.set(file))
        {
            sink.target = Target::Reopened;
        }
    });
}

/// Runs `action` on the sink, if there is one.
pub fn with_sink<T>(action: impl FnOnce(&mut Sink) -> T) -> Option<T> {
    SINK.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .map(action)
}

/// Writes what the descriptor accepts now, without waiting.
pub fn flush() {
    with_sink(Sink::flush);
}

/// The descriptor to poll for POLLOUT while lines wait for it; `None` when nothing waits.
pub fn waiting_descriptor() -> Option<BorrowedFd<'static>> {
    with_sink(|sink| sink.waiting_descriptor()).flatten()
}

/// Writes what is left for at most [`EXIT_FLUSH`]; grace is about to exit.
pub fn flush_before_exit() {
    let deadline = Instant::now() + EXIT_FLUSH;
    loop {
        flush();
        let Some(descriptor) = waiting_descriptor() else {
            return;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return;
        }
        let mut fds = [PollFd::new(descriptor, PollFlags::POLLOUT)];
        let timeout =
            PollTimeout::try_from(remaining.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
        if matches!(nix::poll::poll(&mut fds, timeout), Ok(0)) {
            return;
        }
    }
}

impl Sink {
    fn new(target: Target) -> Sink {
        Sink {
            target,
            pending: VecDeque::new(),
            dropped: 0,
        }
    }

    /// How many lines were dropped since the last accepted one.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether `bytes` more would fit in the buffer.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.pending.len() + bytes <= BUFFER_BYTES
    }

    /// Queues `line` (a whole line, newline included) and writes what the descriptor accepts; a line that
    /// does not fit is dropped and counted. `notice` (the report of earlier drops) goes first when given; it
    /// resets the count.
    pub fn push(&mut self, notice: Option<&[u8]>, line: &[u8]) {
        if matches!(self.target, Target::Discard) {
            return;
        }
        let notice = notice.unwrap_or_default();
        if !self.has_room(notice.len() + line.len()) {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        if !notice.is_empty() {
            self.dropped = 0;
        }
        self.pending.extend(notice);
        self.pending.extend(line);
        self.flush();
    }

    /// Writes as much as the descriptor accepts without waiting.
    pub fn flush(&mut self) {
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match self.write(front) {
                Ok(0) => return,
                Ok(written) => {
                    self.pending.drain(..written.min(self.pending.len()));
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // EPIPE (the reader is gone), EBADF…: nothing will ever get through.
                    self.target = Target::Discard;
                    self.pending = VecDeque::new();
                    return;
                }
            }
        }
    }

    fn write(&self, bytes: &[u8]) -> nix::Result<usize> {
        match &self.target {
            Target::Reopened => match REOPENED.get() {
                Some(file) => nix::unistd::write(file, bytes),
                None => Err(Errno::EBADF),
            },
            Target::Socket => nix::sys::socket::send(
                libc::STDERR_FILENO,
                bytes,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ),
            Target::File => nix::unistd::write(stderr(), bytes),
            Target::Polled => {
                let mut fds = [PollFd::new(stderr().as_fd(), PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, PollTimeout::ZERO)? {
                    0 => Err(Errno::EAGAIN),
                    _ => nix::unistd::write(stderr(), bytes),
                }
            }
            Target::Discard => Ok(bytes.len()),
        }
    }

    fn waiting_descriptor(&self) -> Option<BorrowedFd<'static>> {
        if self.pending.is_empty() {
            return None;
        }
        match &self.target {
            Target::Reopened => REOPENED.get().map(AsFd::as_fd),
            Target::Socket | Target::Polled => Some(stderr().as_fd()),
            Target::File | Target::Discard => None,
        }
    }
}

/// Decides how to write descriptor 2.
fn target_for_stderr() -> Target {
    if sys::inherited::closed_standard_descriptors() & (1 << libc::STDERR_FILENO) != 0 {
        return Target::Discard; // it was closed: grace's log had nowhere to go
    }
    let Ok(stat) = fstat(libc::STDERR_FILENO) else {
        return Target::Discard;
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFSOCK {
        return Target::Socket;
    }
    if kind == SFlag::S_IFREG || kind == SFlag::S_IFBLK {
        return Target::File;
    }
    Target::Polled // until `reopen`
}

fn stderr() -> &'static Stderr {
    STDERR.get_or_init(std::io::stderr)
}

/// A new, non-blocking, close-on-exec description of what descriptor 2 refers to, if /proc/self/fd/2 can be
/// opened and is that very file (a /proc of another namespace, or none, must not give us something else).
/// O_NOCTTY: grace, a session leader as a container's PID 1, must not make the terminal its own.
fn reopen_non_blocking(device: libc::dev_t, inode: libc::ino_t) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/proc/self/fd/2")
        .ok()?;
    let reopened = fstat(file.as_raw_fd()).ok()?;
    (reopened.st_dev == device && reopened.st_ino == inode).then_some(file)
}
