//! The few system calls nix does not cover, each in one small commented `unsafe` wrapper.
//!
//! Why not nix for these:
//! - glibc's and musl's `sigaddset`/`sigprocmask` refuse the signals they reserve for themselves (32–34), and
//!   nix's `Signal` has no real-time signals at all. PID 1 must block and read *every* signal, so the mask is
//!   a plain 64-bit kernel mask passed straight to `rt_sigprocmask` and `signalfd4`.
//! - nix's `kill` and `waitpid` take or return its `Signal` enum, which cannot express real-time signals: a
//!   child killed by SIGRTMIN+3 would make nix's `waitpid` fail and lose the exit status.
//! - pidfds (`pidfd_open`, `pidfd_send_signal`) are not wrapped by nix, nor are getpriority and setpriority.
//! - [`spawn`]: fork and exec, which std's `Command` does with ten times the code.
//!
//! [`inherited`] records, before `main`, what grace inherited (signal mask, ignored signals, signals pending
//! at exec, closed standard descriptors) so that the child gets the same.
#![allow(unsafe_code)]

pub mod inherited;
pub mod spawn;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A kernel signal mask: bit N-1 stands for signal N (1..=64).
pub type SignalMask = u64;

/// Every signal the kernel knows. SIGKILL and SIGSTOP are in it too; the kernel silently leaves them out.
pub const ALL_SIGNALS: SignalMask = !0;

/// The size the kernel expects for a signal mask (`_NSIG / 8`), not libc's much larger `sigset_t`.
const KERNEL_MASK_BYTES: libc::size_t = std::mem::size_of::<SignalMask>();

/// Replaces the calling thread's signal mask and returns the previous one.
///
/// Async-signal-safe (one system call, no allocation), so it may run between fork and exec.
pub fn set_signal_mask(mask: SignalMask) -> io::Result<SignalMask> {
    let mut previous: SignalMask = 0;
    // SAFETY: both pointers refer to live 8-byte masks for the duration of the call, and the size argument
    // matches them; the kernel reads `mask` and writes `previous`, nothing else.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const SignalMask,
            &mut previous as *mut SignalMask,
            KERNEL_MASK_BYTES,
        )
    };
    if result == 0 {
        Ok(previous)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unblocks `signal` for the time of one system call, so that a pending instance takes its default action:
/// a stop signal stops the process before this returns (the kernel leaves it pending no longer), unless the
/// process group is orphaned or a SIGCONT came first, which discard it. Then blocks it again.
pub fn act_on_pending(signal: i32) -> io::Result<()> {
    let bit: SignalMask = 1 << (signal - 1);
    let mut previous: SignalMask = 0;
    // SAFETY: as in set_signal_mask: live 8-byte masks and their size; SIG_UNBLOCK clears only `bit`.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_UNBLOCK,
            &bit as *const SignalMask,
            &mut previous as *mut SignalMask,
            KERNEL_MASK_BYTES,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    set_signal_mask(previous).map(|_| ())
}

/// The signals pending for the calling thread or its process. Async-signal-safe (one system call).
pub fn pending_signals() -> io::Result<SignalMask> {
    let mut pending: SignalMask = 0;
    // SAFETY: `pending` is a live 8-byte mask the kernel writes, and the size argument matches it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigpending,
            &mut pending as *mut SignalMask,
            KERNEL_MASK_BYTES,
        )
    };
    if result == 0 {
        Ok(pending)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `signal` is pending for the calling thread or its process (blocked, and not read yet).
pub fn is_pending(signal: i32) -> bool {
    pending_signals().is_ok_and(|pending| pending & (1 << (signal - 1)) != 0)
}

/// Opens a blocking, close-on-exec signalfd that reads every signal in `mask`.
pub fn open_signalfd(mask: SignalMask) -> io::Result<OwnedFd> {
    // SAFETY: `mask` is a live 8-byte mask and the size matches; -1 asks for a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const SignalMask,
            KERNEL_MASK_BYTES,
            libc::SFD_CLOEXEC,
        )
    };
    owned_fd(fd)
}

