//! Signals: names and numbers, the rewrite map, and the signal source (every signal blocked, read from one
//! signalfd, waited for with an optional deadline).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;

use crate::sys;

/// The kernel's first real-time signal. musl's `SIGRTMIN()` says 35 and glibc's 34 because each libc keeps
/// some for itself; names here follow the kernel, so a musl and a glibc build read `RTMIN+3` alike.
const KERNEL_SIGRTMIN: i32 = 34;
/// The kernel's last signal.
const KERNEL_SIGRTMAX: i32 = 64;

/// A signal number between 1 and 64, as the kernel numbers them on Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

impl Signal {
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const INT: Signal = Signal(libc::SIGINT);
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const CHLD: Signal = Signal(libc::SIGCHLD);
    pub const CONT: Signal = Signal(libc::SIGCONT);
    pub const STOP: Signal = Signal(libc::SIGSTOP);

    /// The signal with kernel number `number`, if there is one.
    pub fn from_number(number: i32) -> Option<Signal> {
        (1..=KERNEL_SIGRTMAX)
            .contains(&number)
            .then_some(Signal(number))
    }

    /// The kernel's number for this signal.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Whether a process can catch, block or ignore it (everything but SIGKILL and SIGSTOP).
    pub fn is_catchable(self) -> bool {
        self != Signal::KILL && self != Signal::STOP
    }

    /// What the kernel does with it to a process that neither handles, blocks nor ignores it.
    pub fn default_action(self) -> DefaultAction {
        match self.0 {
            libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH => DefaultAction::Ignore,
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => DefaultAction::Stop,
            libc::SIGCONT => DefaultAction::Continue,
            _ => DefaultAction::Terminate,
        }
    }
}

/// The default action of a signal (signal(7)); a core dump counts as terminating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    Terminate,
    Ignore,
    Stop,
    Continue,
}

impl DefaultAction {
    /// How a stop signal forwarded as a signal with this default action fares with a process that does not
    /// handle it; `None` when it ends it.
    pub fn as_a_stop(self) -> Option<&'static str> {
        match self {
            DefaultAction::Terminate => None,
            DefaultAction::Ignore => Some("which by default a process ignores"),
            DefaultAction::Stop => Some(
                "which by default stops a process (and grace's SIGCONT right after continues it)",
            ),
            DefaultAction::Continue => Some("which by default only continues a process"),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = self.0;
        if number >= KERNEL_SIGRTMIN {
            // Name each real-time signal from the nearer end, as kill -l does.
            let from_min = number - KERNEL_SIGRTMIN;
            let from_max = KERNEL_SIGRTMAX - number;
            return match (from_min, from_max) {
                (0, _) => f.write_str("SIGRTMIN"),
                (_, 0) => f.write_str("SIGRTMAX"),
                _ if from_min <= from_max => write!(f, "SIGRTMIN+{from_min}"),
                _ => write!(f, "SIGRTMAX-{from_max}"),
            };
        }
        match nix::sys::signal::Signal::try_from(number) {
            Ok(named) => f.write_str(named.as_str()),
            Err(_) => write!(f, "signal {number}"), // 32 and 33: no name, reserved by libcs
        }
    }
}

/// Why a signal could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseSignalError(String);

impl fmt::Display for ParseSignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseSignalError {}

impl FromStr for Signal {
    type Err = ParseSignalError;

