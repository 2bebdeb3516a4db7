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
use std::io::{Stderr, Stdout};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
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

/// How a standard descriptor is written.
#[derive(Debug)]
enum Target {
    /// A pipe, FIFO or terminal, reopened through /proc/self/fd/N: a non-blocking description of grace's own
    /// (see [`reopened`]).
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

/// One of grace's standard descriptors, stdout or stderr, and how to write it without ever waiting.
#[derive(Debug)]
pub struct Descriptor {
    fd: RawFd,
    target: Target,
}

/// The reopened stdout and stderr, kept open for as long as grace runs, so that the loop can poll them; one
/// description per descriptor, shared by everything grace writes there.
static REOPENED_STDOUT: OnceLock<File> = OnceLock::new();
static REOPENED_STDERR: OnceLock<File> = OnceLock::new();
/// grace's handles on descriptors 1 and 2, kept for the same reason.
static STDOUT: OnceLock<Stdout> = OnceLock::new();
static STDERR: OnceLock<Stderr> = OnceLock::new();

fn reopened(fd: RawFd) -> &'static OnceLock<File> {
    if fd == libc::STDOUT_FILENO {
        &REOPENED_STDOUT
    } else {
        &REOPENED_STDERR
    }
}

/// Descriptor 1 or 2 itself, borrowed for as long as grace runs.
fn standard(fd: RawFd) -> BorrowedFd<'static> {
    if fd == libc::STDOUT_FILENO {
        STDOUT.get_or_init(std::io::stdout).as_fd()
    } else {
        STDERR.get_or_init(std::io::stderr).as_fd()
    }
}

impl Descriptor {
    /// Descriptor `fd` (1 or 2), without a description of its own yet (see [`Descriptor::reopen`]).
    pub fn standard(fd: RawFd) -> Descriptor {
        Descriptor {
            fd,
            target: target_for(fd),
        }
    }

    /// Gives a pipe, FIFO or terminal a non-blocking description of grace's own, opened through
    /// /proc/self/fd/N once per descriptor; otherwise it stays polled.
    pub fn reopen(&mut self) {
        if !matches!(self.target, Target::Polled) {
            return;
        }
        let slot = reopened(self.fd);
        if slot.get().is_none() {
            let Ok(stat) = fstat(self.fd) else {
                return;
            };
            if let Some(file) = reopen_non_blocking(self.fd, stat.st_dev, stat.st_ino) {
                let _ = slot.set(file);
            }
        }
        if slot.get().is_some() {
            self.target = Target::Reopened;
        }
    }

    /// Whether each write is one message: one line per write.
    fn is_datagram(&self) -> bool {
        matches!(self.target, Target::Datagram)
    }

    fn is_discarded(&self) -> bool {
        matches!(self.target, Target::Discard)
    }

    fn write(&self, bytes: &[u8]) -> nix::Result<usize> {
        match &self.target {
            Target::Reopened => match reopened(self.fd).get() {
                Some(file) => nix::unistd::write(file, bytes),
                None => Err(Errno::EBADF),
            },
            Target::Socket | Target::Datagram => nix::sys::socket::send(
                self.fd,
                bytes,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ),
            Target::File => nix::unistd::write(standard(self.fd), bytes),
            Target::Polled => {
                let mut fds = [PollFd::new(standard(self.fd), PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, PollTimeout::ZERO)? {
                    0 => Err(Errno::EAGAIN),
                    _ => nix::unistd::write(standard(self.fd), bytes),
                }
            }
            Target::Discard => Ok(bytes.len()),
        }
    }

    /// What to poll for POLLOUT to know when this descriptor takes more; `None` when nothing can tell (a
    /// file, a discarded descriptor).
    pub fn pollable(&self) -> Option<BorrowedFd<'static>> {
        match &self.target {
            Target::Reopened => reopened(self.fd).get().map(AsFd::as_fd),
            Target::Socket | Target::Datagram | Target::Polled => Some(standard(self.fd)),
            Target::File | Target::Discard => None,
        }
    }
}

/// A line waiting for its descriptor.
#[derive(Debug)]
struct Queued {
    /// The whole line, newline included, at most [`MAX_LINE_BYTES`] bytes.
    bytes: Vec<u8>,
    /// What the queue's owner keeps with the line, handed back when the line leaves the queue: for grace's
    /// log, how many dropped lines it reports (0 for any other line); for the services' output, whose it is.
    tag: u64,
}

