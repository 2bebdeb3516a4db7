//! Whether a starting service is ready, so that the next one may start: a TCP port that accepts, a file
//! that exists, the service's own word over the sd_notify protocol (`READY=1`), or a check command that
//! exits 0. Only while it starts: once ready, nothing is polled, so idle still costs nothing.
//!
//! Probes run from [`FIRST_PROBE_INTERVAL`], doubling to [`LAST_PROBE_INTERVAL`]; `notify` needs none (its
//! socket is in the loop's poll set). No probe ever blocks the loop: a TCP connect is non-blocking and looked
//! at again at the next probe, a check command is a child reaped like any other, and host names are taken from
//! /etc/hosts only (a DNS lookup could hold PID 1 for seconds).

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr,
};

pub use super::table::Readiness;

pub const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(100);
pub const LAST_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// While a service is not ready, a line every this often says what grace waits for, and why it is not yet.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How `--explain` words [`REPORT_INTERVAL`].
pub const READY_REPORT_NOTE: &str = "with a line every 10s naming what it waits for";
/// A check command that runs longer than this is SIGKILLed (with its process group) and counts as a failure.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The probe schedule: the interval after `interval`.
pub fn next_interval(interval: Duration) -> Duration {
    (interval * 2).min(LAST_PROBE_INTERVAL)
}

/// The address a `tcp:` check connects to: an IP address, `localhost`, or a name /etc/hosts gives.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(address) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(address, port));
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if let Some(address) = hosts_lookup(&hosts, bare) {
        return Ok(SocketAddr::new(address, port));
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!(
        "'{host}' is neither an IP address nor a name in /etc/hosts (grace looks up no DNS names: a lookup \
         can hold PID 1 for seconds; use an address, or a check command such as [\"nc\", \"-z\", \"{host}\", \"{port}\"])"
    ))
}

/// The first address /etc/hosts gives `name`.
fn hosts_lookup(hosts: &str, name: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_ascii_whitespace();
        let address = fields.next()?.parse::<IpAddr>().ok()?;
        fields
            .any(|alias| alias.eq_ignore_ascii_case(name))
            .then_some(address)
    })
}

/// What a probe found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Ready: the next service may start.
    Ready,
    /// Not yet; the reason, for the waiting report.
    NotYet(String),
    /// A check command must be started (the supervisor spawns it and reports its pid and exit).
    RunCheck(Vec<OsString>),
    /// A `file:` probe must be forked (see [`crate::sys::probe_exists`]); reported as a check is.
    ProbeFile(std::path::PathBuf),
    /// Nothing to do now.
    Idle,
}

/// One service's wait for readiness.
#[derive(Debug)]
pub struct Waiter {
    readiness: Readiness,
    started_at: Instant,
    interval: Duration,
    next_probe: Instant,
    next_report: Instant,
    last_error: Option<String>,
    /// A TCP connect still in progress.
    connecting: Option<OwnedFd>,
    /// The check command (or `file:` probe) running, and when it started.
    check: Option<(i32, Instant)>,
    /// The running check ran past [`CHECK_TIMEOUT`] and was handed over to be killed: its timeout is no
    /// longer a deadline (a check stuck in the kernel may outlive its SIGKILL, and the loop must not spin).
    check_overdue: bool,
    /// The sd_notify socket (notify only).
    notify: Option<NotifySocket>,
}

impl Waiter {
    /// Begins the wait at `now`, before the service starts, opening the notify socket (whose name the service
    /// gets in `NOTIFY_SOCKET`). (A stale readiness file was removed before: see the supervisor's start.)
    pub fn new(readiness: &Readiness, now: Instant) -> io::Result<Waiter> {
        let notify = match readiness {
            Readiness::Notify => Some(NotifySocket::open()?),
            _ => None,
        };
        Ok(Waiter {
            readiness: readiness.clone(),
            started_at: now,
            interval: FIRST_PROBE_INTERVAL,
            next_probe: now + FIRST_PROBE_INTERVAL,
            next_report: now + REPORT_INTERVAL,
            last_error: None,
            connecting: None,
            check: None,
            check_overdue: false,
            notify,
        })
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// How long the service has been waited for.
    pub fn waited(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started_at)
    }

