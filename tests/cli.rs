//! The command line: a usage error exits 2 with one line that names the problem; a command that cannot be
//! started exits 127 (not found) or 126 (not executable) with one line; options stop at the command, whose
//! arguments reach it byte for byte; --help and --version; GRACE_PERIOD from the environment.

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{child, run_exact, run_to_end, Grace, Mode, MODES};

/// What a panic would print; none of it may reach the user.
const PANIC_TEXT: [&str; 3] = ["panicked", "RUST_BACKTRACE", "thread '"];

/// grace's one line of stderr, after checking that there is exactly one and no panic text.
fn only_line(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one line on stderr:\n{stderr}"
    );
    for text in PANIC_TEXT {
        assert!(!stderr.contains(text), "{what}: panic text in\n{stderr}");
    }
    lines[0].to_string()
}

/// Asserts a usage error: status 2, nothing on stdout, one `grace: ` line on stderr containing `names`.
fn assert_usage_error<S: AsRef<OsStr>>(arguments: &[S], names: &str) {
    let shown: Vec<_> = arguments
        .iter()
        .map(|argument| argument.as_ref().to_string_lossy().into_owned())
        .collect();
    let what = format!("grace {shown:?}");
    let output = run_exact(Mode::Subreaper, arguments);
    let line = only_line(&output, &what);
    assert_eq!(output.status.code(), Some(2), "{what}: {line}");
    assert!(output.stdout.is_empty(), "{what}: wrote to stdout");
    assert!(line.starts_with("grace: "), "{what}: {line:?}");
    assert!(
        line.contains(names),
        "{what}: {line:?} does not name {names:?}"
    );
}

#[test]
fn a_missing_command_is_a_usage_error() {
    assert_usage_error::<&str>(&[], "no command");
    assert_usage_error(&["--"], "no command");
    assert_usage_error(&["-t", "1", "-v"], "no command");
}

#[test]
fn bad_durations_are_usage_errors() {
    for value in [
        "",
        "-1",
        "-1s",
        "1e9s",
        "10x",
        "99999999999999999999",
        "400d",
    ] {
        assert_usage_error(&["-t", value, "true"], &format!("'{value}'"));
        assert_usage_error(&["--cleanup-timeout", value, "true"], &format!("'{value}'"));
    }
    assert_usage_error(&["--grace-period=1 fortnight", "true"], "'1 fortnight'");
}

#[test]
fn bad_signals_are_usage_errors() {
    let cases = [
        (["--stop-signals", "FOO"], "FOO"),
        (["--stop-signals", "0"], "0"),
        (["--stop-signals", "65"], "65"),
        (["--stop-signals", "KILL"], "SIGKILL"),
        (["-r", "KILL:TERM"], "SIGKILL"),
        (["-r", "TERM:KILL"], "SIGKILL"),
        (["-r", "TERM:"], "TERM:"),
        (["-r", "TERM"], "FROM:TO"),
        (["-r", "STOP:HUP"], "SIGSTOP"),
        (["-r", "TERM:FOO"], "FOO"),
        (["-p", "BAR"], "BAR"),
    ];
    for (arguments, names) in cases {
        assert_usage_error(&[arguments[0], arguments[1], "true"], names);
    }
}

#[test]
fn bad_success_exits_are_usage_errors() {
    for value in ["256", "-1", "x", ""] {
        assert_usage_error(&["-e", value, "true"], &format!("'{value}'"));
    }
}

#[test]
fn unknown_options_are_usage_errors() {
    assert_usage_error(&["--bogus", "true"], "--bogus");
    assert_usage_error(&["--bogus=1", "true"], "--bogus");
    assert_usage_error(&["-x", "true"], "-x");
    assert_usage_error(&["-t", "1", "-Z", "true"], "-Z");
}

#[test]
fn a_non_utf8_option_value_is_a_usage_error() {
    let invalid = OsStr::from_bytes(b"1\xffs");
    assert_usage_error(&[OsStr::new("-t"), invalid, OsStr::new("true")], "UTF-8");
    assert_usage_error(
        &[OsStr::new("--stop-signals"), invalid, OsStr::new("true")],
        "UTF-8",
    );
}

