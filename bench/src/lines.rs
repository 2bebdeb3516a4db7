//! The lines a child prints on the pipe the bench reads: read as they come, handed out whole.

use crate::error::Result;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ChildStdout;

/// A child's stdout and what has been read from it but not yet handed out.
pub struct Lines {
    stdout: ChildStdout,
    closed: bool,
    pending: Vec<u8>,
}

impl Lines {
    /// Reads `stdout` from now on.
    pub fn new(stdout: ChildStdout) -> Self {
        Self {
            stdout,
            closed: false,
            pending: Vec::new(),
        }
    }

    /// The next complete line already read, without its newline.
    pub fn take(&mut self) -> Option<String> {
        let end = self.pending.iter().position(|&byte| byte == b'\n')?;
        let line: Vec<u8> = self.pending.drain(..=end).collect();
        Some(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    /// Whether the pipe has reached EOF (every writer has exited or closed it).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The pipe, to poll for readability while it is open.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }

    /// Reads what the pipe holds; call it once a poll has found the pipe readable, so that it
    /// does not block.
    pub fn fill(&mut self) -> Result<()> {
        let mut buffer = [0u8; 4096];
        match self.stdout.read(&mut buffer) {
            Ok(0) => self.closed = true,
            Ok(count) => self.pending.extend_from_slice(&buffer[..count]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
        Ok(())
    }
}