    /// Why the last probe failed, if one did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The variables the service needs to take part: `NOTIFY_SOCKET` for `notify`.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        self.notify
            .iter()
            .map(|socket| (OsString::from("NOTIFY_SOCKET"), socket.name.clone()))
            .collect()
    }

    /// The descriptor the loop polls for input: the notify socket.
    pub fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        self.notify.as_ref().map(|socket| socket.fd.as_fd())
    }

    /// The check command's pid, while one runs.
    pub fn check_pid(&self) -> Option<i32> {
        self.check.map(|(pid, _)| pid)
    }

    /// The next moment [`Waiter::on_time`] has something to do: a probe, a report, a check's timeout.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_report;
        if self.notify.is_none() && self.check.is_none() {
            next = next.min(self.next_probe);
        }
        if let (Some((_, started)), false) = (self.check, self.check_overdue) {
            next = next.min(started + CHECK_TIMEOUT);
        }
        next
    }

    /// Whether a waiting report is due; resets its clock when it is.
    pub fn report_due(&mut self, now: Instant) -> bool {
        if now < self.next_report {
            return false;
        }
        self.next_report = now + REPORT_INTERVAL;
        true
    }

    /// A probe, if one is due. A check command that ran past [`CHECK_TIMEOUT`] is returned in `overdue` for
    /// the supervisor to kill (its exit then counts as a failure).
    pub fn on_time(&mut self, now: Instant) -> (Step, Option<i32>) {
        if let Some((pid, started)) = self.check {
            let overdue = (!self.check_overdue && now >= started + CHECK_TIMEOUT).then_some(pid);
            self.check_overdue |= overdue.is_some();
            if overdue.is_some() {
                self.last_error = Some(format!(
                    "the check ran for {} and was killed",
                    crate::wording::seconds(CHECK_TIMEOUT)
                ));
            }
            return (Step::Idle, overdue);
        }
        if self.notify.is_some() || now < self.next_probe {
            return (Step::Idle, None);
        }
        self.interval = next_interval(self.interval);
        self.next_probe = now + self.interval;
        let step = match &self.readiness {
            Readiness::File(path) => Step::ProbeFile(path.clone()),
            Readiness::Tcp { host, port } => {
                let (host, port) = (host.clone(), *port);
                self.probe_tcp(&host, port)
            }
            Readiness::Command(argv) => Step::RunCheck(argv.clone()),
            Readiness::Notify => Step::Idle,
        };
        (self.note(step), None)
    }

    /// The supervisor started the check command as `pid`.
    pub fn check_started(&mut self, pid: i32, now: Instant) {
        self.check = Some((pid, now));
        self.check_overdue = false;
    }

    /// The check command could not be started.
    pub fn check_failed(&mut self, why: String) -> Step {
        self.note(Step::NotYet(why))
    }

    /// The check command exited with `status` (an exit status as grace reports them).
    pub fn on_check_exit(&mut self, status: u8, now: Instant) -> Step {
        let ran = self
            .check
            .take()
            .map(|(_, started)| now.saturating_duration_since(started))
            .unwrap_or_default();
        let step = match status {
            0 => Step::Ready,
            _ if ran >= CHECK_TIMEOUT => Step::NotYet(format!(
                "the check ran for {} and was killed",
                crate::wording::seconds(ran)
            )),
            _ if matches!(self.readiness, Readiness::File(_)) => {
                Step::NotYet(format!("{} does not exist yet", self.readiness))
            }
            status => Step::NotYet(format!("the check exited with status {status}")),
        };
        self.note(step)
    }

    /// The notify socket is readable: whether a message said `READY=1`.
    /// The notify socket is readable: whether a message said `READY=1` and came from a process for which
    /// `is_member` says yes (the service's own, or one of its tree). A message from anyone else is logged
    /// and ignored.
    pub fn on_readable(&mut self, is_member: impl Fn(i32) -> bool) -> Step {
        let Some(socket) = &self.notify else {
            return Step::Idle;
        };
        let mut step = Step::Idle;
        for sender in socket.read_ready() {
            if sender > 0 && is_member(sender) {
                step = Step::Ready;
            } else {
                let from = if sender > 0 {
                    format!("pid {sender}")
                } else {
                    "a process outside grace's PID namespace".to_string()
                };
                warn!(
                    event = "notify_refused", pid = sender;
                    "READY=1 from {from}, which is not one of the service's processes: ignored"
                );
                self.last_error = Some(format!("READY=1 came from {from}, not the service"));
            }
        }
        step
    }

    fn note(&mut self, step: Step) -> Step {
        if let Step::NotYet(why) = &step {
            self.last_error = Some(why.clone());
        }
        step
    }

    /// One non-blocking step of a TCP probe: connect, or look at a connect already in progress.
    fn probe_tcp(&mut self, host: &str, port: u16) -> Step {
        let bracketed;
        let host = if host.contains(':') {
            bracketed = format!("[{host}]");
            bracketed.as_str()
        } else {
            host
        };
        if let Some(connecting) = self.connecting.take() {
            match connect_result(&connecting) {
                Ok(true) => return Step::Ready,
                Ok(false) => {
                    return Step::NotYet(format!(
                        "connecting to {host}:{port}: no answer within {}",
                        crate::wording::seconds(self.interval / 2)
                    ))
                }
                Err(errno) => return Step::NotYet(format!("{host}:{port}: {}", errno.desc())),
            }
        }
        let address = match resolve(host, port) {
            Ok(address) => address,
            Err(why) => return Step::NotYet(why),
        };
        match start_connect(address) {
            Ok(Connect::Connected) => Step::Ready,
            // A non-blocking connect says "in progress" even on loopback, where the answer is known at
            // once: look before waiting for the next probe.
            Ok(Connect::InProgress(fd)) => match connect_result(&fd) {
                Ok(true) => Step::Ready,
                Ok(false) => {
                    self.connecting = Some(fd);
                    Step::NotYet(format!("connecting to {host}:{port}"))
                }
                Err(errno) => Step::NotYet(format!("{host}:{port}: {}", errno.desc())),
            },
            Err(errno) => Step::NotYet(format!("{host}:{port}: {}", errno.desc())),
        }
    }
}