/// Sends `signal` to `pid` (or to a process group when `pid` is negative), as kill(2).
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens a pidfd for `pid`: a handle on that very process, which stays valid even if the pid is reused.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned_fd(fd)
}

/// Sends `signal` to the process behind `pidfd`. Fails with ESRCH once that process has been reaped,
/// whatever now holds its pid number.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo asks the kernel to fill it in as kill(2) would; no memory of ours is touched.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling process's nice value (getpriority(2)). The system call itself answers 20 − nice, so that no
/// valid answer is negative (the libc wrapper's −1 is ambiguous).
pub fn own_nice() -> io::Result<i32> {
    // SAFETY: getpriority(2) takes two integers and touches no memory of ours.
    let raw = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(20 - i32::try_from(raw).unwrap_or(20))
}

/// Sets the calling process's nice value (setpriority(2)); lowering it needs CAP_SYS_NICE or RLIMIT_NICE.
pub fn set_own_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority(2) takes three integers and touches no memory of ours.
    if unsafe { libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Collects one exited child without blocking: `Ok(Some((pid, raw wait status)))`, `Ok(None)` when children
/// remain but none has exited, and `Err(ECHILD)` when there are no children left at all. A child that stopped
/// or continued is reported too (its status says so), and stays a child.
pub fn reap_one() -> io::Result<Option<(i32, i32)>> {
    let mut status = 0;
    // SAFETY: `status` is a live int the kernel writes the wait status into.
    let pid = unsafe {
        libc::waitpid(
            -1,
            &mut status,
            libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED,
        )
    };
    match pid {
        0 => Ok(None),
        pid if pid > 0 => Ok(Some((pid, status))),
        _ => Err(io::Error::last_os_error()),
    }
}

extern "C" {
    /// The C library's environment: a null-terminated array of `NAME=value` strings, which execvp passes on.
    static mut environ: *const *const std::ffi::c_char;
}

/// The variables of this process's environment whose `NAME=` begins with one of `prefixes`, in one pass that
/// copies only those (std's `vars_os` copies every variable first). Only while grace is single-threaded (it
/// always is).
pub fn environment_variables(prefixes: &[&[u8]]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    use std::os::unix::ffi::OsStrExt;
    let mut found = Vec::new();
    // SAFETY: environ is null or a null-terminated array of NUL-terminated strings, which grace, with one
    // thread, is the only one to read or change; each string is copied before the next is looked at.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let bytes = std::ffi::CStr::from_ptr(*entry).to_bytes();
            if prefixes.iter().any(|prefix| bytes.starts_with(prefix)) {
                let mut halves = bytes.splitn(2, |&byte| byte == b'=');
                if let (Some(name), Some(value)) = (halves.next(), halves.next()) {
                    found.push((
                        std::ffi::OsStr::from_bytes(name).to_owned(),
                        std::ffi::OsStr::from_bytes(value).to_owned(),
                    ));
                }
            }
            entry = entry.add(1);
        }
    }
    found
}

