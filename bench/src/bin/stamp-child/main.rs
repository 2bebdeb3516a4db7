//! The child the bench runs under each init: prints `ready`, then plays one scenario.
//!
//! Modes (the first argument):
//! - `sleep`: idle like `sleep`, blocked in `read(stdin)` until EOF.
//! - `term`: a SIGTERM handler writes `term <CLOCK_MONOTONIC ns>` to stdout and exits at once.
//! - `ignore`: ignores SIGTERM; only SIGKILL (or EOF on stdin) ends it.
//! - `usr1`: writes `usr1 <CLOCK_MONOTONIC ns>` to stdout for every SIGUSR1, as it takes it.
//! - `service`: one of several services under a service manager: a SIGTERM handler writes
//!   `term <CLOCK_MONOTONIC ns>` and exits 143 at once; it idles blocked in `read` on a socket of its
//!   own, since a manager may give it /dev/null (grace's helpers) or a pipe it never closes as stdin.
//! - `orphans N`: after a `go` line on stdin, leaves N exited processes to PID 1 (double clone),
//!   then prints `done <start ns> <end ns>`.
//! - `tree N`: ignores SIGTERM and forks N children that ignore it too (see `tree.rs`).
//! - `lines N LEN`: after a `go` line on stdin, writes N lines of LEN bytes (newline included) to
//!   stdout, one write(2) each, as a program that logs line by line does.
//!
//! Every mode but `service` (which ends on SIGTERM, or with its namespace) exits when stdin reaches
//! EOF, which is how the bench tears a run down without relying on the init under test to forward
//! anything.
//!
//! One more mode is not a child but the baseline of the escalation at scale: `kill-init MS
//! COMMAND…`, a trivial init that only SIGKILLs, MS milliseconds after a SIGTERM (see
//! `kill_init.rs`). It exits with COMMAND's status.
#![deny(unsafe_code)]

mod kill_init;
mod sys;
mod tree;

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sleep"] => ready().and_then(|()| wait_for_eof()),
        ["term"] => install_stamp_handler()
            .and_then(|()| ready())
            .and_then(|()| wait_for_eof()),
        ["service"] => sys::set_sigterm_action(sys::SigtermAction::StampExit143)
            .and_then(|()| ready())
            .and_then(|()| idle_for_ever()),
        ["usr1"] => stamp_every_sigusr1(),
        ["ignore"] => ignore_sigterm()
            .and_then(|()| ready())
            .and_then(|()| wait_for_eof()),
        ["orphans", count] => parse_count(count).and_then(leave_orphans),
        ["tree", count] => parse_count(count).and_then(tree::run),
        ["lines", count, length] => parse_count(count)
            .and_then(|count| Ok((count, parse_count(length)?)))
            .and_then(|(count, length)| write_lines(count, length)),
        ["kill-init", period_ms, command @ ..] if !command.is_empty() => {
            match parse_count(period_ms).and_then(|period_ms| {
                kill_init::run(Duration::from_millis(period_ms.into()), command)
            }) {
                Ok(code) => return ExitCode::from(code),
                Err(err) => Err(err),
            }
        }
        _ => {
            eprintln!(
                "usage: stamp-child sleep | term | usr1 | ignore | service | orphans N | tree N | lines N LEN | kill-init MS COMMAND…"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // On stdout too: the bench is reading it, and a stopped init would keep the pipe
            // open after this process exits, so an EOF may never come.
            println!("error: {err}");
            eprintln!("stamp-child: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_count(count: &str) -> io::Result<u32> {
    count.parse::<u32>().map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad count {count:?}: {err}"),
        )
    })
}

/// Tells the bench that the scenario is set up (handlers installed, nothing left to do).
fn ready() -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(b"ready\n")?;
    stdout.flush()
}

/// Stamps every SIGUSR1 (taken with sigwaitinfo, outside any handler) until stdin reaches EOF,
/// which a second thread waits for.
fn stamp_every_sigusr1() -> io::Result<()> {
    sys::block_sigusr1()?;
    std::thread::spawn(|| {
        let _ = wait_for_eof();
        std::process::exit(0);
    });
    ready()?;
    loop {
        sys::wait_for_sigusr1()?;
        let now = sys::monotonic_ns();
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "usr1 {now}")?;
        stdout.flush()?;
    }
}

/// Blocks in `read(stdin)` until EOF: no timer, no wake-up, like `sleep`.
fn wait_for_eof() -> io::Result<()> {
    let mut buffer = [0u8; 256];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Blocks in `read` on one end of a socket pair whose other end it holds: no data, no EOF, no wake-up.
fn idle_for_ever() -> io::Result<()> {
    let (reader, _writer) = std::os::unix::net::UnixStream::pair()?;
    // As a file, so that it is read(2) that blocks, as for a pipe or a terminal.
    let mut reader = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
    let mut buffer = [0u8; 1];
    loop {
        match reader.read(&mut buffer) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
            Ok(_) => return Err(io::Error::other("the idle socket was read")),
        }
    }
}

/// `orphans N`: waits for `go`, orphans N exited processes to PID 1, reports, then idles.
fn leave_orphans(count: u32) -> io::Result<()> {
    ready()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected `go`, got {line:?}"),
        ));
    }
    let start = sys::monotonic_ns();
    for _ in 0..count {
        sys::orphan_one_exited_process()?;
    }
    let end = sys::monotonic_ns();
    println!("done {start} {end}");
    wait_for_eof()
}

/// `lines N LEN`: waits for `go`, writes N numbered lines of LEN bytes, one write each, then idles.
fn write_lines(count: u32, length: u32) -> io::Result<()> {
    ready()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected `go`, got {line:?}"),
        ));
    }
    let length = (length as usize).max(16);
    let mut buffer = vec![b'x'; length];
    buffer[length - 1] = b'\n';
    for number in 0..count {
        let label = format!("line {number:09} ");
        buffer[..label.len()].copy_from_slice(label.as_bytes());
        write_all(libc::STDOUT_FILENO, &buffer)?;
    }
    wait_for_eof()
}

/// One write(2) for the whole of `bytes` when the pipe takes it, as an unbuffered logger does.
fn write_all(fd: i32, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn install_stamp_handler() -> io::Result<()> {
    sys::set_sigterm_action(sys::SigtermAction::Stamp)
}

fn ignore_sigterm() -> io::Result<()> {
    sys::set_sigterm_action(sys::SigtermAction::Ignore)
}