    /// Accepts `TERM`, `SIGTERM`, `term`, `RTMIN`, `RTMIN+3`, `SIGRTMAX-2`, or a number from 1 to 64.
    fn from_str(text: &str) -> Result<Signal, ParseSignalError> {
        let unknown = || {
            ParseSignalError(format!(
                "unknown signal '{text}' (use a name such as TERM or a number 1-64)"
            ))
        };
        if text.bytes().all(|byte| byte.is_ascii_digit()) && !text.is_empty() {
            let number: i32 = text.parse().map_err(|_| unknown())?;
            return Signal::from_number(number).ok_or_else(|| {
                ParseSignalError(format!("signal number {number} is out of range 1-64"))
            });
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(offset) = name.strip_prefix("RTMIN") {
            return real_time_signal(KERNEL_SIGRTMIN, offset, 1).ok_or_else(unknown);
        }
        if let Some(offset) = name.strip_prefix("RTMAX") {
            return real_time_signal(KERNEL_SIGRTMAX, offset, -1).ok_or_else(unknown);
        }
        let alias = match name {
            "IOT" => Some(libc::SIGABRT),
            "POLL" => Some(libc::SIGIO),
            "CLD" => Some(libc::SIGCHLD),
            "UNUSED" => Some(libc::SIGSYS),
            _ => None,
        };
        if let Some(number) = alias {
            return Ok(Signal(number));
        }
        nix::sys::signal::Signal::from_str(&format!("SIG{name}"))
            .map(|named| Signal(named as i32))
            .map_err(|_| unknown())
    }
}

/// `RTMIN`, `RTMIN+N` or `RTMAX-N`: `offset` is what follows the base name, `direction` the sign it must have.
fn real_time_signal(base: i32, offset: &str, direction: i32) -> Option<Signal> {
    if offset.is_empty() {
        return Some(Signal(base));
    }
    let digits = offset.strip_prefix(if direction > 0 { '+' } else { '-' })?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let step: i32 = digits.parse().ok()?;
    let number = base.checked_add(step.checked_mul(direction)?)?;
    (KERNEL_SIGRTMIN..=KERNEL_SIGRTMAX)
        .contains(&number)
        .then_some(Signal(number))
}

/// What a received signal becomes before it is forwarded (`--rewrite FROM:TO`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewriteMap {
    /// Index: received signal number; value: the signal to forward, or `None` to drop it.
    targets: [Option<Signal>; KERNEL_SIGRTMAX as usize + 1],
}

impl Default for RewriteMap {
    fn default() -> RewriteMap {
        let mut targets = [None; KERNEL_SIGRTMAX as usize + 1];
        for (number, target) in targets.iter_mut().enumerate().skip(1) {
            *target = Some(Signal(number as i32));
        }
        RewriteMap { targets }
    }
}

impl RewriteMap {
    /// Forward `from` as `to` from now on; `None` drops it.
    pub fn set(&mut self, from: Signal, to: Option<Signal>) {
        if let Some(target) = self.targets.get_mut(from.0 as usize) {
            *target = to;
        }
    }

    /// The signal to forward when `received` arrives, or `None` to drop it.
    pub fn apply(&self, received: Signal) -> Option<Signal> {
        self.targets.get(received.0 as usize).copied().flatten()
    }
}

/// One signal read from the signalfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub signal: Signal,
    /// The sender's pid as seen from grace's PID namespace; 0 when sent from outside it or by the kernel.
    pub sender_pid: i32,
}

/// Tells a signal grace raised itself (SIGPIPE from a log write to a closed stderr: nobody else's business)
/// from one sent from grace's own pid before its exec, by the process that became grace, and pending since
/// (the child's, as with tini). Both come with grace's pid as the sender.
#[derive(Debug)]
pub struct OwnSignals {
    own_pid: i32,
    /// Signals pending at exec that have not been read yet.
    pending_at_exec: sys::SignalMask,
}

impl OwnSignals {
    pub fn new() -> OwnSignals {
        OwnSignals {
            own_pid: std::process::id() as i32,
            pending_at_exec: sys::inherited::pending_at_exec(),
        }
    }

    /// Whether `received` is one grace raised itself. The first of each signal read is the one pending at
    /// exec, if one was: a pending signal is queued before any sent later (and a standard one coalesces with
    /// them).
    pub fn raised_by_grace(&mut self, received: Received) -> bool {
        let bit = 1 << (received.signal.number() - 1);
        let was_pending_at_exec = self.pending_at_exec & bit != 0;
        self.pending_at_exec &= !bit;
        received.sender_pid == self.own_pid && !was_pending_at_exec
    }
}

