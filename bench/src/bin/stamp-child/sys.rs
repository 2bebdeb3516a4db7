//! The few calls that need `unsafe`, each kept small.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

#[path = "../../shared_sys.rs"]
mod shared;
pub use shared::{monotonic_ns, pidfd_open, pidfd_send_signal, raise_descriptor_limit};

/// What SIGTERM does to this process.
pub enum SigtermAction {
    /// Write `term <ns>` to stdout and `_exit(0)`.
    Stamp,
    /// Write `term <ns>` to stdout and `_exit(143)`, the status of a process killed by SIGTERM, as a
    /// service that exits on it with a status of its own (the JVM's) reports it.
    StampExit143,
    /// Nothing: the signal is discarded.
    Ignore,
}

/// The handler uses only async-signal-safe calls: clock_gettime, write, _exit.
extern "C" fn write_stamp_and_exit(_signal: libc::c_int) {
    write_stamp_and_exit_with(0);
}

/// As [`write_stamp_and_exit`], exiting 143.
extern "C" fn write_stamp_and_exit_143(_signal: libc::c_int) {
    write_stamp_and_exit_with(143);
}

/// Writes `term <CLOCK_MONOTONIC ns>` and exits with `code`; async-signal-safe.
fn write_stamp_and_exit_with(code: libc::c_int) {
    let now = monotonic_ns();
    let mut line = [0u8; 32];
    line[..5].copy_from_slice(b"term ");
    let mut digits = [0u8; 20];
    let mut value = now;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (value % 10) as u8;
        value /= 10;
        count += 1;
        if value == 0 {
            break;
        }
    }
    for index in 0..count {
        line[5 + index] = digits[count - 1 - index];
    }
    line[5 + count] = b'\n';
    write_all_and_exit(&line[..6 + count], code);
}

#[allow(unsafe_code)]
fn write_all_and_exit(bytes: &[u8], code: libc::c_int) -> ! {
    // SAFETY: write and _exit are async-signal-safe; `bytes` is valid for its length.
    // A short write to a pipe of a 30-byte line does not happen (PIPE_BUF is 4096).
    unsafe {
        libc::write(1, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(code)
    }
}

#[allow(unsafe_code)]
pub fn set_sigterm_action(action: SigtermAction) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags); the handler
    // is an `extern "C" fn(c_int)` that only makes async-signal-safe calls.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = match action {
            SigtermAction::Stamp => write_stamp_and_exit as *const () as libc::sighandler_t,
            SigtermAction::StampExit143 => {
                write_stamp_and_exit_143 as *const () as libc::sighandler_t
            }
            SigtermAction::Ignore => libc::SIG_IGN,
        };
        libc::sigemptyset(&mut new.sa_mask);
        if libc::sigaction(libc::SIGTERM, &new, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGUSR1 alone, as a signal set.
#[allow(unsafe_code)]
fn sigusr1_set() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid value for sigemptyset to initialise; both calls only
    // write the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

/// Blocks SIGUSR1 in the calling thread and the threads it starts after, so that only
/// [`wait_for_sigusr1`] takes it.
#[allow(unsafe_code)]
pub fn block_sigusr1() -> io::Result<()> {
    let set = sigusr1_set();
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// Waits until a (blocked) SIGUSR1 is pending, and takes it.
#[allow(unsafe_code)]
pub fn wait_for_sigusr1() -> io::Result<()> {
    let set = sigusr1_set();
    loop {
        // SAFETY: `set` is an initialised signal set; no siginfo is asked for.
        match unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) } {
            libc::SIGUSR1 => return Ok(()),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Stack size of the two short-lived clones (they call clone and return, nothing more).
const STACK_SIZE: usize = 64 * 1024;

/// Leaves one exited process to PID 1: a middle process starts a grandchild that exits at
/// once, then exits itself, so the grandchild's zombie is reparented to PID 1. Returns once
/// the middle has been reaped here, so every orphan counted is already a zombie waiting
/// for the init.
///
/// Both are started with `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` rather than fork: a fork
/// costs ~0.5 ms on the VMs this runs on (page-table copies), which would make the storm
/// measure fork speed rather than the init. CLONE_VFORK suspends each parent until its
/// child has exited, so the grandchild is a zombie before the middle exits, without a
/// wait. SIGCHLD as the exit signal makes them ordinary children for `waitpid(-1)`.
pub fn orphan_one_exited_process() -> io::Result<()> {
    thread_local! {
        static STACKS: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 2 * STACK_SIZE]);
    }
    STACKS.with(|stacks| {
        let mut stacks = stacks.borrow_mut();
        let (middle_stack, grandchild_stack) = stacks.split_at_mut(STACK_SIZE);
        start_middle_and_reap(middle_stack, grandchild_stack)
    })
}

/// The top of a stack buffer, 16-byte aligned (stacks grow down on x86-64 and aarch64).
fn stack_top(stack: &mut [u8]) -> *mut libc::c_void {
    let end = stack.as_mut_ptr_range().end as usize;
    (end & !15) as *mut libc::c_void
}

const CLONE_FLAGS: libc::c_int = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;

extern "C" fn grandchild(_: *mut libc::c_void) -> libc::c_int {
    0 // returning exits the clone with status 0
}

#[allow(unsafe_code)]
extern "C" fn middle(grandchild_stack_top: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the stack is a live buffer of the suspended parent (CLONE_VFORK) that only
    // the grandchild uses; `grandchild` touches no memory at all.
    let started = unsafe {
        libc::clone(
            grandchild,
            grandchild_stack_top,
            CLONE_FLAGS,
            std::ptr::null_mut(),
        )
    };
    if started > 0 {
        0
    } else {
        // The exit status carries errno to the parent (errno values fit in a byte). The
        // errno read is the suspended parent's (same TLS): nothing else writes it meanwhile.
        io::Error::last_os_error().raw_os_error().unwrap_or(255)
    }
}

#[allow(unsafe_code)]
fn start_middle_and_reap(middle_stack: &mut [u8], grandchild_stack: &mut [u8]) -> io::Result<()> {
    let grandchild_top = stack_top(grandchild_stack);
    // SAFETY: CLONE_VFORK suspends this thread until the middle has exited, so the two
    // stacks, borrowed mutably here, are used by the clones only while nothing else can
    // touch them; `middle` only calls clone (which at worst writes errno, ours, unused).
    let middle_pid =
        unsafe { libc::clone(middle, stack_top(middle_stack), CLONE_FLAGS, grandchild_top) };
    if middle_pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        if unsafe { libc::waitpid(middle_pid, &mut status, 0) } == middle_pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 {
        let err = io::Error::from_raw_os_error(libc::WEXITSTATUS(status));
        return Err(io::Error::other(format!("starting an orphan: {err}")));
    }
    if !libc::WIFEXITED(status) {
        return Err(io::Error::other(format!(
            "the process starting an orphan died (wait status {status:#x})"
        )));
    }
    Ok(())
}

/// Forks a child that idles in `read(stdin)` until EOF, then `_exit(0)`; returns its pid. The
/// child runs no Rust code after the fork, only `read` and `_exit`: it touches one page of stack,
/// so its copy of this small process stays a few page tables and little else. It inherits the
/// SIGTERM disposition set before the fork.
#[allow(unsafe_code)]
pub fn fork_idle_child() -> io::Result<i32> {
    // SAFETY: stamp-child starts no threads, so nothing can hold a lock at the fork; the child
    // calls only `read` and `_exit`, which are async-signal-safe anyway.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => idle_until_eof(),
        pid => Ok(pid),
    }
}

