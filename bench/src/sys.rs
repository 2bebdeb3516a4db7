//! The system calls std does not wrap: clocks, pidfds, poll, epoll, prctl, rlimits, scheduling.
//! With shared_sys.rs (the calls stamp-child makes too), the only `unsafe` code.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

#[path = "shared_sys.rs"]
mod shared;
pub use shared::{monotonic_ns, pidfd_open, pidfd_send_signal, raise_descriptor_limit};

/// Waits until some of `fds` is readable (or hung up), at most `timeout`. Returns one flag per
/// fd; all false on timeout.
#[allow(unsafe_code)]
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut entries: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up so a wait never ends a fraction of a millisecond early and spins.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: `entries` is a valid array of `entries.len()` pollfd structs.
        let ready =
            unsafe { libc::poll(entries.as_mut_ptr(), entries.len() as libc::nfds_t, millis) };
        if ready >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(entries.iter().map(|entry| entry.revents != 0).collect())
}

/// Makes the spawned process get SIGKILL if the bench dies, so an interrupted bench leaves
/// no namespace behind (`unshare --kill-child` then takes its init down with it).
#[allow(unsafe_code)]
pub fn kill_when_parent_dies(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the new process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Clock ticks per second, the unit of utime and stime in /proc/PID/stat.
#[allow(unsafe_code)]
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// The effective user id (the bench needs root to create PID namespaces).
#[allow(unsafe_code)]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// An epoll instance over many fds (poll would rescan a thousand pidfds on every wake-up).
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new, empty instance.
    #[allow(unsafe_code)]
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes flags and returns a new fd or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for readability, reported once (EPOLLONESHOT): a pidfd stays readable
    /// once its process has exited, and one report is all the bench wants.
    #[allow(unsafe_code)]
    pub fn add_once(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            u64: token,
        };
        // SAFETY: both fds are open; `event` is a valid epoll_event the kernel only reads.
        let result = unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` for up to `capacity` events; returns their tokens (none on
    /// timeout).
    #[allow(unsafe_code)]
    pub fn wait(&self, capacity: usize, timeout: Duration) -> io::Result<Vec<u64>> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)];
        // Round up, as poll_readable does, so a wait never ends early and spins.
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: `events` is a valid, writable array of `events.len()` epoll_event structs.
            let ready = unsafe {
                libc::epoll_wait(
                    self.0.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len().min(i32::MAX as usize) as i32,
                    millis,
                )
            };
            if ready >= 0 {
                return Ok(events[..ready as usize]
                    .iter()
                    .map(|event| event.u64)
                    .collect());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// The calling thread at SCHED_FIFO while this lives; its former policy comes back on drop.
/// SCHED_RESET_ON_FORK keeps anything it might start out of the real-time class.
pub struct Realtime {
    policy: i32,
    param: libc::sched_param,
}

impl Realtime {
    /// Switches the calling thread to SCHED_FIFO at `priority` (1–99).
    #[allow(unsafe_code)]
    pub fn enter(priority: i32) -> io::Result<Self> {
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid, writable sched_param.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy < 0 || unsafe { libc::sched_getparam(0, &mut param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let realtime = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: pid 0 is the calling thread; `realtime` is a valid sched_param.
        let result = unsafe {
            libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &realtime)
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { policy, param })
    }
}

impl Drop for Realtime {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: pid 0 is the calling thread; the policy and parameters are the ones it had.
        unsafe { libc::sched_setscheduler(0, self.policy, &self.param) };
    }
}

/// The calling thread, and what it starts while this lives, kept on the CPU it runs on; its former
/// CPU set comes back on drop.
pub struct OnOneCpu {
    former: libc::cpu_set_t,
}

impl OnOneCpu {
    #[allow(unsafe_code)]
    pub fn enter() -> io::Result<Self> {
        // SAFETY: a zeroed cpu_set_t is a valid, empty set; pid 0 is the calling thread, and each call is
        // given the set's true size.
        unsafe {
            let mut former: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut former) != 0 {
                return Err(io::Error::last_os_error());
            }
            let cpu = libc::sched_getcpu();
            if cpu < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, size, &one) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self { former })
        }
    }
}

impl Drop for OnOneCpu {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: pid 0 is the calling thread; the set is the one it had, of its true size.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.former);
        }
    }
}