/// Every signal blocked and readable from one descriptor: no handlers, no races, and a signal that arrives
/// at any moment (even before the child exists) waits in the queue until it is read.
pub struct SignalSource {
    fd: OwnedFd,
    /// The mask grace was started with, which the child must get back before it execs.
    inherited_mask: sys::SignalMask,
    /// Where reads land; allocated once, so a wake-up does not clear 8 KiB of stack first.
    buffer: Box<[u8; SIGINFO_BYTES * SIGINFOS_PER_READ]>,
}

/// The size of one `struct signalfd_siginfo`.
const SIGINFO_BYTES: usize = 128;
/// How many signals one read takes at most; a flood is drained in few system calls.
const SIGINFOS_PER_READ: usize = 64;

impl SignalSource {
    /// Blocks every signal (fault signals included: a real fault still kills grace, while a SIGSEGV sent
    /// with kill() is read here and forwarded) and opens the signalfd.
    pub fn block_all() -> io::Result<SignalSource> {
        // Blocked before `main` already (see sys::inherited), which recorded the mask grace was started with.
        let previous = sys::set_signal_mask(sys::ALL_SIGNALS)?;
        let inherited_mask = sys::inherited::signal_mask().unwrap_or(previous);
        let fd = sys::open_signalfd(sys::ALL_SIGNALS)?;
        let mut source = SignalSource {
            fd,
            inherited_mask,
            buffer: Box::new([0; SIGINFO_BYTES * SIGINFOS_PER_READ]),
        };
        source.after_fork();
        Ok(source)
    }

    /// Writes the read buffer, so that the read delivering the next signal finds its pages writable. Fresh
    /// from the allocator they are not in memory, and after a fork every page grace wrote is write-protected
    /// until it writes it again (copy-on-write): either way the kernel would take a page fault inside that
    /// read, on the path of a forward (measured with `perf trace -F all`). Called after each start of a
    /// process. Not with zeros, which the compiler may know are there already.
    pub fn after_fork(&mut self) {
        self.buffer.fill(u8::MAX);
    }

    /// The signal mask grace inherited.
    pub fn inherited_mask(&self) -> sys::SignalMask {
        self.inherited_mask
    }

    /// Waits for signals until `deadline` (`None`: for ever, with no wake-ups), or until `writable` (the log's
    /// descriptor, while lines wait for it) can take output, and reads the signals pending, up to
    /// [`SIGINFOS_PER_READ`] of them, into `into` (cleared first); empty when the deadline passed or the log
    /// became writable first.
    ///
    /// Idle, this is one blocking `read`: one system call per wake-up, as few as an init can make. With a
    /// deadline, `ppoll` waits with nanosecond precision (poll's milliseconds would make escalation up to
    /// 1 ms late), and the read that follows finds signals ready.
    pub fn next_signals(
        &mut self,
        deadline: Option<Instant>,
        writable: Option<BorrowedFd<'_>>,
        into: &mut Vec<Received>,
    ) -> io::Result<()> {
        into.clear();
        if deadline.is_some() || writable.is_some() {
            let timeout =
                deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if !self.ready_within(timeout, writable)? {
                return Ok(());
            }
        }
        self.read_signals(into)
    }

