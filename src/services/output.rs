//! The services' output told apart (`log = "prefix"`): grace reads a prefixed service's stdout and stderr
//! through pipes, in its own loop, and writes each line on the same stream as `NAME | line`, or with
//! `--log-format json` as one JSON object. A service left on `inherit` gets no pipe and no copy.
//!
//! Lines follow the rules of grace's own log ([`crate::log_sink`]): each write is whole lines of at most
//! PIPE_BUF bytes, so grace's lines, an inheriting service's and a prefixed service's never cut each other. A
//! longer line goes out in pieces that each fit, every piece prefixed, each after the first marked as a
//! continuation (`NAME + …`, `"continuation":true`). A partial line goes out after [`PARTIAL_WAIT`], and a
//! service's pipes are drained before its exit is logged.
//!
//! Back-pressure goes to the service, never to grace: each stream of each service may have [`STREAM_BUFFER`]
//! bytes waiting for grace's stdout or stderr; past that, grace stops reading its pipe and the service blocks
//! in write, as it would on a stalled stdout of its own. The pipes are non-blocking on grace's side only; the
//! service's end blocks as a normal stdout does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::table::Service;
use crate::cli::{LogFormat, ServiceLog};
use crate::log_sink::{self, Descriptor, LineQueue, Stopped, PIPE_BUF};

/// How long a line without its newline waits for the rest before what there is goes out.
pub const PARTIAL_WAIT: Duration = Duration::from_millis(100);

/// How much of one stream of one service may wait for grace's stdout or stderr; past it, grace stops reading
/// that pipe until the stream takes some.
pub const STREAM_BUFFER: usize = 64 * 1024;

/// The most one read takes from a pipe: one read per pipe per turn of the loop, so that a service writing
/// as fast as it can never holds up signals, reaping or the deadline.
const READ_BYTES: usize = 16 * 1024;

/// How many reads drain a pipe whose service exited: what a default pipe (64 KiB) holds, and one more. What
/// its daemons write after that comes in the loop, as before.
const DRAIN_READS: usize = 64 * 1024 / READ_BYTES + 1;

/// A name is shown with at most this many bytes, so that a prefix always leaves most of a write for the line.
const NAME_BYTES: usize = 64;

/// A service's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn fd(self) -> RawFd {
        match self {
            Stream::Stdout => libc::STDOUT_FILENO,
            Stream::Stderr => libc::STDERR_FILENO,
        }
    }
}

/// What a descriptor the loop polls stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// A service's pipe has output for grace.
    Read { service: usize, stream: Stream },
    /// grace's stdout or stderr takes more.
    Write(Stream),
}

/// Every prefixed service's pipes and lines, and grace's stdout and stderr, which they go to.
pub struct Output {
    json: bool,
    /// The longest prefixed name, in characters: every name is padded to it.
    width: usize,
    /// Index: the service; `None` for a service that inherits grace's stdout and stderr.
    captured: Vec<Option<Captured>>,
    stdout: Writer,
    stderr: Writer,
    /// Where reads land; allocated at the first.
    buffer: Vec<u8>,
}

/// A prefixed service.
struct Captured {
    /// Its name as shown: cut to [`NAME_BYTES`].
    name: String,
    /// Opened when it first starts, kept for every run after.
    pipes: Option<(Pipe, Pipe)>,
}

/// One stream of a prefixed service: a pipe, and the line being assembled from it.
struct Pipe {
    /// grace's end, non-blocking.
    read: OwnedFd,
    /// The service's end (a copy becomes its stdout or stderr at each start), blocking. Kept open by grace, so
    /// that the pipe never reads as closed: no end-of-file to watch, and a restart finds it as it was.
    write: OwnedFd,
    lines: Assembler,
    /// Bytes of this stream's lines waiting in its writer's queue.
    queued: usize,
}

/// grace's stdout or stderr, and the services' lines waiting for it.
struct Writer {
    stream: Stream,
    descriptor: Descriptor,
    queue: LineQueue,
    /// The last write failed with an error that may pass: nothing to poll for; the next lines try again.
    refused: bool,
    /// Lines dropped (an error that may pass, a reader gone) since it was last said.
    dropped: u64,
}