/// The body of a forked idle child.
#[allow(unsafe_code)]
fn idle_until_eof() -> ! {
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is a valid, writable buffer of one byte.
        let read = unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) };
        let interrupted =
            read < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        if read == 0 || (read < 0 && !interrupted) {
            // SAFETY: _exit ends this process without running the parent's atexit handlers or
            // flushing its copied stdio buffers.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Makes this process the child subreaper of its descendants: orphans are reparented to it.
#[allow(unsafe_code)]
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A set of signals, blocked and then waited for with `sigwaitinfo` (no handler runs).
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// The set of `signals`.
    #[allow(unsafe_code)]
    pub fn of(signals: &[libc::c_int]) -> Self {
        // SAFETY: a zeroed sigset_t is storage that sigemptyset then initialises.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are valid constants.
        unsafe {
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
        }
        Self(set)
    }

    /// Blocks the set in this (single-threaded) process. The mask survives fork and exec: see
    /// [`SignalSet::unblock_in`] for children.
    #[allow(unsafe_code)]
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: `self.0` is an initialised sigset_t; the old mask is not wanted (null).
        let result =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(())
    }

    /// Makes `command`'s process start with the set unblocked again (`std::process::Command`
    /// passes the mask on as it is).
    #[allow(unsafe_code)]
    pub fn unblock_in(&self, command: &mut Command) {
        let set = self.0;
        // SAFETY: pthread_sigmask is async-signal-safe and changes only the new process.
        unsafe {
            command.pre_exec(move || {
                match libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) {
                    0 => Ok(()),
                    err => Err(io::Error::from_raw_os_error(err)),
                }
            });
        }
    }

    /// Waits for one of the set's (blocked) signals and returns its number.
    #[allow(unsafe_code)]
    pub fn wait(&self) -> io::Result<libc::c_int> {
        loop {
            // SAFETY: `self.0` is an initialised sigset_t; the siginfo is not wanted (null).
            let signal = unsafe { libc::sigwaitinfo(&self.0, std::ptr::null_mut()) };
            if signal > 0 {
                return Ok(signal);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Sleeps until CLOCK_MONOTONIC reads `deadline_ns`: the grace period's one timer.
#[allow(unsafe_code)]
pub fn sleep_until(deadline_ns: u64) {
    let deadline = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `deadline` is a valid timespec; with TIMER_ABSTIME the remainder is not written.
    // It returns EINTR only if a handler ran (none is installed): the loop just sleeps again.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &deadline,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

/// `kill(pid, signal)`.
#[allow(unsafe_code)]
pub fn kill(pid: i32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes a pid and a signal number.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a waited-for process ended.
pub enum Reaped {
    /// `pid` was reaped; its status as an exit code (128 + N when killed by signal N).
    Child { pid: i32, code: u8 },
    /// No child has exited yet (only with `block == false`).
    NoneYet,
    /// No child is left at all.
    NoChildren,
}

/// `waitpid(-1)`: the next exited child, blocking for one if `block`.
#[allow(unsafe_code)]
pub fn reap_any(block: bool) -> io::Result<Reaped> {
    let flags = if block { 0 } else { libc::WNOHANG };
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid > 0 {
            let code = if libc::WIFSIGNALED(status) {
                128u8.saturating_add(libc::WTERMSIG(status) as u8)
            } else {
                libc::WEXITSTATUS(status) as u8
            };
            return Ok(Reaped::Child { pid, code });
        }
        if pid == 0 {
            return Ok(Reaped::NoneYet);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ECHILD) => return Ok(Reaped::NoChildren),
            Some(libc::EINTR) => {}
            _ => return Err(err),
        }
    }
}

/// One write(2) of `bytes` to `fd`: how many bytes it took.
#[allow(unsafe_code)]
pub fn write(fd: libc::c_int, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for reads of its length for the duration of the call.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    usize::try_from(written).map_err(|_| io::Error::last_os_error())
}
