//! The child the bench runs under each init: prints `ready`, then plays one scenario.
//!
//! Modes (the first argument):
//! - `sleep`: idle like `sleep`, blocked in `read(stdin)` until EOF.
//! - `term`: a SIGTERM handler writes `term <CLOCK_MONOTONIC ns>` to stdout and exits at once.
//! - `ignore`: ignores SIGTERM; only SIGKILL (or EOF on stdin) ends it.
//! - `orphans N`: after a `go` line on stdin, leaves N exited processes to PID 1 (double clone),
//!   then prints `done <start ns> <end ns>`.
//!
//! Every mode exits when stdin reaches EOF, which is how the bench tears a run down without
//! relying on the init under test to forward anything.
#![deny(unsafe_code)]

mod sys;

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

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
        ["ignore"] => ignore_sigterm()
            .and_then(|()| ready())
            .and_then(|()| wait_for_eof()),
        ["orphans", count] => match count.parse::<u32>() {
            Ok(count) => leave_orphans(count),
            Err(err) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad count {count:?}: {err}"),
            )),
        },
        _ => {
            eprintln!("usage: stamp-child sleep | term | ignore | orphans N");
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

/// Tells the bench that the scenario is set up (handlers installed, nothing left to do).
fn ready() -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(b"ready\n")?;
    stdout.flush()
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

fn install_stamp_handler() -> io::Result<()> {
    sys::set_sigterm_action(sys::SigtermAction::Stamp)
}

fn ignore_sigterm() -> io::Result<()> {
    sys::set_sigterm_action(sys::SigtermAction::Ignore)
}