/// A line taking shape from what a pipe gives, in pieces that fit one write each.
#[derive(Debug, Default)]
struct Assembler {
    /// Bytes read after the last newline.
    partial: Vec<u8>,
    /// When the oldest of them was read.
    since: Option<Instant>,
    /// Part of the current line went out already: the next piece continues it.
    continued: bool,
}

/// How one service's lines are written.
struct Format<'a> {
    json: bool,
    name: &'a str,
    width: usize,
    stream: Stream,
    /// The time for JSON lines, taken once per batch.
    timestamp: Option<String>,
}

impl Output {
    /// The output of `services`: prefixed for those whose `log` (or, without one, `default`) says so.
    pub fn new(services: &[Service], default: ServiceLog, format: LogFormat) -> Output {
        let captured: Vec<Option<Captured>> = services
            .iter()
            .map(|service| {
                (service.log.unwrap_or(default) == ServiceLog::Prefix).then(|| Captured {
                    name: shown_name(&service.name),
                    pipes: None,
                })
            })
            .collect();
        let width = captured
            .iter()
            .flatten()
            .map(|captured| captured.name.chars().count())
            .max()
            .unwrap_or(0);
        let mut stdout = Writer::new(Stream::Stdout);
        let mut stderr = Writer::new(Stream::Stderr);
        if captured.iter().any(Option::is_some) {
            stdout.descriptor.reopen();
            stderr.descriptor.reopen();
        }
        Output {
            json: format == LogFormat::Json,
            width,
            captured,
            stdout,
            stderr,
            buffer: Vec::new(),
        }
    }

    /// Opens the pipes of `id`, if it is prefixed, the first time it starts.
    pub fn prepare(&mut self, id: usize) -> io::Result<()> {
        let Some(Some(captured)) = self.captured.get_mut(id) else {
            return Ok(());
        };
        if captured.pipes.is_none() {
            captured.pipes = Some((Pipe::open()?, Pipe::open()?));
        }
        Ok(())
    }

    /// The stdout and stderr `id`'s process gets: its pipes' write ends, or `None` to inherit grace's own.
    pub fn stdio(&self, id: usize) -> (Option<BorrowedFd<'_>>, Option<BorrowedFd<'_>>) {
        match self.pipes(id) {
            Some((stdout, stderr)) => (Some(stdout.write.as_fd()), Some(stderr.write.as_fd())),
            None => (None, None),
        }
    }