/// Removes `name` from this process's environment, which the command inherits. Only while grace is
/// single-threaded (it always is): nothing else may read the environment meanwhile. std's `remove_var`
/// would do the same with a lock and helpers that cost about a kilobyte of a static binary's budget.
pub fn remove_environment_variable(name: &str) -> io::Result<()> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a live NUL-terminated string for the call; grace has one thread, so no other reads
    // or writes the environment at the same time.
    if unsafe { libc::unsetenv(name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the signal this process receives when its parent exits (PR_SET_PDEATHSIG).
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG reads only its integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `fd`'s terminal give its foreground to the calling process's group, if the parent's group has it
/// (the parent is a foreground job): a background job must not take the terminal from its shell, which it
/// could with SIGTTOU blocked. Async-signal-safe.
pub fn take_terminal_foreground_from_parent(fd: i32) -> io::Result<()> {
    // SAFETY: tcgetpgrp, getpgid, getppid, tcsetpgrp and getpgrp read and return only integers.
    let result = unsafe {
        if libc::tcgetpgrp(fd) != libc::getpgid(libc::getppid()) {
            return Ok(());
        }
        libc::tcsetpgrp(fd, libc::getpgrp())
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets `signal` to ignored. Async-signal-safe; used between fork and exec to give the child back an ignored
/// disposition grace inherited (see [`inherited`]).
fn ignore_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: signal(2) with SIG_IGN installs no handler of ours.
    if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned_fd(result: libc::c_long) -> io::Result<OwnedFd> {
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(result).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the child needs undone between fork and exec so that it starts as if grace were not there.
#[derive(Clone, Copy, Debug)]
pub struct ChildSetup {
    /// The signal mask grace inherited; grace's own block-everything mask must not leak into the child.
    pub signal_mask: SignalMask,
    /// Ignore SIGPIPE again, because grace was started with it ignored (std resets it to the default).
    pub ignore_sigpipe: bool,
    /// Ignore SIGCHLD again, because grace was started with it ignored (grace set it back to the default
    /// for itself, see [`inherited`]).
    pub ignore_sigchld: bool,
    /// Make the child's new process group the terminal's foreground group: stdin is grace's terminal and
    /// grace's group is its foreground (decided at each start; the child checks again before it takes it).
    pub take_terminal: bool,
    /// The descriptor limit grace inherited, to give back: grace raised its own (see
    /// [`raise_descriptor_limit`]).
    pub descriptor_limit: Option<DescriptorLimit>,
}

/// A soft and a hard RLIMIT_NOFILE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises grace's own soft RLIMIT_NOFILE to its hard limit, as the Go runtime does for its programs; returns
/// the limit it had, which the child gets back. A soft limit of 1,024 is common, and grace holds one pidfd
/// per process of a large tree from the survey to the SIGKILL, so that the SIGKILLs go out at once.
pub fn raise_descriptor_limit() -> Option<DescriptorLimit> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    }
    Some(DescriptorLimit { soft, hard })
}

/// grace's soft RLIMIT_NOFILE now.
pub fn descriptor_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// Forks a child that removes `path` and exits: a service's stale readiness file, before the service starts.
/// In a child, so that a hung file system holds it and not PID 1; a failure is ignored (nothing was there, or
/// it cannot be removed). It leads a process group of its own, as a probe does. Returns its pid.
pub fn remove_file_in_child(path: &std::ffi::CStr) -> io::Result<i32> {
    // SAFETY: grace has one thread, so the child is a full copy that runs only what follows: setpgid, prctl,
    // unlink and _exit, all async-signal-safe system calls, on the NUL-terminated string borrowed for the call; nothing
    // allocates, takes a lock or returns into Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => unsafe {
            libc::setpgid(0, 0);
            // A name of its own, for a report that must say what hangs.
            libc::prctl(libc::PR_SET_NAME, c"grace-unlink".as_ptr(), 0, 0, 0);
            libc::unlink(path.as_ptr());
            libc::_exit(0)
        },
        pid => Ok(pid),
    }
}

/// Forks a child that looks whether `path` exists and exits 0 if it does, 1 if not: a `file:` readiness
/// probe. In a child because a stat on a hung filesystem (a network or FUSE mount whose server went away)
/// blocks, and PID 1 must not; the child is reaped and timed out like a check command. It leads a process
/// group of its own, so that it is killed as a check's group is. Returns its pid.
pub fn probe_exists(path: &std::ffi::CStr) -> io::Result<i32> {
    // SAFETY: grace has one thread, so the child is a full copy that runs only what follows: setpgid, prctl,
    // access and _exit, all async-signal-safe system calls, on the NUL-terminated string borrowed for the call; nothing
    // allocates, takes a lock or returns into Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => unsafe {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_NAME, c"grace-probe".as_ptr(), 0, 0, 0);
            let found = libc::access(path.as_ptr(), libc::F_OK) == 0;
            libc::_exit(if found { 0 } else { 1 })
        },
        pid => Ok(pid),
    }
}
