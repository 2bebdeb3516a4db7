//! Where grace's log lines go: stderr, without ever waiting for it, and without ever cutting a line. A log
//! reader that stalls (a log shipper that hangs, a runtime under disk pressure, a child that filled the pipe)
//! must not stop grace from forwarding, reaping and killing at the deadline.
//!
//! Lines wait, whole, in a bounded queue and go out as the descriptor accepts them: right away when it can,
//! later when the supervisor's poll says it is writable. Each write is one or more whole lines of at most
//! [`PIPE_BUF`] bytes in all: on a pipe or FIFO the kernel then writes all of it or nothing, so the child's
//! lines, written to the same pipe, can never land inside grace's; on a datagram socket each line is one
//! datagram. A line is at most [`MAX_LINE_BYTES`] bytes (the formatter shortens longer ones).
//!
//! When the queue is full, lines are dropped and counted; the count goes out as a line of its own, where the
//! gap is, before the next line that fits. An error that may pass (a full filesystem, a quota, no buffer
//! memory, one datagram too large) drops and counts what waited, and the next line tries again; only an
//! error that cannot pass (the reader is gone: EPIPE, a closed descriptor) silences the log. At exit grace
//! tries for [`EXIT_FLUSH`] to write what is left, and exits anyway.
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
use nix::sys::socket::{sockopt, MsgFlags, SockType};
use nix::sys::stat::{fstat, SFlag};

use crate::sys;

/// How much log output may wait for a stalled reader: a few hundred lines. Memory stays bounded, and a
/// reader that comes back gets the latest lines, not an unbounded backlog.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// The most one write carries: Linux's PIPE_BUF (the same on every architecture), the most a pipe or FIFO
/// takes in one piece, never interleaved with another writer's data.
pub const PIPE_BUF: usize = 4096;

/// The longest line, newline included: one write, so one atomic write to a pipe and one datagram (a Unix
/// datagram socket takes at least 4,576 bytes whatever its SO_SNDBUF).
pub const MAX_LINE_BYTES: usize = PIPE_BUF;

/// How long grace tries to write what is left of its log before it exits anyway.
pub const EXIT_FLUSH: Duration = Duration::from_millis(250);

/// How stderr is written.
#[derive(Debug)]
enum Target {
    /// A pipe, FIFO or terminal, reopened through /proc/self/fd/2: a non-blocking description of grace's own
    /// (in [`REOPENED`]).
    Reopened,
    /// A stream socket: each write is `send(MSG_DONTWAIT)`, which leaves the shared description as it is.
    Socket,
    /// A datagram or sequenced-packet socket, written as [`Target::Socket`], one line per send: a reader
    /// gets one line per message.
    Datagram,
    /// A regular file or a block device, which never waits for a reader: written directly.
    File,
    /// A pipe or terminal that could not be reopened (no /proc): written only when poll says it has room.
    /// A child writing to it in the same instant can take that room first; then, and only then, a write waits.
    Polled,
    /// Closed, or its reader is gone for good (EPIPE): lines are discarded.
    Discard,
}

/// A line waiting for stderr.
#[derive(Debug)]
struct Queued {
    /// The whole line, newline included, at most [`MAX_LINE_BYTES`] bytes.
    bytes: Vec<u8>,
    /// For the line that reports dropped lines, how many it reports; 0 for any other line.
    reports: u64,
}

impl Queued {
    /// How many lines the log loses if this one is dropped: the ones it reports, or itself.
    fn lost_if_dropped(&self) -> u64 {
        self.reports.max(1)
    }
}

/// The sink: a target and the lines waiting for it.
#[derive(Debug)]
pub struct Sink {
    target: Target,
    /// Whole lines, oldest first.
    pending: VecDeque<Queued>,
    /// How many bytes of the first pending line are out already: a terminal, a stream socket or a file that
    /// filled up took part of a write. The rest goes out before anything else, so that the line ends whole.
    begun: usize,
    /// Bytes in `pending`, for the bound.
    pending_bytes: usize,
    /// Lines dropped since the last one that was accepted.
    dropped: u64,
    /// The last write failed with an error that may pass (ENOSPC…): poll cannot say when it has, so nothing
    /// waits for the descriptor; the next line tries again.
    refused: bool,
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

/// `line` cut to [`MAX_LINE_BYTES`] bytes, at a character boundary, ending in `…` and a newline: the
/// formatter keeps grace's lines shorter than that, so this only guards the invariant.
fn cut_to_max_line(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const MARK: &[u8] = "…\n".as_bytes();
    if line.len() <= MAX_LINE_BYTES {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut end = MAX_LINE_BYTES - MARK.len();
    // Back to the first byte of a character: a continuation byte is 0b10xx_xxxx.
    while end > 0 && line.get(end).is_some_and(|byte| byte & 0xC0 == 0x80) {
        end -= 1;
    }
    let mut cut = line.get(..end).unwrap_or_default().to_vec();
    cut.extend_from_slice(MARK);
    std::borrow::Cow::Owned(cut)
}

/// Whether a write that failed with `errno` can never succeed on this descriptor: the reader is gone (a
/// pipe's, a connection's), or the descriptor cannot be written at all. Anything else may pass (ENOSPC,
/// EDQUOT, EFBIG, ENOBUFS, ENOMEM, EMSGSIZE for one datagram, EIO), and costs one failed write per line
/// until it does.
fn is_permanent(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::EPIPE
            | Errno::EBADF
            | Errno::EINVAL
            | Errno::ENOTCONN
            | Errno::ECONNRESET
            | Errno::EDESTADDRREQ
            | Errno::ENOTSOCK
            | Errno::EOPNOTSUPP
    )
}

impl Sink {
    fn new(target: Target) -> Sink {
        Sink {
            target,
            pending: VecDeque::new(),
            begun: 0,
            pending_bytes: 0,
            dropped: 0,
            refused: false,
        }
    }