    /// Appends to `fds` what the loop should poll: the pipes with room left in their buffer (POLLIN), grace's
    /// stdout and stderr while lines wait for them (POLLOUT). Returns what each stands for, in order.
    pub fn watch<'a>(&'a self, fds: &mut Vec<(BorrowedFd<'a>, PollFlags)>) -> Vec<Watch> {
        let mut watches = Vec::new();
        for (service, captured) in self.captured.iter().enumerate() {
            let Some((stdout, stderr)) = captured.as_ref().and_then(|c| c.pipes.as_ref()) else {
                continue;
            };
            for (stream, pipe) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
                if pipe.queued < STREAM_BUFFER {
                    fds.push((pipe.read.as_fd(), PollFlags::POLLIN));
                    watches.push(Watch::Read { service, stream });
                }
            }
        }
        for (stream, writer) in [
            (Stream::Stdout, &self.stdout),
            (Stream::Stderr, &self.stderr),
        ] {
            if let Some(fd) = writer.waiting() {
                fds.push((fd, PollFlags::POLLOUT));
                watches.push(Watch::Write(stream));
            }
        }
        watches
    }

    /// Acts on what the poll found: one read from each pipe that has output, then writes what the streams
    /// take.
    pub fn on_ready(&mut self, ready: &[Watch], now: Instant) {
        if ready.is_empty() {
            return;
        }
        for watch in ready {
            if let Watch::Read { service, stream } = *watch {
                self.take_in(service, stream, 1, None, now);
            }
        }
        self.flush();
    }

    /// When the oldest partial line is due to go out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pipes_iter()
            .filter_map(|pipe| pipe.lines.since)
            .min()
            .map(|since| since + PARTIAL_WAIT)
    }

    /// Writes the partial lines that waited [`PARTIAL_WAIT`].
    pub fn on_time(&mut self, now: Instant) {
        let mut any = false;
        for service in 0..self.captured.len() {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let due = self
                    .pipe(service, stream)
                    .and_then(|pipe| pipe.lines.since)
                    .is_some_and(|since| now >= since + PARTIAL_WAIT);
                if due {
                    self.take_in(service, stream, 0, Some(false), now);
                    any = true;
                }
            }
        }
        if any {
            self.flush();
        }
    }

    /// Takes in what `id`'s pipes hold, its last partial lines included: its process has exited, and what it
    /// wrote goes before its exit in the log.
    pub fn drain(&mut self, id: usize, now: Instant) {
        if self.pipes(id).is_none() {
            return;
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.take_in(id, stream, DRAIN_READS, Some(true), now);
        }
        self.flush();
    }

    /// [`Output::drain`] for every service: grace is about to exit.
    pub fn drain_all(&mut self, now: Instant) {
        for id in 0..self.captured.len() {
            self.drain(id, now);
        }
    }

    /// Writes what is left, with grace's own log first, until [`log_sink::exit_deadline`] at most.
    pub fn write_out(&mut self) {
        if self.captured.iter().all(Option::is_none) {
            return;
        }
        let deadline = log_sink::exit_deadline();
        loop {
            log_sink::flush();
            self.flush();
            let mut fds: Vec<PollFd<'_>> = [
                log_sink::waiting_descriptor(),
                self.stdout.waiting(),
                self.stderr.waiting(),
            ]
            .into_iter()
            .flatten()
            .map(|fd| PollFd::new(fd, PollFlags::POLLOUT))
            .collect();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if fds.is_empty() || remaining.is_zero() {
                return;
            }
            let timeout =
                PollTimeout::try_from(remaining.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            if matches!(nix::poll::poll(&mut fds, timeout), Ok(0) | Err(_)) {
                return;
            }
        }
    }

    /// Up to `reads` reads from one pipe (fewer once it is empty), each turned into lines at once; then, with
    /// `end`, its partial line sent out as it is (`Some(true)`: its writer has exited).
    fn take_in(
        &mut self,
        service: usize,
        stream: Stream,
        reads: usize,
        end: Option<bool>,
        now: Instant,
    ) {
        let Output {
            json,
            width,
            captured,
            stdout,
            stderr,
            buffer,
        } = self;
        let Some(Some(captured)) = captured.get_mut(service) else {
            return;
        };
        let name = captured.name.as_str();
        let Some(pipe) = captured.pipes.as_mut().map(|pipes| match stream {
            Stream::Stdout => &mut pipes.0,
            Stream::Stderr => &mut pipes.1,
        }) else {
            return;
        };
        let queue = match stream {
            Stream::Stdout => &mut stdout.queue,
            Stream::Stderr => &mut stderr.queue,
        };
        let mut format = Format {
            json: *json,
            name,
            width: *width,
            stream,
            timestamp: None,
        };
        let before = queue.bytes();
        let tag = tag_of(service, stream);
        let mut push = |line| queue.push(line, tag);
        if reads > 0 {
            buffer.resize(READ_BYTES, 0);
        }
        for _ in 0..reads {
            let read = match nix::unistd::read(pipe.read.as_raw_fd(), buffer) {
                Ok(0) | Err(_) => break, // EAGAIN: empty (EINTR cannot happen: every signal is blocked)
                Ok(read) => read,
            };
            let bytes = buffer.get(..read).unwrap_or_default();
            pipe.lines.take(bytes, now, &mut format, &mut push);
        }
        if let Some(over) = end {
            pipe.lines.end_partial(over, &mut format, &mut push);
        }
        pipe.queued += queue.bytes().saturating_sub(before);
    }

    /// Writes what the streams take now, and says so if lines had to be dropped.
    fn flush(&mut self) {
        let Output {
            captured,
            stdout,
            stderr,
            ..
        } = self;
        for writer in [stdout, stderr] {
            writer.flush(captured);
        }
    }

    fn pipes(&self, id: usize) -> Option<&(Pipe, Pipe)> {
        self.captured.get(id)?.as_ref()?.pipes.as_ref()
    }

    fn pipe(&self, id: usize, stream: Stream) -> Option<&Pipe> {
        let (stdout, stderr) = self.pipes(id)?;
        Some(match stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
        })
    }

    fn pipes_iter(&self) -> impl Iterator<Item = &Pipe> {
        self.captured
            .iter()
            .flatten()
            .filter_map(|captured| captured.pipes.as_ref())
            .flat_map(|(stdout, stderr)| [stdout, stderr])
    }
}