enum Connect {
    Connected,
    InProgress(OwnedFd),
}

/// A non-blocking connect to `address`.
fn start_connect(address: SocketAddr) -> nix::Result<Connect> {
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let result = match address {
        SocketAddr::V4(v4) => socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => socket::connect(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    };
    match result {
        Ok(()) => Ok(Connect::Connected),
        Err(Errno::EINPROGRESS) => Ok(Connect::InProgress(fd)),
        Err(errno) => Err(errno),
    }
}

/// Whether a connect in progress has completed (`Ok(false)`: not yet), or how it failed.
fn connect_result(fd: &OwnedFd) -> nix::Result<bool> {
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)? == 0 {
        return Ok(false);
    }
    match socket::getsockopt(fd, socket::sockopt::SocketError)? {
        0 => Ok(true),
        error => Err(Errno::from_raw(error)),
    }
}

/// The sd_notify socket of one service: a datagram socket in the abstract namespace (nothing on disk, so a
/// read-only root filesystem is no obstacle), with a name the kernel picks (autobind): unique in the network
/// namespace, which PID namespaces share, so that two graces never collide.
#[derive(Debug)]
struct NotifySocket {
    fd: OwnedFd,
    /// `NOTIFY_SOCKET`'s value: `@` and the abstract name.
    name: OsString,
}

impl NotifySocket {
    fn open() -> io::Result<NotifySocket> {
        use std::os::unix::ffi::OsStrExt;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        // An address of the family alone asks the kernel for a fresh abstract name.
        socket::bind(fd.as_raw_fd(), &UnixAddr::new_unnamed())?;
        // Each message then carries its sender's credentials: only the service's own processes may say it
        // is ready (anything in the network namespace can reach an abstract socket: a pod's other containers).
        socket::setsockopt(&fd, socket::sockopt::PassCred, &true)?;
        let bound: UnixAddr = socket::getsockname(fd.as_raw_fd())?;
        let abstract_name = bound.as_abstract().ok_or_else(|| {
            io::Error::other("the kernel gave the notify socket no abstract name")
        })?;
        let mut name = OsString::from("@");
        name.push(std::ffi::OsStr::from_bytes(abstract_name));
        Ok(NotifySocket { fd, name })
    }

