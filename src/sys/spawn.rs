//! Starting a process: fork, set the child up, exec; an exec failure comes back to the parent as its errno.
//!
//! std's `Command` does the same with a general machinery grace does not need (an environment captured into
//! a sorted map, `posix_spawn`, pipes for the child's standard streams, its own `Child` type): about 40 KB
//! of a static binary. Here every allocation happens in the parent, before the fork; the child makes only
//! async-signal-safe system calls, then execs or reports why not and `_exit`s.

use std::ffi::{c_char, CStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{
    environ, ignore_signal, set_signal_mask, take_terminal_foreground_from_parent, ChildSetup,
};

/// What to run and how: everything the child needs, prepared by the parent.
pub struct Exec<'a> {
    /// The file to execute: it contains a slash, so execvp does not search PATH (it still falls back to
    /// /bin/sh for a script without `#!` where the C library does, as glibc's does).
    pub path: &'a CStr,
    /// argv, ending with a null pointer; its strings outlive the call.
    pub argv: &'a [*const c_char],
    /// The whole environment, ending with a null pointer, when it differs from grace's own.
    pub envp: Option<&'a [*const c_char]>,
    /// Standard input, output and error for the child, instead of grace's own.
    pub stdin: Option<BorrowedFd<'a>>,
    pub stdout: Option<BorrowedFd<'a>>,
    pub stderr: Option<BorrowedFd<'a>>,
    /// What grace changed for itself and the child must get back.
    pub setup: ChildSetup,
}

/// Starts `exec` in a new process group of its own; returns its pid once it has exec'd. If the child could
/// not be set up or exec failed, it has been reaped and its errno is the error.
pub fn spawn(exec: &Exec<'_>) -> io::Result<i32> {
    let (report_read, report_write) = cloexec_pipe()?;
    // SAFETY: grace has one thread, so the child is a full copy in which only what `run_child` does runs:
    // async-signal-safe system calls on memory prepared before the fork, then exec or _exit. It never
    // returns into Rust code, allocates or takes a lock.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => run_child(exec, report_write.as_raw_fd()),
        pid => {
            drop(report_write);
            match read_report(&report_read) {
                None => Ok(pid),
                Some(errno) => {
                    // The child exits at once: collect it here, as it never became the command.
                    let mut status = 0;
                    // SAFETY: `status` is a live int the kernel writes into.
                    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
                        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                    {
                    }
                    Err(io::Error::from_raw_os_error(errno))
                }
            }
        }
    }
}

/// A pipe whose both ends close on exec: the child's end closes by itself when exec succeeds.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1, -1];
    // SAFETY: pipe2 writes two descriptors into the live two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read, write] = fds;
    // SAFETY: the kernel just returned these descriptors to us and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(read), OwnedFd::from_raw_fd(write)) })
}

/// The errno the child wrote before it exited, or None if the pipe closed empty: exec succeeded.
fn read_report(report: &OwnedFd) -> Option<i32> {
    let mut bytes = [0u8; 4];
    loop {
        // SAFETY: reads at most 4 bytes into the live 4-byte buffer.
        let read = unsafe { libc::read(report.as_raw_fd(), bytes.as_mut_ptr().cast(), 4) };
        if read == 4 {
            return Some(i32::from_ne_bytes(bytes));
        }
        if read >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// In the child: set it up, exec, or write the errno to `report` and exit.
fn run_child(exec: &Exec<'_>, report: RawFd) -> ! {
    let errno = match set_up_child(exec) {
        Ok(()) => {
            if let Some(envp) = exec.envp {
                // SAFETY: the child has one thread and execs next; `envp` outlives the exec.
                unsafe { environ = envp.as_ptr() };
            }
            // SAFETY: path and argv are NUL-terminated strings and a null-terminated array prepared by the
            // parent; execvp returns only on failure.
            unsafe { libc::execvp(exec.path.as_ptr(), exec.argv.as_ptr()) };
            io::Error::last_os_error()
        }
        Err(err) => err,
    }
    .raw_os_error()
    .unwrap_or(libc::EINVAL);
    let bytes = errno.to_ne_bytes();
    // SAFETY: write(2) from a live 4-byte buffer, then _exit(2): both async-signal-safe, and _exit runs no
    // destructor or atexit handler of the parent's copy.
    unsafe {
        libc::write(report, bytes.as_ptr().cast(), 4);
        libc::_exit(127)
    }
}

/// Between fork and exec, in this order: the standard streams, a process group of its own (whose pgid is
/// its pid), SIGPIPE back to the default (std ignores it in grace), then what grace inherited: the terminal's
/// foreground, ignored SIGPIPE and SIGCHLD, the descriptor limit, and last the signal mask, so that signals
/// reach the child only from then on. Async-signal-safe: only system calls.
fn set_up_child(exec: &Exec<'_>) -> io::Result<()> {
    for (fd, target) in [
        (exec.stdin, libc::STDIN_FILENO),
        (exec.stdout, libc::STDOUT_FILENO),
        (exec.stderr, libc::STDERR_FILENO),
    ] {
        if let Some(fd) = fd {
            redirect(fd.as_raw_fd(), target)?;
        }
    }
    // SAFETY: setpgid and signal take integers; SIG_DFL installs no handler.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    let setup = exec.setup;
    if setup.take_terminal {
        // While every signal is still blocked, so SIGTTOU cannot stop the child. Failure is harmless: the
        // child then runs in the background of the terminal, as under tini.
        let _ = take_terminal_foreground_from_parent(libc::STDIN_FILENO);
    }
    if setup.ignore_sigpipe {
        ignore_signal(libc::SIGPIPE)?;
    }
    if setup.ignore_sigchld {
        ignore_signal(libc::SIGCHLD)?;
    }
    if let Some(limit) = setup.descriptor_limit {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            limit.soft,
            limit.hard,
        )?;
    }
    set_signal_mask(setup.signal_mask)?; // last: from here on, signals reach the child
    Ok(())
}

/// Makes `target` a copy of `fd` that stays open across exec.
fn redirect(fd: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 and fcntl take integers. dup2 onto itself would keep a close-on-exec flag: clear it.
    let result = unsafe {
        if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        }
    };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