/// What a queued line carries to say whose it is: the service and the stream.
fn tag_of(service: usize, stream: Stream) -> u64 {
    (service as u64) << 1 | u64::from(stream == Stream::Stderr)
}

/// `name`, cut to [`NAME_BYTES`] at a character.
fn shown_name(name: &str) -> String {
    let mut end = name.len().min(NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default().to_string()
}

impl Pipe {
    /// A pipe whose read end only is non-blocking; both ends close on exec (the service gets a copy of the
    /// write end as its stdout or stderr, which does not).
    fn open() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(Pipe {
            read,
            write,
            lines: Assembler::default(),
            queued: 0,
        })
    }
}

impl Writer {
    fn new(stream: Stream) -> Writer {
        Writer {
            stream,
            descriptor: Descriptor::standard(stream.fd()),
            queue: LineQueue::default(),
            refused: false,
            dropped: 0,
        }
    }

    /// Writes what the descriptor takes; each line that leaves frees its stream's buffer.
    fn flush(&mut self, captured: &mut [Option<Captured>]) {
        let dropped = &mut self.dropped;
        let mut removed = |tag: u64, bytes: usize, written: bool| {
            if !written {
                *dropped = dropped.saturating_add(1);
            }
            let service = usize::try_from(tag >> 1).unwrap_or(usize::MAX);
            let pipes = captured
                .get_mut(service)
                .and_then(Option::as_mut)
                .and_then(|captured| captured.pipes.as_mut());
            if let Some((stdout, stderr)) = pipes {
                let pipe = if tag & 1 == 0 { stdout } else { stderr };
                pipe.queued = pipe.queued.saturating_sub(bytes);
            }
        };
        match self.queue.flush(&mut self.descriptor, &mut removed) {
            (Stopped::Refused, _) => self.refused = true,
            (_, true) => self.refused = false,
            (_, false) => {}
        }
        if self.dropped > 0 {
            let count = std::mem::take(&mut self.dropped);
            let stream = self.stream.name();
            warn!(
                event = "output_dropped", stream = stream, count = count;
                "{count} {} of the services' output dropped: grace's {stream} did not take {}",
                if count == 1 { "line" } else { "lines" },
                if count == 1 { "it" } else { "them" }
            );
        }
    }

    /// The descriptor to poll for POLLOUT while lines wait for it.
    fn waiting(&self) -> Option<BorrowedFd<'static>> {
        if self.queue.is_empty() || self.refused {
            return None;
        }
        self.descriptor.pollable()
    }
}

impl Assembler {
    /// Takes `bytes` read at `now`: each whole line goes to `push` (in pieces if need be), and so does a line
    /// too long to wait; the rest waits for its newline.
    fn take(
        &mut self,
        bytes: &[u8],
        now: Instant,
        format: &mut Format<'_>,
        push: &mut dyn FnMut(Vec<u8>),
    ) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(newline) = self
            .partial
            .get(start..)
            .and_then(|rest| rest.iter().position(|&byte| byte == b'\n'))
        {
            let line = self.partial.get(start..start + newline).unwrap_or_default();
            pieces(line, self.continued, format, push);
            self.continued = false;
            start += newline + 1;
        }
        // A line that fills a write already: out it goes, in whole pieces, the rest waiting as usual.
        while self.partial.len().saturating_sub(start) >= PIPE_BUF {
            let rest = self.partial.get(start..).unwrap_or_default();
            start += piece(rest, self.continued, format, push);
            self.continued = true;
        }
        if start > 0 {
            self.partial.drain(..start.min(self.partial.len()));
            // What is left came in this read (no line ends in what waited before).
            self.since = None;
        }
        if self.partial.is_empty() {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// Sends what waits for its newline as it is. What follows continues it, unless `over`: the process that
    /// wrote it has exited, and whatever comes next (its next run) begins a line of its own.
    fn end_partial(&mut self, over: bool, format: &mut Format<'_>, push: &mut dyn FnMut(Vec<u8>)) {
        self.since = None;
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            pieces(&partial, self.continued, format, push);
            self.continued = true;
            self.partial = partial;
            self.partial.clear();
        }
        if over {
            self.continued = false;
        }
    }
}

