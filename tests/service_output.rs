//! The services' output told apart (`log = "prefix"`, `--log-services`): prefixed lines on their own stream
//! in text and JSON, long lines in marked pieces of one write each, binary bytes, partial lines, nothing lost
//! when a service exits, back-pressure to the service when the log reader stalls (never to grace), and no
//! line ever cut by another under load. Each service is tests/support/service.py; every test runs in both
//! modes.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Finished, Grace, Mode, Running, Stream, LATE, MODES};

/// A services file in a directory of its own, removed when the test ends.
struct Setup {
    directory: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let directory = std::env::temp_dir().join(format!(
            "grace-output-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("creating the test's directory");
        Setup { directory }
    }

    /// Writes `text` as services.toml and returns grace's options to use it.
    fn file(&self, text: &str) -> Vec<String> {
        let path = self.directory.join("services.toml").display().to_string();
        std::fs::write(&path, text).expect("writing the services file");
        vec!["--services".to_string(), path]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// `python3 -u service.py NAME ARGS…`.
fn main_command(name: &str, arguments: &[&str]) -> Vec<String> {
    let stub = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/service.py");
    let mut words = vec![
        "python3".to_string(),
        "-u".to_string(),
        stub.display().to_string(),
        name.to_string(),
    ];
    words.extend(arguments.iter().map(|word| word.to_string()));
    words
}

/// The same as a TOML array, for a service's `command`.
fn command(name: &str, arguments: &[&str]) -> String {
    let quoted: Vec<String> = main_command(name, arguments)
        .iter()
        .map(|word| format!("{word:?}"))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn start(mode: Mode, options: Vec<String>, main: Vec<String>) -> Running {
    Grace::new(mode)
        .args(options)
        .spawn_waiting_for(&main, "starting")
}

/// The monotonic clock, as the stubs print it, now.
fn monotonic_now() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY-free: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// `text` without a service's prefix (`NAME | ` or `NAME + `, the name padded), if it has one.
fn unprefixed(text: &str) -> Option<(&str, bool, &str)> {
    let (head, rest) = text.split_at_checked(text.find([' '])?)?;
    let rest = rest.trim_start_matches(' ');
    let (mark, content) = rest.split_at_checked(2)?;
    match mark {
        "| " => Some((head, false, content)),
        "+ " => Some((head, true, content)),
        _ => None,
    }
}

/// The fields of a JSON object line.
fn object(text: &str) -> Option<Vec<(String, common::json::Json)>> {
    match common::json::Json::parse(text) {
        Ok(common::json::Json::Object(fields)) => Some(fields),
        _ => None,
    }
}

fn string_field<'a>(fields: &'a [(String, common::json::Json)], key: &str) -> Option<&'a str> {
    fields.iter().find_map(|(name, value)| match value {
        common::json::Json::String(text) if name == key => Some(text.as_str()),
        _ => None,
    })
}

/// The `output` objects of `lines` as (service, stream, msg, continuation), in order.
fn output_events(lines: &[&str]) -> Vec<(String, String, String, bool)> {
    lines
        .iter()
        .filter_map(|line| object(line))
        .filter(|fields| string_field(fields, "event") == Some("output"))
        .map(|fields| {
            let field = |key| string_field(&fields, key).unwrap_or_default().to_string();
            let continuation = fields.iter().any(|(name, value)| {
                name == "continuation" && *value == common::json::Json::Bool(true)
            });
            (
                field("service"),
                field("stream"),
                field("msg"),
                continuation,
            )
        })
        .collect()
}

/// With `--log-services prefix` (or GRACE_LOG_SERVICES), each line of a service goes out on the stream it
/// was written to as `NAME | line`, every name padded to the longest, or as one JSON object with
/// `--log-format json`; a service's own `log` key wins, and one left on `inherit` is untouched.
#[test]
fn prefixed_lines_name_their_service_on_their_own_stream_in_text_and_json() {
    for mode in MODES {
        for json in [false, true] {
            let setup = Setup::new("prefix");
            let text = format!(
                "[web]\ncommand = {}\n\n[db-proxy]\ncommand = {}\nlog = \"prefix\"\n\n[side]\ncommand = {}\nlog = \"inherit\"\n\n[app]\nmain = true\n",
                command("web", &["--write", "stdout", "web says hi\\n", "--write", "stderr", "web warns\\n"]),
                command("db-proxy", &["--write", "stdout", "proxy up\\n"]),
                command("side", &["--write", "stdout", "side untouched\\n", "--write", "stderr", "side err\\n"]),
            );
            let mut grace = Grace::new(mode).args(setup.file(&text));
            grace = if json {
                grace
                    .args(["--log-format", "json"])
                    .env("GRACE_LOG_SERVICES", "prefix")
            } else {
                grace.args(["--log-services", "prefix"])
            };
            let mut grace = grace.spawn_waiting_for(&main_command("app", &[]), "starting");
            grace.wait_stdout("svc app ready");
            grace.wait_stdout("proxy up");
            grace.wait_stdout("web says hi");
            // On stderr, grace's own start lines name these words too: the service's lines are waited for.
            grace.wait_log(if json {
                "\"msg\":\"web warns\""
            } else {
                "| web warns"
            });
            grace.wait_stdout("side untouched");
            grace.wait_until(
                |line| line.stream == Stream::Stderr && line.text == "side err",
                "side's own line",
            );
            common::stop(&grace);
            let finished = grace.finish();
            let output = finished.dump();
            assert_eq!(finished.code(), 0, "{mode:?} json {json}\n{output}");
            let (stdout, stderr) = (finished.stdout(), finished.log());
            // The service left on inherit: its bytes as they were, on its own streams.
            assert!(stdout.contains(&"side untouched"), "{mode:?}\n{output}");
            assert!(stderr.contains(&"side err"), "{mode:?}\n{output}");
            if json {
                let out = output_events(&stdout);
                let err = output_events(&stderr);
                let has = |events: &[(String, String, String, bool)],
                           service: &str,
                           stream: &str,
                           msg: &str| {
                    events
                        .iter()
                        .any(|(s, t, m, c)| s == service && t == stream && m == msg && !c)
                };
                assert!(
                    has(&out, "web", "stdout", "web says hi"),
                    "{mode:?}\n{output}"
                );
                assert!(
                    has(&err, "web", "stderr", "web warns"),
                    "{mode:?}\n{output}"
                );
                assert!(
                    has(&out, "db-proxy", "stdout", "proxy up"),
                    "{mode:?}\n{output}"
                );
                assert!(
                    out.iter()
                        .any(|(s, _, m, _)| s == "app" && m.starts_with("svc app started t=")),
                    "{mode:?}\n{output}"
                );
                // Nothing of an inheriting service is wrapped, nothing prefixed goes out raw.
                assert!(
                    !out.iter().chain(&err).any(|(s, ..)| s == "side"),
                    "{output}"
                );
                assert!(!stdout.contains(&"web says hi"), "{output}");
                // The fields, in their order; grace's own lines stay as they were.
                let line = stdout
                    .iter()
                    .find(|line| line.contains("\"proxy up\""))
                    .unwrap();
                let fields = object(line).unwrap();
                let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
                assert_eq!(names, ["ts", "event", "service", "stream", "msg"], "{line}");
                assert!(
                    stderr
                        .iter()
                        .filter_map(|line| object(line))
                        .any(|fields| string_field(&fields, "event") == Some("services_started")),
                    "{output}"
                );
            } else {
                assert!(
                    stdout.contains(&"web      | web says hi"),
                    "{mode:?}\n{output}"
                );
                assert!(
                    stderr.contains(&"web      | web warns"),
                    "{mode:?}\n{output}"
                );
                assert!(
                    stdout.contains(&"db-proxy | proxy up"),
                    "{mode:?}\n{output}"
                );
                assert!(
                    stdout
                        .iter()
                        .any(|line| line.starts_with("app      | svc app started t=")),
                    "{mode:?}\n{output}"
                );
                assert!(!stdout.contains(&"web says hi"), "{output}");
                assert!(
                    !stdout.iter().any(|line| line.contains("| side")),
                    "{output}"
                );
            }
        }
    }
}

/// A line of 100 KiB goes out in pieces of at most one PIPE_BUF write each, prefixed, each after the first
/// marked as a continuation, which put together are the line; the next line starts afresh.
#[test]
fn a_100_kib_line_goes_out_in_marked_pieces_of_one_write_each() {
    const LENGTH: usize = 100 * 1024;
    let expected: Vec<u8> = (b"L".iter().chain(b"0123456789".iter().cycle()))
        .take(LENGTH)
        .copied()
        .collect();
    for mode in MODES {
        for json in [false, true] {
            let setup = Setup::new("long-line");
            let text = format!(
                "[long]\ncommand = {}\nlog = \"prefix\"\n\n[app]\nmain = true\n",
                command(
                    "long",
                    &[
                        "--long-line",
                        "stdout",
                        &LENGTH.to_string(),
                        "--write",
                        "stdout",
                        "after\\n"
                    ]
                ),
            );
            let mut options = setup.file(&text);
            if json {
                options.extend(["--log-format", "json"].map(String::from));
            }
            let mut grace = start(mode, options, main_command("app", &[]));
            grace.wait_stdout("svc app ready");
            grace.wait_stdout("after");
            common::stop(&grace);
            let finished = grace.finish();
            let output = finished.dump();
            assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
            let stdout = finished.stdout();
            let pieces: Vec<(bool, String)> = if json {
                output_events(&stdout)
                    .into_iter()
                    .filter(|(service, ..)| service == "long")
                    .map(|(_, _, msg, continuation)| (continuation, msg))
                    .collect()
            } else {
                stdout
                    .iter()
                    .filter_map(|line| unprefixed(line))
                    .filter(|(name, ..)| *name == "long")
                    .map(|(_, continuation, content)| (continuation, content.to_string()))
                    .collect()
            };
            for line in &stdout {
                assert!(
                    line.len() < 4096,
                    "{mode:?} json {json}: a line of {} bytes",
                    line.len() + 1
                );
            }
            let first = pieces
                .iter()
                .position(|(_, text)| text.starts_with("L0123456789"))
                .unwrap_or_else(|| panic!("{mode:?}: no piece of the long line\n{output}"));
            let count = pieces[first + 1..]
                .iter()
                .take_while(|(continuation, _)| *continuation)
                .count();
            let line = &pieces[first..=first + count];
            assert!(
                !line[0].0,
                "{mode:?}: the first piece is marked as a continuation"
            );
            assert!(
                line.len() >= 26,
                "{mode:?}: {} pieces\n{output}",
                line.len()
            );
            assert_eq!(
                pieces.get(first + count + 1),
                Some(&(false, "after".to_string())),
                "{mode:?}: the next line"
            );
            let whole: String = line.iter().map(|(_, text)| text.as_str()).collect();
            assert_eq!(
                whole.as_bytes(),
                expected,
                "{mode:?} json {json}: the pieces are not the line"
            );
        }
    }
}

/// Bytes that are not text pass through a prefixed line as they are; in JSON they make valid JSON, bytes
/// that are not UTF-8 becoming U+FFFD and control characters escaped.
#[test]
fn binary_output_passes_through_text_and_makes_valid_json() {
    let bytes: Vec<u8> = (0..=255u8)
        .filter(|&byte| byte != b'\n')
        .chain(*b"\xf0\x28\x8c\xbc end")
        .collect();
    let escaped: String = bytes.iter().map(|byte| format!("\\x{byte:02x}")).collect();
    for mode in MODES {
        for json in [false, true] {
            let setup = Setup::new("binary");
            let text = "[app]\nmain = true\nlog = \"prefix\"\n";
            let mut options = setup.file(text);
            if json {
                options.extend(["--log-format", "json"].map(String::from));
            }
            let main = main_command(
                "app",
                &[
                    "--write",
                    "stdout",
                    &format!("{escaped}\\n"),
                    "--exit-now",
                    "0",
                ],
            );
            let result = common::output_within(&mut Grace::new(mode).args(options).command(&main));
            let stderr = String::from_utf8_lossy(&result.stderr);
            assert_eq!(result.status.code(), Some(0), "{mode:?}\n{stderr}");
            let lines: Vec<&[u8]> = result
                .stdout
                .split_inclusive(|&byte| byte == b'\n')
                .collect();
            if json {
                let text: Vec<&str> = lines
                    .iter()
                    .map(|line| {
                        std::str::from_utf8(line)
                            .unwrap_or_else(|_| panic!("{mode:?}: not UTF-8: {line:?}"))
                    })
                    .collect();
                for line in &text {
                    assert!(object(line).is_some(), "{mode:?}: not JSON: {line:?}");
                }
                let events = output_events(&text);
                let expected = String::from_utf8_lossy(&bytes).into_owned();
                assert!(
                    events
                        .iter()
                        .any(|(service, stream, msg, _)| service == "app"
                            && stream == "stdout"
                            && *msg == expected),
                    "{mode:?}: {text:?}"
                );
            } else {
                let expected = [b"app | ".as_slice(), &bytes, b"\n"].concat();
                assert!(lines.contains(&expected.as_slice()), "{mode:?}: {lines:?}");
            }
        }
    }
}

/// A service that exits right after writing loses nothing: what is left in its pipes, its last partial line
/// included, is read before its exit is logged (and, on a stream that keeps up, written before it). A `once`
/// task writes 187 KB to stdout, more than its pipe holds, and 19 KB to stderr; then the main service writes
/// a little and exits, and grace with it.
#[test]
fn a_service_that_exits_right_after_writing_loses_nothing() {
    for mode in MODES {
        let setup = Setup::new("exit-now");
        let text = format!(
            "[migrate]\ncommand = {}\nonce = true\nlog = \"prefix\"\n\n[app]\nmain = true\nlog = \"prefix\"\n",
            command(
                "migrate",
                &["--burst", "stdout", "300", "--burst", "stderr", "20", "--write", "stderr", "migrate's last words", "--exit-now", "0"]
            ),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        grace.wait_stdout("svc app ready");
        grace.wait_count(Stream::Stdout, "migrate | B migrate stdout", 300);
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        let stdout = reassembled(&finished.stdout(), "migrate");
        let bursts: Vec<&String> = stdout
            .iter()
            .filter(|line| line.starts_with("B "))
            .collect();
        assert_eq!(bursts.len(), 300, "{mode:?}\n{output}");
        for (seq, line) in bursts.iter().enumerate() {
            check_burst_line(line, "migrate", "stdout", seq);
        }
        check_written_before_exit(&finished, "migrate", 20, mode);

        let main = main_command(
            "app",
            &[
                "--burst",
                "stderr",
                "5",
                "--write",
                "stderr",
                "app's last words",
                "--exit-now",
                "7",
            ],
        );
        let grace = start(
            mode,
            setup.file("[app]\nmain = true\nlog = \"prefix\"\n"),
            main,
        );
        let finished = grace.finish();
        assert_eq!(finished.code(), 7, "{mode:?}\n{}", finished.dump());
        check_written_before_exit(&finished, "app", 5, mode);
    }
}

/// `name`'s `lines` lines of its stderr burst and its last partial line come before its exit in the log.
fn check_written_before_exit(finished: &Finished, name: &str, lines: usize, mode: Mode) {
    let output = finished.dump();
    let stderr = finished.log();
    let exited = stderr
        .iter()
        .position(|line| {
            line.contains(&format!("{name}: pid")) && line.contains("exited with status")
        })
        .unwrap_or_else(|| panic!("{mode:?}: no exit of {name}\n{output}"));
    let before = reassembled(&stderr[..exited], name);
    let bursts: Vec<&String> = before
        .iter()
        .filter(|line| line.starts_with("B "))
        .collect();
    assert_eq!(
        bursts.len(),
        lines,
        "{mode:?}: {name}'s lines before its exit\n{output}"
    );
    for (seq, line) in bursts.iter().enumerate() {
        check_burst_line(line, name, "stderr", seq);
    }
    assert_eq!(
        before.last().map(String::as_str),
        Some(format!("{name}'s last words").as_str()),
        "{mode:?}: {name}'s partial line before its exit\n{output}"
    );
}

/// The lines of `name` in `lines`, its pieces put together again.
fn reassembled(lines: &[&str], name: &str) -> Vec<String> {
    let mut whole: Vec<String> = Vec::new();
    for line in lines {
        let Some((service, continuation, content)) = unprefixed(line) else {
            continue;
        };
        if service != name {
            continue;
        }
        match (continuation, whole.last_mut()) {
            (true, Some(last)) => last.push_str(content),
            (true, None) => panic!("a continuation of {name} begins its output: {line:?}"),
            (false, _) => whole.push(content.to_string()),
        }
    }
    whole
}

/// `B NAME STREAM SEQ LEN FILL`, whole: LEN times the letter of SEQ.
fn check_burst_line(line: &str, name: &str, stream: &str, seq: usize) {
    let mut words = line.splitn(6, ' ');
    let fields: Vec<&str> = (&mut words).take(5).collect();
    let fill = words.next().unwrap_or_default();
    assert_eq!(
        fields[..4],
        ["B", name, stream, &seq.to_string()],
        "cut or out of order: {:.200}",
        line
    );
    let length: usize = fields[4]
        .parse()
        .unwrap_or_else(|_| panic!("cut: {line:.200}"));
    let letter = (b'a' + (seq % 26) as u8) as char;
    assert!(
        fill.len() == length && fill.chars().all(|c| c == letter),
        "a cut line: {} bytes of {length} expected, {:.200}",
        fill.len(),
        line
    );
}

/// A partial line, without its newline, goes out after 100 ms, and not before.
#[test]
fn a_partial_line_goes_out_after_100_ms() {
    for mode in MODES {
        let setup = Setup::new("partial");
        let text = format!(
            "[prompt]\ncommand = {}\nlog = \"prefix\"\n\n[app]\nmain = true\n",
            command("prompt", &["--write", "stderr", "Password: "]),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        grace.wait_stdout("svc app ready");
        let started = grace.wait_stdout("svc prompt started");
        let partial = grace.wait_log("prompt | Password: ");
        // `svc prompt started t=SECONDS pid=P …`, after the prefix.
        let started_at: f64 = started
            .text
            .split_once(" t=")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no time in {:?}", started.text));
        // The harness stamps each line as it reads it, on the same monotonic clock as the services.
        let seen = monotonic_now() - partial.at.elapsed().as_secs_f64();
        assert!(
            seen - started_at >= 0.1,
            "{mode:?}: the partial line came {:.3} s after the service started, before 100 ms",
            seen - started_at
        );
        assert_eq!(partial.text, "prompt | Password: ", "{mode:?}");
        common::stop(&grace);
        let finished = grace.finish();
        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    }
}

/// A pipe, both ends close-on-exec.
fn os_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe")
}

/// A pipe whose buffer the test has filled, and never reads: whatever grace writes there waits for ever.
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let (reader, writer) = os_pipe();
    // Through a description of its own, so that the end grace gets stays blocking.
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", writer.as_raw_fd()))
        .expect("opening the pipe again");
    while nix::unistd::write(&filler, &[b'.'; 4096]).is_ok() {}
    (reader, writer)
}

/// On a failed test, SIGKILL to every descendant of a grace the harness did not start (grace first stopped,
/// so that it reparents nothing meanwhile).
struct KillTreeOnFailure(i32);

impl Drop for KillTreeOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY-free: kill(2) on processes this test started, directly or not.
            unsafe { libc::kill(self.0, libc::SIGSTOP) };
            for process in common::descendants(self.0) {
                unsafe { libc::kill(process.pid, libc::SIGKILL) };
            }
        }
    }
}