    /// Reads every message waiting; the pids of the senders of those with a `READY=1` line (0 for a sender
    /// outside grace's PID namespace, whose pid the kernel cannot translate).
    fn read_ready(&self) -> Vec<i32> {
        use std::io::IoSliceMut;
        // Larger than any notification (systemd takes up to 4 KiB); a longer one is cut, as systemd cuts it.
        let mut buffer = [0u8; 8192];
        let mut control = nix::cmsg_space!(libc::ucred);
        let mut senders = Vec::new();
        loop {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let received = socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let (length, sender) = match received {
                Ok(message) => {
                    let sender = message.cmsgs().ok().and_then(|mut messages| {
                        messages.find_map(|control| match control {
                            socket::ControlMessageOwned::ScmCredentials(credentials) => {
                                Some(credentials.pid())
                            }
                            _ => None,
                        })
                    });
                    (message.bytes, sender.unwrap_or(0))
                }
                Err(Errno::EINTR) => continue,
                Err(_) => return senders,
            };
            let text = buffer.get(..length).unwrap_or_default();
            if text
                .split(|&byte| byte == b'\n')
                .any(|line| line == b"READY=1")
            {
                senders.push(sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_grow_from_a_tenth_of_a_second_to_a_second() {
        let mut interval = FIRST_PROBE_INTERVAL;
        let mut seen = vec![interval];
        for _ in 0..6 {
            interval = next_interval(interval);
            seen.push(interval);
        }
        let millis: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn hosts_come_from_addresses_and_etc_hosts_only() {
        assert_eq!(
            resolve("127.0.0.1", 80).unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(resolve("[::1]", 80).unwrap(), "[::1]:80".parse().unwrap());
        let hosts =
            "127.0.0.1 localhost\n# 10.0.0.1 commented\n10.1.2.3  db  db.internal # the proxy\n";
        assert_eq!(
            hosts_lookup(hosts, "db.internal"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(hosts_lookup(hosts, "DB"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(hosts_lookup(hosts, "commented"), None);
        let refused = resolve("no-such-name.invalid", 80).unwrap_err();
        assert!(refused.contains("no DNS names"), "{refused}");
    }

    #[test]
    fn a_port_that_accepts_is_ready_and_a_closed_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let now = Instant::now();
        let tcp = Readiness::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let mut waiter = Waiter::new(&tcp, now).unwrap();
        assert_eq!(waiter.on_time(now).0, Step::Idle); // not due yet
        let (step, _) = waiter.on_time(now + FIRST_PROBE_INTERVAL);
        assert_eq!(step, Step::Ready);
        drop(listener);
        let mut waiter = Waiter::new(&tcp, now).unwrap();
        let (step, _) = waiter.on_time(now + FIRST_PROBE_INTERVAL);
        assert!(
            matches!(step, Step::NotYet(ref why) if why.contains("refused")),
            "{step:?}"
        );
        assert!(waiter.last_error().is_some());
    }

    #[test]
    fn notify_reads_ready_from_the_socket_it_names() {
        let now = Instant::now();
        let mut waiter = Waiter::new(&Readiness::Notify, now).unwrap();
        let environment = waiter.environment();
        let name = environment[0].1.to_str().unwrap().to_string();
        assert!(name.starts_with('@') && name.len() > 1, "{name}");
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let address = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            &name.as_bytes()[1..],
        )
        .unwrap();
        let me = std::process::id() as i32;
        client
            .send_to_addr(b"STATUS=warming up\n", &address)
            .unwrap();
        assert_eq!(waiter.on_readable(|pid| pid == me), Step::Idle);
        // READY=1 from a process that is not the service's is refused.
        client
            .send_to_addr(b"STATUS=up\nREADY=1\n", &address)
            .unwrap();
        assert_eq!(waiter.on_readable(|_| false), Step::Idle);
        client
            .send_to_addr(b"STATUS=up\nREADY=1\n", &address)
            .unwrap();
        assert_eq!(waiter.on_readable(|pid| pid == me), Step::Ready);
    }

    /// A `file:` check is probed in a child: a hung file system must not hold PID 1.
    #[test]
    fn a_file_check_is_probed_in_a_child() {
        let path = std::path::PathBuf::from("/run/app.ready");
        let now = Instant::now();
        let mut waiter = Waiter::new(&Readiness::File(path.clone()), now).unwrap();
        assert_eq!(
            waiter.on_time(now + FIRST_PROBE_INTERVAL).0,
            Step::ProbeFile(path)
        );
        waiter.check_started(4242, now);
        let step = waiter.on_check_exit(1, now + MS);
        assert!(
            matches!(step, Step::NotYet(ref why) if why.contains("does not exist yet")),
            "{step:?}"
        );
        waiter.check_started(4243, now);
        assert_eq!(waiter.on_check_exit(0, now + MS), Step::Ready);
    }

    #[test]
    fn a_check_command_is_ready_on_status_zero_only() {
        let now = Instant::now();
        let check = Readiness::Command(vec!["/bin/true".into()]);
        let mut waiter = Waiter::new(&check, now).unwrap();
        let (step, _) = waiter.on_time(now + FIRST_PROBE_INTERVAL);
        assert_eq!(step, Step::RunCheck(vec!["/bin/true".into()]));
        waiter.check_started(4242, now);
        assert_eq!(waiter.check_pid(), Some(4242));
        assert_eq!(waiter.next_deadline(), now + CHECK_TIMEOUT);
        assert_eq!(
            waiter.on_time(now + CHECK_TIMEOUT),
            (Step::Idle, Some(4242))
        );
        assert!(matches!(waiter.on_check_exit(1, now + MS), Step::NotYet(_)));
        waiter.check_started(4243, now);
        assert_eq!(waiter.on_check_exit(0, now + MS), Step::Ready);
    }

    const MS: Duration = Duration::from_millis(1);
}