/// Sends `line` (without its newline) in as many pieces as it takes; the first continues a line begun
/// earlier when `continued`.
fn pieces(line: &[u8], continued: bool, format: &mut Format<'_>, push: &mut dyn FnMut(Vec<u8>)) {
    if line.is_empty() && continued {
        return; // the newline of a line whose text went out already
    }
    let mut rest = line;
    let mut continuation = continued;
    loop {
        let taken = piece(rest, continuation, format, push);
        rest = rest.get(taken..).unwrap_or_default();
        continuation = true;
        if rest.is_empty() || taken == 0 {
            return;
        }
    }
}

/// Sends one piece: as much of `text` as fits in one write with its prefix; returns how many bytes it took.
fn piece(
    text: &[u8],
    continuation: bool,
    format: &mut Format<'_>,
    push: &mut dyn FnMut(Vec<u8>),
) -> usize {
    let mut line = Vec::with_capacity(PIPE_BUF.min(text.len() + 160));
    let taken = if format.json {
        let timestamp = format
            .timestamp
            .get_or_insert_with(|| crate::logging::utc_timestamp(SystemTime::now()));
        line.extend_from_slice(b"{\"ts\":\"");
        line.extend_from_slice(timestamp.as_bytes());
        line.extend_from_slice(b"\",\"event\":\"output\",\"service\":\"");
        escape_json(&mut line, format.name.as_bytes(), PIPE_BUF);
        line.extend_from_slice(b"\",\"stream\":\"");
        line.extend_from_slice(format.stream.name().as_bytes());
        line.extend_from_slice(b"\",\"msg\":\"");
        let end: &[u8] = if continuation {
            b"\",\"continuation\":true}\n"
        } else {
            b"\"}\n"
        };
        let room = PIPE_BUF.saturating_sub(line.len() + end.len());
        let taken = escape_json(&mut line, text, room);
        line.extend_from_slice(end);
        taken
    } else {
        line.extend_from_slice(format.name.as_bytes());
        let padding = format.width.saturating_sub(format.name.chars().count());
        line.resize(line.len() + padding, b' ');
        line.extend_from_slice(if continuation { b" + " } else { b" | " });
        let room = PIPE_BUF.saturating_sub(line.len() + 1);
        let taken = cut_point(text, room);
        line.extend_from_slice(text.get(..taken).unwrap_or_default());
        line.push(b'\n');
        taken
    };
    push(line);
    taken
}

/// How much of `text` fits in `room` bytes: all of it, or as much as ends at a UTF-8 character.
fn cut_point(text: &[u8], room: usize) -> usize {
    if text.len() <= room {
        return text.len();
    }
    // Back over at most three continuation bytes (0b10xx_xxxx) to the first byte of the character the room
    // ends in (0b11xx_xxxx); bytes that are not UTF-8 are cut where they fill the room.
    let continuation = |at: usize| text.get(at).is_some_and(|byte| byte & 0xC0 == 0x80);
    let mut start = room;
    while start > room.saturating_sub(3) && continuation(start) {
        start -= 1;
    }
    match text.get(start) {
        Some(lead) if start < room && lead & 0xC0 == 0xC0 => start,
        _ => room,
    }
}