/// Whether a thread of `pid` waits in a write to a full pipe.
fn blocked_in_pipe_write(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("wchan"))
            .is_ok_and(|wchan| wchan.contains("pipe_write"))
    })
}

fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

use common::wait_until;

/// The log reader stalls: grace stops reading the flooding services' pipes once their buffers are full, so
/// that the services block in write as on a stalled stdout of their own, while grace goes on: its own lines
/// come at once (when stderr is read), and the stop ends at its deadline with every reader stalled.
#[test]
fn a_stalled_reader_blocks_the_service_never_grace() {
    use std::process::Stdio;
    for mode in MODES {
        for both_stalled in [false, true] {
            let setup = Setup::new("stalled");
            let text = format!(
                "[flood-out]\ncommand = {}\n\n[flood-err]\ncommand = {}\n\n[app]\nmain = true\n",
                command("flood-out", &["--flood", "stdout"]),
                command("flood-err", &["--flood", "stderr"]),
            );
            let mut options = setup.file(&text);
            options.extend(
                [
                    "--log-services",
                    "prefix",
                    "-t",
                    "3s",
                    "--cleanup-timeout",
                    "1s",
                ]
                .map(String::from),
            );
            let (_stdout_reader, stdout_writer) = full_pipe();
            let mut command = Grace::new(mode)
                .args(options)
                .command(&main_command("app", &[]));
            command.stdout(Stdio::from(stdout_writer));
            let stderr_reader = if both_stalled {
                let (reader, writer) = full_pipe();
                command.stderr(Stdio::from(writer));
                Some(reader)
            } else {
                command.stderr(Stdio::piped());
                None
            };
            let mut outer = command.spawn().expect("starting grace");
            drop(command);
            let log = outer.stderr.take().map(|stderr| {
                let (sender, receiver) = std::sync::mpsc::channel::<(String, Instant)>();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stderr)
                        .lines()
                        .map_while(Result::ok)
                    {
                        if sender.send((line, Instant::now())).is_err() {
                            return;
                        }
                    }
                });
                receiver
            });
            let outer_pid = outer.id() as i32;
            let _kill = common::KillOnFailure(vec![outer_pid]);
            let grace_pid = match mode {
                Mode::Subreaper => outer_pid,
                Mode::Pid1 => {
                    wait_until("grace runs in its namespace", || {
                        !common::children(outer_pid).is_empty()
                    });
                    common::children(outer_pid)[0]
                }
            };
            let _tree = KillTreeOnFailure(grace_pid);
            // Both flooding services end up blocked in write: with stdout stalled, flood-out's buffer fills
            // and grace stops reading its pipe; flood-err's too when stderr is stalled.
            let blocked = |name: &str| {
                common::descendants(grace_pid).iter().any(|process| {
                    command_line(process.pid).contains(&format!("service.py {name}"))
                        && blocked_in_pipe_write(process.pid)
                })
            };
            wait_until("flood-out blocks in write", || blocked("flood-out"));
            // The app takes its SIGTERM once it waits for signals (it cannot say so: its stdout is stalled).
            wait_until("the app waits for signals", || {
                common::descendants(grace_pid).iter().any(|process| {
                    command_line(process.pid).contains("service.py app")
                        && std::fs::read_to_string(format!("/proc/{}/wchan", process.pid))
                            .is_ok_and(|wchan| wchan.contains("sigtimedwait"))
                })
            });
            if both_stalled {
                wait_until("flood-err blocks in write", || blocked("flood-err"));
            }
            let sent = Instant::now();
            common::send_signal(grace_pid, libc::SIGTERM);
            if let Some(log) = &log {
                // grace's own lines do not wait behind the services' output: the stop is logged at once.
                let deadline = Instant::now() + common::TIMEOUT;
                let at = loop {
                    let (line, at) = log
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        .expect("grace's log goes on");
                    if line.contains("stopping the services in reverse order") {
                        break at;
                    }
                };
                assert!(
                    at.duration_since(sent) < LATE,
                    "{mode:?}: the stop was logged {:?} after SIGTERM",
                    at.duration_since(sent)
                );
            }
            let (sender, exited) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let status = outer.wait().expect("waiting for grace");
                let _ = sender.send((status, Instant::now()));
            });
            let (status, at) = exited.recv_timeout(common::TIMEOUT).unwrap_or_else(|_| {
                panic!("{mode:?}: grace did not exit with its readers stalled")
            });
            let took = at.duration_since(sent);
            assert!(
                took >= Duration::from_secs(3) && took < Duration::from_secs(3) + LATE,
                "{mode:?}, stderr stalled too: {both_stalled}: exit {took:?} after SIGTERM, not at the 3 s deadline"
            );
            // The app exited on its SIGTERM (its lines had room of their own); the floods were killed.
            assert_eq!(status.code(), Some(0), "{mode:?}");
            if let Some(log) = log {
                // flood-out, blocked in write, could not act on its SIGTERM: it is in the report, SIGKILLed.
                let rest: Vec<String> = log.iter().map(|(line, _)| line).collect();
                assert!(
                    rest.iter().any(|line| line.contains("  flood-out: pid")),
                    "{mode:?}: flood-out was not among the survivors at the deadline: it was not blocked\n{}",
                    rest.join("\n")
                );
            }
            drop(stderr_reader);
            eprintln!(
                "services: stdout stalled{}, {mode:?}: the flooding services blocked in write; exit {:.3} s after \
                 SIGTERM (deadline 3 s)",
                if both_stalled { " and stderr" } else { "" },
                took.as_secs_f64()
            );
        }
    }
}