/// Why a flush stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing waits.
    Empty,
    /// The descriptor takes no more now (EAGAIN, or a write of 0): poll says when it does.
    Full,
    /// An error that may pass (ENOSPC…): what waited was dropped but a begun line; poll cannot say when it
    /// has passed.
    Refused,
}

/// Whole lines waiting for a descriptor, written in batches of whole lines of at most [`PIPE_BUF`] bytes.
#[derive(Debug, Default)]
pub struct LineQueue {
    /// Whole lines, oldest first.
    pending: VecDeque<Queued>,
    /// How many bytes of the first pending line are out already: a terminal, a stream socket or a file that
    /// filled up took part of a write. The rest goes out before anything else, so that the line ends whole.
    begun: usize,
    /// Bytes in `pending`, for the bound.
    pending_bytes: usize,
    /// Where each write is put together; kept, so that a busy stream does not allocate one per write.
    batch: Vec<u8>,
}

impl LineQueue {
    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `bytes`, a whole line of at most [`MAX_LINE_BYTES`] bytes, newline included.
    pub fn push(&mut self, bytes: Vec<u8>, tag: u64) {
        self.pending_bytes += bytes.len();
        self.pending.push_back(Queued { bytes, tag });
    }

    /// Writes as much as `descriptor` accepts without waiting, whole lines at a time; each line that leaves
    /// the queue is handed to `removed` with its tag, its length and whether it was written (or dropped).
    /// Returns why it stopped, and whether anything was written.
    pub fn flush(
        &mut self,
        descriptor: &mut Descriptor,
        removed: &mut dyn FnMut(u64, usize, bool),
    ) -> (Stopped, bool) {
        let mut batch = std::mem::take(&mut self.batch);
        let stopped = self.flush_with(&mut batch, descriptor, removed);
        self.batch = batch;
        stopped
    }