    /// How many lines were dropped since the last accepted one.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether `bytes` more would fit in the buffer.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.pending_bytes + bytes <= BUFFER_BYTES
    }

    /// Queues `line` (a whole line, newline included; cut to [`MAX_LINE_BYTES`]) and writes what the
    /// descriptor accepts; a line that does not fit is dropped and counted. `notice` (the report of the lines
    /// dropped so far) goes first when given; it resets the count.
    pub fn push(&mut self, notice: Option<&[u8]>, line: &[u8]) {
        if matches!(self.target, Target::Discard) {
            return;
        }
        let line = cut_to_max_line(line);
        let notice = notice.map(cut_to_max_line);
        let notice_bytes = notice.as_ref().map_or(0, |notice| notice.len());
        if !self.has_room(notice_bytes + line.len()) {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        if let Some(notice) = notice {
            let reports = std::mem::take(&mut self.dropped);
            self.queue(notice.into_owned(), reports);
        }
        self.queue(line.into_owned(), 0);
        self.flush();
    }

    fn queue(&mut self, bytes: Vec<u8>, reports: u64) {
        self.pending_bytes += bytes.len();
        self.pending.push_back(Queued { bytes, reports });
    }

    /// Writes as much as the descriptor accepts without waiting, whole lines at a time.
    pub fn flush(&mut self) {
        let mut batch = Vec::new();
        loop {
            self.next_batch(&mut batch);
            if batch.is_empty() {
                return;
            }
            match self.write(&batch) {
                Ok(0) => return,
                Ok(written) => {
                    self.refused = false;
                    self.written(written);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(errno) if is_permanent(errno) => {
                    // EPIPE (the reader is gone), EBADF…: nothing will ever get through.
                    self.target = Target::Discard;
                    self.pending = VecDeque::new();
                    self.pending_bytes = 0;
                    self.begun = 0;
                    return;
                }
                Err(_) if matches!(self.target, Target::Datagram) => {
                    // One message refused (EMSGSIZE: larger than the socket takes): that line alone.
                    self.drop_first();
                }
                Err(_) => {
                    // ENOSPC, EDQUOT, ENOBUFS…: what waited is dropped and counted, but a line begun stays,
                    // to end whole once writes succeed. Poll cannot tell when that is: the next line tries.
                    self.refused = true;
                    self.drop_all_but_begun();
                    return;
                }
            }
        }
    }

    /// Fills `batch` with the next write: the rest of a begun line, then whole lines, at most [`PIPE_BUF`]
    /// bytes in all; for a datagram socket, one line.
    fn next_batch(&self, batch: &mut Vec<u8>) {
        batch.clear();
        let mut lines = self.pending.iter();
        let Some(first) = lines.next() else {
            return;
        };
        batch.extend_from_slice(first.bytes.get(self.begun..).unwrap_or_default());
        if matches!(self.target, Target::Datagram) {
            return;
        }
        for line in lines {
            if batch.len() + line.bytes.len() > PIPE_BUF {
                return;
            }
            batch.extend_from_slice(&line.bytes);
        }
    }

    /// Takes the `written` bytes of the last batch off the queue.
    fn written(&mut self, mut written: usize) {
        if matches!(self.target, Target::Datagram) {
            // A message goes whole or not at all.
            self.pop_first();
            return;
        }
        while let Some(first) = self.pending.front() {
            let rest = first.bytes.len().saturating_sub(self.begun);
            if written < rest {
                self.begun += written;
                return;
            }
            written -= rest;
            self.pop_first();
        }
    }

    fn pop_first(&mut self) -> Option<Queued> {
        let first = self.pending.pop_front()?;
        self.pending_bytes = self.pending_bytes.saturating_sub(first.bytes.len());
        self.begun = 0;
        Some(first)
    }

    /// Drops and counts every waiting line but a begun one.
    fn drop_all_but_begun(&mut self) {
        let keep = usize::from(self.begun > 0);
        while self.pending.len() > keep {
            if let Some(line) = self.pending.pop_back() {
                self.pending_bytes = self.pending_bytes.saturating_sub(line.bytes.len());
                self.dropped = self.dropped.saturating_add(line.lost_if_dropped());
            }
        }
    }

    fn drop_first(&mut self) {
        if let Some(line) = self.pop_first() {
            self.dropped = self.dropped.saturating_add(line.lost_if_dropped());
        }
    }

    fn write(&self, bytes: &[u8]) -> nix::Result<usize> {
        match &self.target {
            Target::Reopened => match REOPENED.get() {
                Some(file) => nix::unistd::write(file, bytes),
                None => Err(Errno::EBADF),
            },
            Target::Socket | Target::Datagram => nix::sys::socket::send(
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
        if self.pending.is_empty() || self.refused {
            return None;
        }
        match &self.target {
            Target::Reopened => REOPENED.get().map(AsFd::as_fd),
            Target::Socket | Target::Datagram | Target::Polled => Some(stderr().as_fd()),
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
        return match nix::sys::socket::getsockopt(&stderr().as_fd(), sockopt::SockType) {
            Ok(SockType::Stream) | Err(_) => Target::Socket,
            Ok(_) => Target::Datagram,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that is never written: the tests drive its batches by hand.
    fn sink_with(target: Target, lines: &[Vec<u8>]) -> Sink {
        let mut sink = Sink::new(target);
        for line in lines {
            sink.queue(line.clone(), 0);
        }
        sink
    }

    /// Lines of lengths from 1 byte to [`MAX_LINE_BYTES`], each ending in a newline.
    fn lines_of_many_lengths() -> Vec<Vec<u8>> {
        [
            1,
            80,
            4000,
            MAX_LINE_BYTES,
            2,
            300,
            3000,
            1500,
            96,
            MAX_LINE_BYTES - 1,
            700,
        ]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
        .map(|(index, &length)| {
            let mut line = vec![b'a' + (index % 26) as u8; length - 1];
            line.push(b'\n');
            line
        })
        .collect()
    }

    #[test]
    fn every_write_is_whole_lines_of_at_most_pipe_buf() {
        let lines = lines_of_many_lengths();
        let mut sink = sink_with(Target::File, &lines);
        let mut batch = Vec::new();
        let mut out = Vec::new();
        loop {
            sink.next_batch(&mut batch);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= PIPE_BUF, "{}", batch.len());
            assert_eq!(batch.last(), Some(&b'\n'));
            sink.written(batch.len());
            out.extend_from_slice(&batch);
        }
        assert_eq!(out, lines.concat());
        assert_eq!(sink.pending_bytes, 0);
    }

    #[test]
    fn a_partial_write_ends_its_line_before_anything_else() {
        let lines = lines_of_many_lengths();
        let mut sink = sink_with(Target::Socket, &lines);
        let mut batch = Vec::new();
        let mut out = Vec::new();
        // A terminal or a stream socket that takes 1,000 bytes at a time, wherever they end.
        loop {
            sink.next_batch(&mut batch);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= PIPE_BUF);
            // The rest of a begun line first.
            assert!(batch.starts_with(&sink.pending[0].bytes[sink.begun..]));
            let taken = batch.len().min(1000);
            sink.written(taken);
            out.extend_from_slice(&batch[..taken]);
        }
        assert_eq!(out, lines.concat());
    }

    #[test]
    fn a_datagram_carries_one_line() {
        let lines = lines_of_many_lengths();
        let mut sink = sink_with(Target::Datagram, &lines);
        let mut batch = Vec::new();
        for line in &lines {
            sink.next_batch(&mut batch);
            assert_eq!(&batch, line);
            sink.written(batch.len());
        }
        sink.next_batch(&mut batch);
        assert!(batch.is_empty());
    }

    #[test]
    fn a_line_over_line_max_is_cut_to_one_line_at_a_character() {
        let long = "é".repeat(3000) + "\n";
        let cut = cut_to_max_line(long.as_bytes());
        assert!(cut.len() <= MAX_LINE_BYTES, "{}", cut.len());
        let text = std::str::from_utf8(&cut).unwrap();
        assert!(text.ends_with("é…\n"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1);
        let short = b"short\n";
        assert_eq!(&*cut_to_max_line(short), short);
    }

    #[test]
    fn a_refusal_drops_what_waits_but_a_begun_line_and_counts_what_a_notice_reported() {
        let mut sink = Sink::new(Target::File);
        sink.queue(b"begun line\n".to_vec(), 0);
        sink.queue(b"5 log lines dropped\n".to_vec(), 5);
        sink.queue(b"line\n".to_vec(), 0);
        sink.dropped = 2;
        sink.begun = 3;
        sink.drop_all_but_begun();
        assert_eq!(sink.pending.len(), 1);
        assert_eq!(sink.pending_bytes, b"begun line\n".len());
        assert_eq!(sink.dropped, 2 + 5 + 1);
        // Nothing begun: nothing kept.
        sink.begun = 0;
        sink.drop_all_but_begun();
        assert_eq!(
            (sink.pending.len(), sink.pending_bytes, sink.dropped),
            (0, 0, 9)
        );
    }
}