/// Under load — two prefixed services and one that inherits writing 3,000 lines each of every length
/// (some longer than one write) on both streams, grace logging each of a flood of forwarded signals — no
/// line is ever cut by another: each write is whole lines of at most PIPE_BUF bytes.
#[test]
fn no_line_is_ever_cut_by_another_under_load() {
    const LINES: usize = 3000;
    let count = LINES.to_string();
    for mode in MODES {
        let setup = Setup::new("interleave");
        let burst = |name: &str, more: &[&str]| {
            let mut arguments = vec!["--burst", "stdout", &count, "--burst", "stderr", &count];
            arguments.extend(more);
            command(name, &arguments)
        };
        // The app first, so that it is ready to take signals while the others write.
        let text = format!(
            "[app]\nmain = true\nlog = \"prefix\"\n\n[one]\ncommand = {}\nlog = \"prefix\"\n\n[the-second]\ncommand = {}\nlog = \"prefix\"\n\n[plain]\ncommand = {}\n",
            burst("one", &[]),
            burst("the-second", &[]),
            burst("plain", &["--max-line", "3000"]),
        );
        let mut options = setup.file(&text);
        options.push("-v".to_string());
        let mut grace = start(mode, options, main_command("app", &[]));
        grace.wait_stdout("svc app ready");
        // grace logs each signal it forwards (-v), from another thread, for as long as the services write.
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let signaller = {
            let (writing, pid) = (writing.clone(), grace.grace_pid());
            std::thread::spawn(move || {
                while writing.load(std::sync::atomic::Ordering::Relaxed) {
                    common::send_signal(pid, libc::SIGUSR1);
                    std::thread::yield_now();
                }
            })
        };
        // Each service says so after each of its two bursts.
        grace.wait_count(Stream::Stdout, "burst done", 6);
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        signaller.join().expect("the signalling thread");
        common::stop(&grace);
        let finished = grace.finish();
        let output_size: usize = finished.lines.iter().map(|line| line.text.len()).sum();
        assert_eq!(finished.code(), 0, "{mode:?}");
        for (stream, lines, name) in [
            (Stream::Stdout, finished.stdout(), "stdout"),
            (Stream::Stderr, finished.log(), "stderr"),
        ] {
            let _ = stream;
            let mut plain = 0;
            for line in &lines {
                if line.starts_with("B plain ") {
                    check_burst_line(line, "plain", name, plain);
                    plain += 1;
                } else {
                    assert!(
                        line.starts_with("[grace ")
                            || line.starts_with("svc plain ")
                            || unprefixed(line).is_some(),
                        "{mode:?}: a line cut by another on {name}: {line:.300}"
                    );
                }
            }
            assert_eq!(plain, LINES, "{mode:?}: plain's lines on {name}");
            for service in ["one", "the-second"] {
                let bursts: Vec<String> = reassembled(&lines, service)
                    .into_iter()
                    .filter(|line| line.starts_with("B "))
                    .collect();
                assert_eq!(bursts.len(), LINES, "{mode:?}: {service}'s lines on {name}");
                for (seq, line) in bursts.iter().enumerate() {
                    check_burst_line(line, service, name, seq);
                }
            }
        }
        let forwarded = finished
            .log()
            .iter()
            .filter(|line| line.contains("forwarded SIGUSR1"))
            .count();
        assert!(forwarded > 0, "{mode:?}: no forwarded line");
        eprintln!(
            "services: {mode:?}: {} bytes of output, {} lines of 3 services × 2 streams and {forwarded} of grace's \
             own, every one whole",
            output_size,
            6 * LINES
        );
    }
}