    /// [`SignalSource::next_signals`], also waking when one of `watched` is ready for its events: with
    /// several services, their sd_notify sockets and output pipes (POLLIN), grace's stdout and stderr while
    /// their output waits (POLLOUT). The indexes of those that are ready (or failed) are put in `readable`.
    pub fn next_events(
        &mut self,
        deadline: Option<Instant>,
        writable: Option<BorrowedFd<'_>>,
        watched: &[(BorrowedFd<'_>, PollFlags)],
        readable: &mut Vec<usize>,
        into: &mut Vec<Received>,
    ) -> io::Result<()> {
        readable.clear();
        if watched.is_empty() {
            return self.next_signals(deadline, writable, into);
        }
        into.clear();
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let mut fds = Vec::with_capacity(watched.len() + 2);
        fds.push(PollFd::new(self.fd.as_fd(), PollFlags::POLLIN));
        if let Some(writable) = writable {
            fds.push(PollFd::new(writable, PollFlags::POLLOUT));
        }
        let first_watched = fds.len();
        fds.extend(watched.iter().map(|(fd, events)| PollFd::new(*fd, *events)));
        let signalled = match nix::poll::ppoll(&mut fds, timeout.map(TimeSpec::from_duration), None)
        {
            Ok(_) => fds
                .first()
                .and_then(|signals| signals.revents())
                .is_some_and(|events| events.contains(PollFlags::POLLIN)),
            Err(nix::errno::Errno::EINTR) => false,
            Err(errno) => return Err(errno.into()),
        };
        let watched_events = fds.get(first_watched..).unwrap_or_default();
        readable.extend(
            watched_events
                .iter()
                .enumerate()
                .filter(|(_, fd)| fd.revents().is_some_and(|events| !events.is_empty()))
                .map(|(index, _)| index),
        );
        if !signalled {
            return Ok(());
        }
        self.read_signals(into)
    }

    /// One read of whatever signals are pending (the descriptor is known to be readable, or may block).
    fn read_signals(&mut self, into: &mut Vec<Received>) -> io::Result<()> {
        // One read per call, at most SIGINFOS_PER_READ signals: under a flood the caller acts on each batch,
        // so a stop signal among 100,000 others is handled at once rather than after the whole queue has
        // been drained (the kernel's dequeue of a long real-time queue takes seconds), and memory stays
        // bounded. Whatever is left keeps the descriptor readable: the next call reads it without waiting.
        let read = loop {
            match nix::unistd::read(self.fd.as_raw_fd(), &mut self.buffer[..]) {
                Ok(read) => break read,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        };
        let records = self.buffer.get(..read).unwrap_or_default();
        into.extend(
            records
                .chunks_exact(SIGINFO_BYTES)
                .filter_map(parse_siginfo),
        );
        Ok(())
    }

    /// Whether a signal becomes readable within `timeout` (`None`: no limit); `false` also when `writable`
    /// became writable (or failed) first.
    fn ready_within(
        &self,
        timeout: Option<Duration>,
        writable: Option<BorrowedFd<'_>>,
    ) -> io::Result<bool> {
        // An array rather than a Vec: no allocation per wake-up. Without a log to wait for, only the first.
        let mut fds = [
            PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(writable.unwrap_or(self.fd.as_fd()), PollFlags::POLLOUT),
        ];
        let used = if writable.is_some() { 2 } else { 1 };
        let polled = fds.get_mut(..used).unwrap_or_default();
        match nix::poll::ppoll(polled, timeout.map(TimeSpec::from_duration), None) {
            Ok(_) => Ok(fds
                .first()
                .and_then(|signals| signals.revents())
                .is_some_and(|events| events.contains(PollFlags::POLLIN))),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }
}

/// Takes `ssi_signo` (offset 0) and `ssi_pid` (offset 12) out of one `struct signalfd_siginfo`.
fn parse_siginfo(record: &[u8]) -> Option<Received> {
    let field = |offset: usize| -> Option<u32> {
        let bytes = record.get(offset..offset + 4)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    };
    let signal = Signal::from_number(i32::try_from(field(0)?).ok()?)?;
    let sender_pid = i32::try_from(field(12)?).unwrap_or(0);
    Some(Received { signal, sender_pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_every_spelling() {
        for text in ["TERM", "SIGTERM", "term", "sigterm", "15"] {
            assert_eq!(text.parse(), Ok(Signal::TERM), "{text}");
        }
        assert_eq!(
            "IOT".parse::<Signal>().map(Signal::number),
            Ok(libc::SIGABRT)
        );
        assert_eq!(
            "sigwinch".parse::<Signal>().map(Signal::number),
            Ok(libc::SIGWINCH)
        );
    }

    #[test]
    fn real_time_signals_follow_kernel_numbering() {
        let cases = [
            ("RTMIN", 34),
            ("RTMIN+3", 37),
            ("SIGRTMAX", 64),
            ("rtmax-2", 62),
            ("RTMIN+30", 64),
        ];
        for (text, number) in cases {
            assert_eq!(
                text.parse::<Signal>().map(Signal::number),
                Ok(number),
                "{text}"
            );
        }
        for text in [
            "RTMIN+31", "RTMIN-1", "RTMAX+1", "RTMIN+", "RTMIN+x", "RTMIN3",
        ] {
            assert!(text.parse::<Signal>().is_err(), "{text}");
        }
    }

    #[test]
    fn names_round_trip() {
        for number in 1..=64 {
            let signal = Signal::from_number(number).unwrap();
            let name = signal.to_string();
            if number == 32 || number == 33 {
                assert_eq!(name, format!("signal {number}"));
                continue;
            }
            assert_eq!(name.parse::<Signal>(), Ok(signal), "{name}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_signal() {
        for text in [
            "",
            "0",
            "65",
            "-1",
            "99999999999",
            "FOO",
            "SIG",
            "TERM ",
            "1e3",
        ] {
            assert!(text.parse::<Signal>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn default_actions_follow_signal_7() {
        let action = |name: &str| name.parse::<Signal>().unwrap().default_action();
        for name in [
            "TERM", "INT", "QUIT", "HUP", "USR1", "PWR", "SYS", "RTMIN+3",
        ] {
            assert_eq!(action(name), DefaultAction::Terminate, "{name}");
        }
        for name in ["CHLD", "URG", "WINCH"] {
            assert_eq!(action(name), DefaultAction::Ignore, "{name}");
        }
        for name in ["TSTP", "TTIN", "TTOU", "STOP"] {
            assert_eq!(action(name), DefaultAction::Stop, "{name}");
        }
        assert_eq!(action("CONT"), DefaultAction::Continue);
    }

    #[test]
    fn rewrite_map_translates_and_drops() {
        let mut map = RewriteMap::default();
        assert_eq!(map.apply(Signal::TERM), Some(Signal::TERM));
        map.set(Signal::TERM, Some(Signal(libc::SIGQUIT)));
        map.set(Signal(libc::SIGHUP), None);
        assert_eq!(map.apply(Signal::TERM), Some(Signal(libc::SIGQUIT)));
        assert_eq!(map.apply(Signal(libc::SIGHUP)), None);
        assert_eq!(map.apply(Signal(libc::SIGINT)), Some(Signal(libc::SIGINT)));
    }

    #[test]
    fn siginfo_fields_are_read_at_their_offsets() {
        let mut record = [0u8; SIGINFO_BYTES];
        record[0..4].copy_from_slice(&15u32.to_ne_bytes());
        record[12..16].copy_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(
            parse_siginfo(&record),
            Some(Received {
                signal: Signal::TERM,
                sender_pid: 4242
            })
        );
    }
}

/// Properties over arbitrary text: parsing a signal never panics, and what it accepts is a kernel signal
/// whose name reads back as the same signal.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(
            &[
                "SIG", "sig", "RT", "RTMIN", "RTMAX", "MIN", "MAX", "+", "-", "0", "1", "3", "30",
                "31", "64", "65", "TERM", "KILL", "IOT", "CLD", "POLL", " ", "\n",
            ][..],
        );
        prop_oneof![
            3 => prop::collection::vec(pieces, 0..4).prop_map(|pieces| pieces.concat()),
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parsed_signals_are_kernel_signals_that_name_themselves(text in text()) {
            match text.parse::<Signal>() {
                Ok(signal) => {
                    prop_assert!((1..=KERNEL_SIGRTMAX).contains(&signal.number()));
                    if !(32..KERNEL_SIGRTMIN).contains(&signal.number()) {
                        prop_assert_eq!(signal.to_string().parse::<Signal>(), Ok(signal));
                    }
                }
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }
    }
}