/// Appends `text` to `out` as the inside of a JSON string while it fits in `room` bytes; bytes that are not
/// UTF-8 become U+FFFD, as everywhere in grace's log. Returns how many bytes of `text` it took.
fn escape_json(out: &mut Vec<u8>, text: &[u8], room: usize) -> usize {
    let limit = out.len() + room;
    let mut taken = 0;
    for chunk in text.utf8_chunks() {
        let mut valid = chunk.valid().as_bytes();
        while !valid.is_empty() {
            // What needs no escaping goes in one copy (the bytes of a character beyond ASCII never need it),
            // cut at a character when it does not all fit.
            let run = valid
                .iter()
                .position(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
                .unwrap_or(valid.len());
            let (plain, rest) = valid.split_at(run);
            let fits = cut_point(plain, limit.saturating_sub(out.len()));
            out.extend_from_slice(plain.get(..fits).unwrap_or_default());
            taken += fits;
            let Some((&byte, rest)) = rest.split_first().filter(|_| fits == run) else {
                if fits < run {
                    return taken;
                }
                break;
            };
            let hex = |digit: u8| {
                if digit < 10 {
                    b'0' + digit
                } else {
                    b'a' + digit - 10
                }
            };
            let escaped: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                control => &[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex(control >> 4),
                    hex(control & 0xF),
                ],
            };
            if out.len() + escaped.len() > limit {
                return taken;
            }
            out.extend_from_slice(escaped);
            taken += 1;
            valid = rest;
        }
        let invalid = chunk.invalid();
        if !invalid.is_empty() {
            const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
            if out.len() + REPLACEMENT.len() > limit {
                return taken;
            }
            out.extend_from_slice(REPLACEMENT);
            taken += invalid.len();
        }
    }
    taken
}

