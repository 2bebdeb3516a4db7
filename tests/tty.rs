//! On a terminal the child's process group becomes the foreground group, so Ctrl-C reaches it directly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{child, grace_binary};

#[test]
fn child_gets_the_terminal_and_ctrl_c() {
    if common::subreaper_refusal_is_fatal() {
        return; // grace runs as a plain child here
    }
    // `script` runs grace on a new pseudo-terminal and copies its own stdin to it: the test types into it.
    let inner = format!("{} -- {}", grace_binary(), child(&["terminal"]).join(" "));
    let mut script = Command::new("script")
        .args(["--quiet", "--return", "--command", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting script (util-linux)");
    let mut output = BufReader::new(script.stdout.take().expect("stdout"));
    let mut seen = String::new();
    let mut read_until = |needle: &str, seen: &mut String| loop {
        let mut line = String::new();
        let read = output.read_line(&mut line).expect("reading the terminal");
        assert!(
            read > 0,
            "terminal closed before {needle:?}; output so far:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains(needle) {
            return line;
        }
    };
    let ready = read_until("ready", &mut seen);
    assert!(
        ready.contains("foreground=yes"),
        "the child is not in the terminal's foreground: {ready}"
    );
    script
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"\x03")
        .expect("typing Ctrl-C");
    read_until("got INT", &mut seen);
    drop(script.stdin.take()); // script then exits when the command does
    read_until("exiting with status", &mut seen);
    let status = script.wait().expect("waiting for script");
    assert!(status.success(), "{status:?}\n{seen}");
    assert!(seen.contains("exiting with status 0"), "{seen}");
}
