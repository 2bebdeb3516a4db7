//! The few calls that need `unsafe`, each kept small.

use std::io;

/// CLOCK_MONOTONIC in nanoseconds: the same clock the bench reads on the host.
#[allow(unsafe_code)]
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; clock_gettime is async-signal-safe,
    // so this is also sound inside the SIGTERM handler.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// What SIGTERM does to this process.
pub enum SigtermAction {
    /// Write `term <ns>` to stdout and `_exit(0)`.
    Stamp,
    /// Nothing: the signal is discarded.
    Ignore,
}

/// The handler uses only async-signal-safe calls: clock_gettime, write, _exit.
extern "C" fn write_stamp_and_exit(_signal: libc::c_int) {
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
    write_all_and_exit(&line[..6 + count]);
}

#[allow(unsafe_code)]
fn write_all_and_exit(bytes: &[u8]) -> ! {
    // SAFETY: write and _exit are async-signal-safe; `bytes` is valid for its length.
    // A short write to a pipe of a 30-byte line does not happen (PIPE_BUF is 4096).
    unsafe {
        libc::write(1, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(0)
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
            SigtermAction::Ignore => libc::SIG_IGN,
        };
        libc::sigemptyset(&mut new.sa_mask);
        if libc::sigaction(libc::SIGTERM, &new, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
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