/// The integration tests' JSON parser, to check that every JSON line is valid.
#[cfg(test)]
#[path = "../../tests/common/json.rs"]
mod test_json;

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_json::Json;

    fn format(json: bool) -> Format<'static> {
        Format {
            json,
            name: "web",
            width: 8,
            stream: Stream::Stdout,
            timestamp: Some("1970-01-01T00:00:00.000Z".to_string()),
        }
    }

    /// The lines an assembler sends for `reads`, one after the other.
    fn lines(json: bool, reads: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut assembler = Assembler::default();
        let mut format = format(json);
        let mut out = Vec::new();
        for read in reads {
            assembler.take(read, Instant::now(), &mut format, &mut |line| {
                out.push(line)
            });
        }
        out
    }

    fn text(lines: &[Vec<u8>]) -> Vec<String> {
        lines
            .iter()
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }

    #[test]
    fn whole_lines_are_prefixed_with_the_padded_name_and_wait_for_their_newline() {
        let out = lines(false, &[b"hello\nwor", b"ld\n\nlast"]);
        assert_eq!(
            text(&out),
            ["web      | hello\n", "web      | world\n", "web      | \n"]
        );
        let out = lines(true, &[b"say \"hi\"\t\x1b[0m\n"]);
        assert_eq!(
            text(&out),
            ["{\"ts\":\"1970-01-01T00:00:00.000Z\",\"event\":\"output\",\"service\":\"web\",\"stream\":\"stdout\",\"msg\":\"say \\\"hi\\\"\\t\\u001b[0m\"}\n"]
        );
    }

    #[test]
    fn a_long_line_goes_out_in_pieces_that_each_fit_one_write_and_reassemble() {
        for json in [false, true] {
            let long: Vec<u8> = (0..100 * 1024)
                .map(|index| "0123456789é".as_bytes()[index % 12])
                .collect::<Vec<u8>>();
            let mut input = long.clone();
            input.extend_from_slice(b"\nnext\n");
            // In reads of every size, cut anywhere.
            let reads: Vec<&[u8]> = input.chunks(7919).collect();
            let out = lines(json, &reads);
            assert!(out.len() > 25, "{}", out.len());
            let mut whole = Vec::new();
            for (index, line) in out.iter().enumerate() {
                assert!(line.len() <= PIPE_BUF, "{}", line.len());
                assert!(line.ends_with(b"\n"));
                let (continuation, text) = if json {
                    let parsed = Json::parse(std::str::from_utf8(line).unwrap()).unwrap();
                    let Json::Object(fields) = parsed else {
                        panic!()
                    };
                    let get = |key: &str| {
                        fields
                            .iter()
                            .find(|(name, _)| name == key)
                            .map(|(_, value)| value.clone())
                    };
                    let Some(Json::String(msg)) = get("msg") else {
                        panic!()
                    };
                    (
                        get("continuation") == Some(Json::Bool(true)),
                        msg.into_bytes(),
                    )
                } else {
                    let text = &line[11..line.len() - 1];
                    (&line[8..11] == b" + ", text.to_vec())
                };
                // Only the first piece of each line starts it.
                assert_eq!(
                    continuation,
                    index != 0 && index != out.len() - 1,
                    "{index}"
                );
                if index < out.len() - 1 {
                    whole.extend_from_slice(&text);
                    // Every piece but the last of the long line fills its write, to a character.
                    if index < out.len() - 2 {
                        assert!(line.len() > PIPE_BUF - 8, "{}", line.len());
                    }
                }
            }
            assert_eq!(whole, long, "json: {json}");
            assert!(out
                .last()
                .unwrap()
                .ends_with(if json { b"\"next\"}\n" } else { b"| next\n" }));
        }
    }

    #[test]
    fn a_partial_line_goes_out_as_it_is_and_the_rest_continues_it() {
        let mut assembler = Assembler::default();
        let mut format = format(false);
        let mut out = Vec::new();
        let t0 = Instant::now();
        assembler.take(b"Password: ", t0, &mut format, &mut |line| out.push(line));
        assert!(out.is_empty());
        assert_eq!(assembler.since, Some(t0));
        assembler.take(b"x", t0 + PARTIAL_WAIT / 2, &mut format, &mut |line| {
            out.push(line)
        });
        assert_eq!(assembler.since, Some(t0), "the oldest byte sets the time");
        assembler.end_partial(false, &mut format, &mut |line| out.push(line));
        assert_eq!(assembler.since, None);
        assembler.take(b"yz\n", t0, &mut format, &mut |line| out.push(line));
        // A newline alone ends a line that went out already: nothing more to say.
        assembler.take(b"ok", t0, &mut format, &mut |line| out.push(line));
        assembler.end_partial(false, &mut format, &mut |line| out.push(line));
        assembler.take(b"\nnext\n", t0, &mut format, &mut |line| out.push(line));
        // Its writer exited: the next run's first line is a line of its own.
        assembler.take(b"last words", t0, &mut format, &mut |line| out.push(line));
        assembler.end_partial(true, &mut format, &mut |line| out.push(line));
        assembler.take(b"again\n", t0, &mut format, &mut |line| out.push(line));
        assert_eq!(
            text(&out),
            [
                "web      | Password: x\n",
                "web      + yz\n",
                "web      | ok\n",
                "web      | next\n",
                "web      | last words\n",
                "web      | again\n"
            ]
        );
    }

    #[test]
    fn any_bytes_make_valid_json_and_pass_through_text_as_they_are() {
        let binary: Vec<u8> = (0..=255u8).filter(|&byte| byte != b'\n').collect();
        let mut input = binary.clone();
        input.push(b'\n');
        let out = lines(false, &[&input]);
        assert_eq!(out, [[b"web      | ".as_slice(), &input].concat()]);
        let out = lines(true, &[&input]);
        let line = std::str::from_utf8(&out[0]).unwrap();
        let Json::Object(fields) = Json::parse(line).unwrap() else {
            panic!()
        };
        assert_eq!(
            fields.iter().find(|(name, _)| name == "msg").unwrap().1,
            Json::String(String::from_utf8_lossy(&binary).into_owned())
        );
    }

    #[test]
    fn cuts_fall_between_characters_where_there_are_characters() {
        assert_eq!(cut_point(b"abc", 3), 3);
        assert_eq!(cut_point("aé".as_bytes(), 2), 1);
        assert_eq!(cut_point("a€".as_bytes(), 3), 1);
        assert_eq!(cut_point(&[b'a', 0x80, 0x80, 0x80, 0x80, 0x80], 5), 5);
        assert_eq!(cut_point("é".as_bytes(), 1), 0);
        let mut out = Vec::new();
        // A character that does not fit whole stays for the next piece: \u0001 takes 6 bytes.
        assert_eq!(escape_json(&mut out, "aé\u{1}".as_bytes(), 5), 3);
        assert_eq!(escape_json(&mut out, b"\xff\xfe", 3), 1);
        assert_eq!(String::from_utf8(out).unwrap(), "aé\u{fffd}");
    }

    #[test]
    fn names_are_shown_cut_at_a_character() {
        assert_eq!(shown_name("web"), "web");
        let long = "é".repeat(40);
        assert_eq!(shown_name(&long), "é".repeat(32));
        assert_eq!(tag_of(3, Stream::Stderr), 7);
    }
}
