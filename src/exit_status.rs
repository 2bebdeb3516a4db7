//! From a wait status to grace's exit status, and the statuses grace reserves for its own failures.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Bad command line: clap's convention and tini's.
pub const USAGE: u8 = 2;
/// The command exists but cannot be executed (a directory, no permission, a bad interpreter).
pub const NOT_EXECUTABLE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;
/// grace could not set itself up (signals, subreaper) before the child started.
pub const INIT_FAILED: u8 = 1;

/// The shell's convention: the exit code, or 128+N when killed by signal N.
pub fn from_wait_status(raw_status: i32) -> u8 {
    let status = ExitStatus::from_raw(raw_status);
    if let Some(code) = status.code() {
        return (code & 0xff) as u8;
    }
    match status.signal() {
        Some(signal) => (128 + (signal & 0x7f)) as u8,
        // Stopped or continued: never reported, since grace does not ask for it (no WUNTRACED/WCONTINUED).
        None => 255,
    }
}

/// Applies `-e`: a status listed there is reported as 0.
pub fn remap_success(status: u8, success_exits: &[bool; 256]) -> u8 {
    if success_exits
        .get(usize::from(status))
        .copied()
        .unwrap_or(false)
    {
        0
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        for code in 0..=255 {
            assert_eq!(from_wait_status(code << 8), code as u8);
        }
        assert_eq!(from_wait_status(libc::SIGKILL), 137);
        assert_eq!(from_wait_status(libc::SIGTERM | 0x80), 143); // core dumped
        assert_eq!(from_wait_status(64), 192);
    }

    #[test]
    fn success_exits_become_zero() {
        let mut success = [false; 256];
        success[143] = true;
        assert_eq!(remap_success(143, &success), 0);
        assert_eq!(remap_success(1, &success), 1);
    }
}