#[test]
fn a_non_utf8_argument_reaches_the_child_byte_exact() {
    let argument = OsStr::from_bytes(b"a\xff\xfe b\x80\n");
    for mode in MODES {
        let mut arguments: Vec<OsString> = ["sh", "-c", r#"printf %s "$1" | od -An -tx1"#, "sh"]
            .iter()
            .map(OsString::from)
            .collect();
        arguments.push(argument.to_os_string());
        let output = run_exact(mode, &arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{mode:?}\n{stderr}");
        let hex = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(hex, "61 ff fe 20 62 80 0a", "{mode:?}\n{stderr}");
    }
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDirectory(PathBuf);

impl TempDirectory {
    fn new(name: &str) -> TempDirectory {
        let path = std::env::temp_dir().join(format!("grace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDirectory(path)
    }

    /// Writes `contents` to `name` with permission bits `mode`; returns its path.
    fn file(&self, name: &str, contents: &str, mode: u32) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("writing a file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("setting permissions");
        path.display().to_string()
    }
}

impl Drop for TempDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_command_that_cannot_start_gives_126_or_127_with_one_line() {
    let directory = TempDirectory::new("spawn-failures");
    let not_executable = directory.file("not-executable", "#!/bin/sh\necho hello\n", 0o644);
    let bad_interpreter = directory.file("bad-interpreter", "#!/nonexistent/interp\n", 0o755);
    let directory_path = directory.0.display().to_string();
    let cases: [(&str, i32, &[&str]); 6] = [
        (
            "no-such-command-for-grace",
            127,
            &["no-such-command-for-grace", "not found"],
        ),
        ("/no/such/file", 127, &["/no/such/file", "no such file"]),
        ("", 127, &["''", "empty"]),
        (&directory_path, 126, &[&directory_path, "is a directory"]),
        (
            &not_executable,
            126,
            &[&not_executable, "permission denied"],
        ),
        (
            &bad_interpreter,
            126,
            &[&bad_interpreter, "bad interpreter"],
        ),
    ];
    for mode in MODES {
        for (command, expected, names) in cases {
            let what = format!("{mode:?} {command:?}");
            let output = run_exact(mode, ["--", command, "argument"]);
            let line = only_line(&output, &what);
            assert_eq!(output.status.code(), Some(expected), "{what}: {line}");
            assert!(output.stdout.is_empty(), "{what}");
            for name in names {
                assert!(
                    line.contains(name),
                    "{what}: {line:?} does not name {name:?}"
                );
            }
        }
    }
}

#[test]
fn options_after_the_command_belong_to_it() {
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    let output = run_exact(
        Mode::Subreaper,
        [
            "-t",
            "1",
            "sh",
            "-c",
            r#"echo "$0 $1 $2 $3""#,
            "-t",
            "x",
            "--bogus",
            "--",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "-t x --bogus --\n");
    assert!(stderr.contains("grace period 1s"), "{stderr}");

    // After `--`, even a word that looks like an option is the command. (grace's one line: the emulator adds
    // a warning that grace is no subreaper.)
    if common::NO_SUBREAPER.applies() {
        return;
    }
    let output = run_exact(Mode::Subreaper, ["--", "-x"]);
    let line = only_line(&output, "grace -- -x");
    assert_eq!(output.status.code(), Some(127), "{line}");
    assert!(line.contains("-x: command not found"), "{line}");
}

#[test]
fn help_and_version_go_to_stdout_with_status_0() {
    for (flag, expected) in [
        ("--help", "Usage: grace"),
        ("-h", "Usage: grace"),
        ("--version", &format!("grace {}", env!("CARGO_PKG_VERSION"))),
        ("-V", &format!("grace {}", env!("CARGO_PKG_VERSION"))),
    ] {
        let output = run_exact(Mode::Subreaper, [flag]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert!(stdout.contains(expected), "{flag}:\n{stdout}");
        assert!(output.stderr.is_empty(), "{flag}");
    }
}

#[test]
fn grace_period_is_read_from_the_environment() {
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .env("GRACE_PERIOD", "1s")
            .spawn(&child(&["ignore-term"]));
        // spawn waited for the start line (the child's first line may come before it)
        let started = &grace
            .seen()
            .iter()
            .find(|line| line.text.contains("started pid"))
            .expect("spawn waited for it")
            .text;
        assert!(started.contains("grace period 1s"), "{started}");
        grace.wait_stdout("ready");
        let sent = Instant::now();
        grace.signal(libc::SIGTERM);
        let killed = grace.wait_log("SIGKILL to");
        let finished = grace.finish();
        assert!(
            killed.text.contains("grace period of 1s")
                || killed.text.contains("grace period of 1.000s"),
            "{mode:?}: {}",
            killed.text
        );
        let waited = killed.at - sent;
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
            "{mode:?}: killed after {waited:?}\n{}",
            finished.dump()
        );
        assert_eq!(finished.code(), 128 + libc::SIGKILL, "{}", finished.dump());
    }
}

#[test]
fn an_invalid_grace_period_in_the_environment_is_a_usage_error() {
    let (status, stdout, stderr) = run_to_end(
        Grace::new(Mode::Subreaper).env("GRACE_PERIOD", "abc"),
        &["true".to_string()],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("grace: "), "{stderr}");
    assert!(
        lines[0].contains("GRACE_PERIOD") || lines[0].contains("'abc'"),
        "{stderr}"
    );
    // The command line wins over the environment.
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    let (status, _, stderr) = run_to_end(
        Grace::new(Mode::Subreaper)
            .env("GRACE_PERIOD", "abc")
            .args(["-t", "1"]),
        &["true".to_string()],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// grace's own configuration variables (the GRACE_* options, TINI_KILL_PROCESS_GROUP, TINI_VERBOSITY) are
/// not passed on to the command, and `-v` says which were withheld; any other variable is passed on. A grace
/// that the command runs in turn therefore acts only on what is set for it: with the outer grace's
/// `GRACE_MAX_RESTARTS=1` the inner command runs twice in all, not four times.
#[test]
fn grace_s_own_variables_do_not_reach_the_command() {
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    let (status, stdout, stderr) = run_to_end(
        Grace::new(Mode::Subreaper)
            .args(["-v"])
            .env("GRACE_PERIOD", "3s")
            .env("GRACE_MAX_RESTARTS", "1")
            .env("GRACE_REWRITE", "")
            .env("TINI_VERBOSITY", "2")
            .env("TINI_KILL_PROCESS_GROUP", "")
            .env("GRACE_SERVER_PORT", "8080")
            .env("TINI_SUBREAPER", "1"),
        &common::sh("env | grep -E '^(GRACE|TINI)_' | sort"),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["GRACE_SERVER_PORT=8080", "TINI_SUBREAPER=1"],
        "{stderr}"
    );
    let withheld = stderr
        .lines()
        .find(|line| line.contains("not passed on to the command"))
        .unwrap_or_else(|| panic!("no line says what was withheld:\n{stderr}"));
    for name in [
        "GRACE_PERIOD",
        "GRACE_MAX_RESTARTS",
        "GRACE_REWRITE",
        "TINI_VERBOSITY",
        "TINI_KILL_PROCESS_GROUP",
    ] {
        assert!(withheld.contains(name), "{name}: {withheld}");
    }
    assert!(!withheld.contains("GRACE_SERVER_PORT"), "{withheld}");

    // A grace in a grace: the outer restarts its command (the inner grace) once; the inner one, with no
    // policy of its own, runs its command once each time.
    let (status, stdout, stderr) = run_to_end(
        Grace::new(Mode::Subreaper)
            .env("GRACE_RESTART", "on-failure")
            .env("GRACE_RESTART_DELAY", "0")
            .env("GRACE_MAX_RESTARTS", "1"),
        &[
            common::grace_binary().to_string(),
            "--".to_string(),
            "sh".to_string(),
            "-c".to_string(),
            "echo run; exit 3".to_string(),
        ],
    );
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert_eq!(
        stdout.lines().filter(|line| *line == "run").count(),
        2,
        "{stdout}\n{stderr}"
    );
}

/// A stop signal rewritten to SIGCHLD (which tells a process a child changed state) or SIGCONT (which grace
/// sends with every forwarded stop signal anyway) would turn every stop into nothing: refused with one line
/// and status 2, from the command line and the environment alike. Such a rewrite of a signal that does not
/// stop grace is the operator's business, and is accepted.
#[test]
fn a_stop_signal_rewritten_to_one_that_cannot_stop_is_refused() {
    assert_usage_error(&["-r", "TERM:CHLD", "true"], "SIGCHLD");
    assert_usage_error(&["-r", "INT:CONT", "true"], "SIGCONT");
    assert_usage_error(
        &["--stop-signals", "QUIT", "-r", "QUIT:CHLD", "true"],
        "stop signal SIGQUIT",
    );
    let (status, stdout, stderr) = run_to_end(
        Grace::new(Mode::Subreaper).env("GRACE_REWRITE", "HUP:0,TERM:CHLD"),
        &["true".to_string()],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("GRACE_REWRITE"), "{stderr}");
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    let output = run_exact(Mode::Subreaper, ["-r", "HUP:CHLD", "true"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