    fn flush_with(
        &mut self,
        batch: &mut Vec<u8>,
        descriptor: &mut Descriptor,
        removed: &mut dyn FnMut(u64, usize, bool),
    ) -> (Stopped, bool) {
        let mut progressed = false;
        loop {
            self.next_batch(batch, descriptor.is_datagram());
            if batch.is_empty() {
                return (Stopped::Empty, progressed);
            }
            match descriptor.write(batch) {
                Ok(0) => return (Stopped::Full, progressed),
                Ok(written) => {
                    progressed = true;
                    self.written(written, descriptor.is_datagram(), removed);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return (Stopped::Full, progressed),
                Err(errno) if is_permanent(errno) => {
                    // EPIPE (the reader is gone), EBADF…: nothing will ever get through.
                    descriptor.target = Target::Discard;
                    while let Some(line) = self.pop_first() {
                        removed(line.tag, line.bytes.len(), false);
                    }
                    return (Stopped::Empty, progressed);
                }
                Err(_) if descriptor.is_datagram() => {
                    // One message refused (EMSGSIZE: larger than the socket takes): that line alone.
                    if let Some(line) = self.pop_first() {
                        removed(line.tag, line.bytes.len(), false);
                    }
                }
                Err(_) => {
                    // ENOSPC, EDQUOT, ENOBUFS…: what waited is dropped and counted, but a line begun stays,
                    // to end whole once writes succeed. Poll cannot tell when that is: the next line tries.
                    self.drop_all_but_begun(removed);
                    return (Stopped::Refused, progressed);
                }
            }
        }
    }

    /// Fills `batch` with the next write: the rest of a begun line, then whole lines, at most [`PIPE_BUF`]
    /// bytes in all; for a datagram socket, one line.
    fn next_batch(&self, batch: &mut Vec<u8>, datagram: bool) {
        batch.clear();
        let mut lines = self.pending.iter();
        let Some(first) = lines.next() else {
            return;
        };
        batch.extend_from_slice(first.bytes.get(self.begun..).unwrap_or_default());
        if datagram {
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
    fn written(
        &mut self,
        mut written: usize,
        datagram: bool,
        removed: &mut dyn FnMut(u64, usize, bool),
    ) {
        if datagram {
            // A message goes whole or not at all.
            if let Some(line) = self.pop_first() {
                removed(line.tag, line.bytes.len(), true);
            }
            return;
        }
        while let Some(first) = self.pending.front() {
            let rest = first.bytes.len().saturating_sub(self.begun);
            if written < rest {
                self.begun += written;
                return;
            }
            written -= rest;
            if let Some(line) = self.pop_first() {
                removed(line.tag, line.bytes.len(), true);
            }
        }
    }

    fn pop_first(&mut self) -> Option<Queued> {
        let first = self.pending.pop_front()?;
        self.pending_bytes = self.pending_bytes.saturating_sub(first.bytes.len());
        self.begun = 0;
        Some(first)
    }

    /// Drops every waiting line but a begun one.
    fn drop_all_but_begun(&mut self, removed: &mut dyn FnMut(u64, usize, bool)) {
        let keep = usize::from(self.begun > 0);
        while self.pending.len() > keep {
            if let Some(line) = self.pending.pop_back() {
                self.pending_bytes = self.pending_bytes.saturating_sub(line.bytes.len());
                removed(line.tag, line.bytes.len(), false);
            }
        }
    }
}

/// grace's own log: stderr and the lines waiting for it.
#[derive(Debug)]
pub struct Sink {
    descriptor: Descriptor,
    queue: LineQueue,
    /// Lines dropped since the last one that was accepted.
    dropped: u64,
    /// The last write failed with an error that may pass (ENOSPC…): poll cannot say when it has, so nothing
    /// waits for the descriptor; the next line tries again.
    refused: bool,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Opens the sink on descriptor 2, without a descriptor of its own yet (see [`reopen`]). Call once,
/// before anything is logged.
pub fn init() {
    let sink = Sink::new(Descriptor::standard(libc::STDERR_FILENO));
    *SINK.lock().unwrap_or_else(PoisonError::into_inner) = Some(sink);
}

/// Gives the sink its own non-blocking description of a pipe, FIFO or terminal. Separate from [`init`] and
/// called once grace holds the descriptors it cannot do without (the signalfd): under a descriptor limit as
/// tight as `ulimit -n 4`, the log then falls back to polling rather than taking the signalfd's place.
pub fn reopen() {
    with_sink(|sink| sink.descriptor.reopen());
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

/// When grace stops trying to write what is left and exits: [`EXIT_FLUSH`] after the first time this is
/// asked, so that whatever grace writes last (its log, the services' output) shares that one bound.
pub fn exit_deadline() -> Instant {
    static DEADLINE: OnceLock<Instant> = OnceLock::new();
    *DEADLINE.get_or_init(|| Instant::now() + EXIT_FLUSH)
}

/// Writes what is left until [`exit_deadline`] at most; grace is about to exit.
pub fn flush_before_exit() {
    let deadline = exit_deadline();
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
    fn new(descriptor: Descriptor) -> Sink {
        Sink {
            descriptor,
            queue: LineQueue::default(),
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
        self.queue.bytes() + bytes <= BUFFER_BYTES
    }

    /// Queues `line` (a whole line, newline included; cut to [`MAX_LINE_BYTES`]) and writes what the
    /// descriptor accepts; a line that does not fit is dropped and counted. `notice` (the report of the lines
    /// dropped so far) goes first when given; it resets the count.
    pub fn push(&mut self, notice: Option<&[u8]>, line: &[u8]) {
        if self.descriptor.is_discarded() {
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
            self.queue.push(notice.into_owned(), reports);
        }
        self.queue.push(line.into_owned(), 0);
        self.flush();
    }

    /// Writes as much as the descriptor accepts without waiting, whole lines at a time.
    pub fn flush(&mut self) {
        let dropped = &mut self.dropped;
        // A line that is dropped loses the log the lines it reports, or itself.
        let mut count_dropped = |reports: u64, _: usize, written: bool| {
            if !written {
                *dropped = dropped.saturating_add(reports.max(1));
            }
        };
        match self.queue.flush(&mut self.descriptor, &mut count_dropped) {
            (Stopped::Refused, _) => self.refused = true,
            (_, true) => self.refused = false,
            (_, false) => {}
        }
    }

    fn waiting_descriptor(&self) -> Option<BorrowedFd<'static>> {
        if self.queue.is_empty() || self.refused {
            return None;
        }
        self.descriptor.pollable()
    }
}

/// Decides how to write descriptor `fd` (1 or 2).
fn target_for(fd: RawFd) -> Target {
    if sys::inherited::closed_standard_descriptors() & (1 << fd) != 0 {
        return Target::Discard; // it was closed: what grace writes there has nowhere to go
    }
    let Ok(stat) = fstat(fd) else {
        return Target::Discard;
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFSOCK {
        return match nix::sys::socket::getsockopt(&standard(fd), sockopt::SockType) {
            Ok(SockType::Stream) | Err(_) => Target::Socket,
            Ok(_) => Target::Datagram,
        };
    }
    if kind == SFlag::S_IFREG || kind == SFlag::S_IFBLK {
        return Target::File;
    }
    Target::Polled // until `reopen`
}

/// A new, non-blocking, close-on-exec description of what descriptor `fd` refers to, if /proc/self/fd/N can
/// be opened and is that very file (a /proc of another namespace, or none, must not give us something else).
/// O_NOCTTY: grace, a session leader as a container's PID 1, must not make the terminal its own.
fn reopen_non_blocking(fd: RawFd, device: libc::dev_t, inode: libc::ino_t) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{fd}"))
        .ok()?;
    let reopened = fstat(file.as_raw_fd()).ok()?;
    (reopened.st_dev == device && reopened.st_ino == inode).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue that is never written: the tests drive its batches by hand.
    fn queue_with(lines: &[Vec<u8>]) -> LineQueue {
        let mut queue = LineQueue::default();
        for line in lines {
            queue.push(line.clone(), 0);
        }
        queue
    }

    fn ignore(_: u64, _: usize, _: bool) {}

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
        let mut queue = queue_with(&lines);
        let mut batch = Vec::new();
        let mut out = Vec::new();
        loop {
            queue.next_batch(&mut batch, false);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= PIPE_BUF, "{}", batch.len());
            assert_eq!(batch.last(), Some(&b'\n'));
            queue.written(batch.len(), false, &mut ignore);
            out.extend_from_slice(&batch);
        }
        assert_eq!(out, lines.concat());
        assert_eq!(queue.pending_bytes, 0);
    }

    #[test]
    fn a_partial_write_ends_its_line_before_anything_else() {
        let lines = lines_of_many_lengths();
        let mut queue = queue_with(&lines);
        let mut batch = Vec::new();
        let mut out = Vec::new();
        // A terminal or a stream socket that takes 1,000 bytes at a time, wherever they end.
        loop {
            queue.next_batch(&mut batch, false);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= PIPE_BUF);
            // The rest of a begun line first.
            assert!(batch.starts_with(&queue.pending[0].bytes[queue.begun..]));
            let taken = batch.len().min(1000);
            queue.written(taken, false, &mut ignore);
            out.extend_from_slice(&batch[..taken]);
        }
        assert_eq!(out, lines.concat());
    }

    #[test]
    fn a_datagram_carries_one_line() {
        let lines = lines_of_many_lengths();
        let mut queue = queue_with(&lines);
        let mut batch = Vec::new();
        for line in &lines {
            queue.next_batch(&mut batch, true);
            assert_eq!(&batch, line);
            queue.written(batch.len(), true, &mut ignore);
        }
        queue.next_batch(&mut batch, true);
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
        let mut queue = LineQueue::default();
        queue.push(b"begun line\n".to_vec(), 0);
        queue.push(b"5 log lines dropped\n".to_vec(), 5);
        queue.push(b"line\n".to_vec(), 0);
        let mut dropped = 2;
        let mut count = |reports: u64, _: usize, written: bool| {
            assert!(!written);
            dropped += reports.max(1);
        };
        queue.begun = 3;
        queue.drop_all_but_begun(&mut count);
        assert_eq!(queue.pending.len(), 1);
        assert_eq!(queue.pending_bytes, b"begun line\n".len());
        // Nothing begun: nothing kept.
        queue.begun = 0;
        queue.drop_all_but_begun(&mut count);
        assert_eq!(
            (queue.pending.len(), queue.pending_bytes, dropped),
            (0, 0, 9)
        );
    }
}
