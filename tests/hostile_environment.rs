//! The shutdown bound in hostile environments: what grace inherits (SIGCHLD ignored; descriptors closed and
//! no /dev/null), what it may not do (a seccomp filter refusing pidfds or the subreaper; a process or
//! descriptor limit), what it cannot see (no /proc of its own), a log reader that stops reading, and log
//! destinations that split or refuse writes (a pipe shared with the child, a full filesystem, datagram
//! sockets), where the log must stay whole lines. Each test failed on grace 0.1 (those on the log's lines on
//! 0.2 too), in both modes where both apply.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::json::Json;
use common::{
    accessible_to_nobody, child, is_alive, pid_in, seccomp, send_signal, sh, stop, Grace, Mode,
    Stream, LATE, MODES, TIMEOUT,
};

/// `sh -c 'SCRIPT' sh`: a wrapper that runs SCRIPT, which ends by exec-ing `"$@"` (grace and its arguments).
fn shell_wrapper(script: &str) -> Vec<String> {
    ["sh", "-c", script, "sh"].map(String::from).to_vec()
}

/// In a mount namespace of its own (PID-1 mode has one already, from `unshare --mount-proc`), mounts an
/// empty tmpfs over `directory` and execs the rest, with `redirection` applied.
fn with_empty(mode: Mode, directory: &str, redirection: &str) -> Vec<String> {
    let script = format!("mount -t tmpfs none {directory} && exec \"$@\" {redirection}");
    match mode {
        Mode::Pid1 => shell_wrapper(&script),
        Mode::Subreaper => {
            let mut wrapper: Vec<String> = ["unshare", "--mount", "--propagation", "private"]
                .map(String::from)
                .to_vec();
            wrapper.extend(shell_wrapper(&script));
            wrapper
        }
    }
}

/// A parent that ignores SIGCHLD (some launchers and language runtimes do) starts grace: ignored
/// dispositions survive exec, and with SIGCHLD ignored the kernel reaps grace's children itself and sends
/// no SIGCHLD. grace must see the exit at once, and report the status.
#[test]
fn an_inherited_sigchld_ignore_hides_no_exit() {
    for mode in MODES {
        let sigchld_ignored = child(&["exec-with", "--ignore", "17", "--"]);
        let grace = Grace::new(mode).wrapped(sigchld_ignored);
        let running = grace.spawn(&sh("exit 7"));
        let started = running.started();
        let finished = running.finish();
        assert_eq!(finished.code(), 7, "{mode:?}\n{}", finished.dump());
        finished.line(Stream::Stderr, "exited with status 7");
        assert!(
            finished.at.duration_since(started) < LATE,
            "{mode:?}: {:?}\n{}",
            finished.at.duration_since(started),
            finished.dump()
        );
    }
}

/// The same, through a stop signal: the forward goes to a live child, and its status comes out.
#[test]
fn an_inherited_sigchld_ignore_keeps_the_stop_exact() {
    for mode in MODES {
        let sigchld_ignored = child(&["exec-with", "--ignore", "17", "--"]);
        let mut grace = Grace::new(mode)
            .wrapped(sigchld_ignored)
            .spawn(&child(&["handle-term", "3"]));
        grace.wait_stdout("ready");
        let sent = stop(&grace);
        grace.wait_stdout("got TERM");
        let finished = grace.finish();
        assert_eq!(finished.code(), 3, "{mode:?}\n{}", finished.dump());
        assert!(
            !finished.has(Stream::Stderr, "could not"),
            "{}",
            finished.dump()
        );
        assert!(
            finished.at.duration_since(sent) < LATE,
            "{}",
            finished.dump()
        );
    }
}

/// A pipe, (read end, write end), both close-on-exec: nothing the other tests start holds it open.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut ends = [0; 2];
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) }
}

/// A pipe whose buffer is full: what grace writes to it waits for a reader that never comes. Filled through
/// a description of its own (opened through /proc), so the write end handed to grace stays blocking, as a
/// container runtime's log pipe is.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (reader, writer) = pipe();
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblocking()
        .open(format!("/proc/self/fd/{}", writer.as_raw_fd()))
        .expect("opening the pipe again");
    let chunk = [b'.'; 4096];
    loop {
        let written =
            unsafe { libc::write(filler.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
        if written < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            break;
        }
    }
    (reader, writer)
}

trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// The flags of descriptor `fd` of `pid`, from /proc/PID/fdinfo (octal).
fn descriptor_flags(pid: i32, fd: i32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .expect("a flags line");
    u32::from_str_radix(flags.trim(), 8).expect("octal flags")
}

/// Lines of `stream`, sent as they come.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The next line containing `needle`, within [`TIMEOUT`].
fn expect_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(error) => panic!("no line containing {needle:?}: {error}"),
        }
    }
}

/// A process of the test's own that a failed test must not leave behind (in PID-1 mode, `unshare
/// --kill-child` takes the namespace along).
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn take(mut self) -> Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(process) = self.0.as_mut() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// Waits for `process` to exit within `bound`; `None` (and the process killed) if it did not.
fn exit_within(
    process: KillOnDrop,
    bound: Duration,
) -> Option<(std::process::ExitStatus, Instant)> {
    let process = process.take();
    let pid = process.id() as i32;
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut process = process;
        let status = process.wait().expect("waiting");
        let _ = sender.send((status, Instant::now()));
    });
    match receiver.recv_timeout(bound) {
        Ok(exit) => Some(exit),
        Err(_) => {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            None
        }
    }
}

/// The pid of the main child, grace's only child, from the host's side.
fn only_child_of(pid: i32) -> i32 {
    let children = common::children(pid);
    assert_eq!(children.len(), 1, "{children:?}");
    children[0]
}

/// grace's stderr is a pipe nobody reads (a stalled log shipper): its log lines cannot go out. It must
/// still forward, and kill at the deadline, on time; and the child's own stderr must stay exactly as it
/// was (blocking: O_NONBLOCK on the shared description would make the child's writes fail with EAGAIN).
#[test]
fn a_stalled_log_reader_does_not_hold_up_the_deadline() {
    for mode in MODES {
        let (_reader, writer) = full_pipe();
        let mut command = Grace::new(mode)
            .args(["-t", "1s"])
            .command(&child(&["ignore-term"]));
        command.stdout(Stdio::piped()).stderr(Stdio::from(writer));
        let mut outer = command.spawn().expect("starting grace");
        let stdout = lines_of(outer.stdout.take().expect("stdout"));
        let outer = KillOnDrop(Some(outer));
        let ready = expect_line(&stdout, "ready pid");
        let grace_pid = match mode {
            Mode::Subreaper => outer.0.as_ref().expect("running").id() as i32,
            Mode::Pid1 => only_child_of(outer.0.as_ref().expect("running").id() as i32),
        };
        let main = only_child_of(grace_pid);
        assert_eq!(
            descriptor_flags(main, 2) & libc::O_NONBLOCK as u32,
            0,
            "{mode:?}: the child's stderr was made non-blocking ({ready})"
        );
        assert_eq!(
            descriptor_flags(main, 2) & libc::O_ACCMODE as u32,
            libc::O_WRONLY as u32
        );
        let sent = Instant::now();
        send_signal(grace_pid, libc::SIGTERM);
        let (status, exited) = exit_within(outer, TIMEOUT).unwrap_or_else(|| {
            panic!("{mode:?}: grace was still running {TIMEOUT:?} after SIGTERM")
        });
        let took = exited.duration_since(sent);
        assert_eq!(status.code(), Some(137), "{mode:?}");
        // The deadline, then at most the exit's short try at flushing the log.
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(1) + LATE,
            "{mode:?}: exited {took:?} after SIGTERM"
        );
        assert!(!is_alive(main), "{mode:?}: the child outlived grace");
        eprintln!(
            "hostile environment: stderr a full pipe nobody reads, -t 1s, {mode:?}: exit 137 {:.3} s after \
             SIGTERM; the child's stderr still blocking",
            took.as_secs_f64()
        );
    }
}

/// Lines that find the buffer full are dropped and counted; once the reader comes back, the count goes out
/// with the next line, and the lines that waited go out too.
#[test]
fn dropped_log_lines_are_counted_and_reported() {
    for mode in MODES {
        let (reader, writer) = full_pipe();
        let mut command = Grace::new(mode)
            .args(["-v"])
            .command(&child(&["signals", "15"]));
        command.stdout(Stdio::piped()).stderr(Stdio::from(writer));
        let mut outer = command.spawn().expect("starting grace");
        let stdout = lines_of(outer.stdout.take().expect("stdout"));
        let outer = KillOnDrop(Some(outer));
        expect_line(&stdout, "ready pid");
        let grace_pid = match mode {
            Mode::Subreaper => outer.0.as_ref().expect("running").id() as i32,
            Mode::Pid1 => only_child_of(outer.0.as_ref().expect("running").id() as i32),
        };
        // Each forward is a debug line of ~100 bytes: 2,000 of them overflow the 64 KiB buffer. One at a
        // time, each received before the next is sent: forwarding never waited for the log.
        const SENT: usize = 2_000;
        for _ in 0..SENT {
            send_signal(grace_pid, libc::SIGUSR2);
            expect_line(&stdout, &format!("got {} from", libc::SIGUSR2));
        }
        // The reader comes back. Lines get through once grace has written what waited in its buffer: keep
        // grace logging (SIGUSR1, one at a time) until one of those lines arrives.
        let log = lines_of(std::fs::File::from(reader));
        let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let stop_sending = stop_sending.clone();
            thread::spawn(move || {
                while !stop_sending.load(std::sync::atomic::Ordering::Relaxed) {
                    send_signal(grace_pid, libc::SIGUSR1);
                    expect_line(&stdout, &format!("got {} from", libc::SIGUSR1));
                }
                stdout
            })
        };
        let mut read = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while !read
            .last()
            .is_some_and(|line: &String| line.contains("forwarded SIGUSR1"))
        {
            let remaining = deadline.saturating_duration_since(Instant::now());
            read.push(log.recv_timeout(remaining).unwrap_or_else(|_| {
                panic!(
                    "{mode:?}: no line of SIGUSR1 got through: {:?}",
                    read.last()
                )
            }));
        }
        stop_sending.store(true, std::sync::atomic::Ordering::Relaxed);
        let stdout = sender.join().expect("the sender");
        let notice = &read[read.len() - 2];
        assert!(
            notice.contains(" dropped: stderr did not accept") && notice.contains("warning: "),
            "{mode:?}: before the first line after the drops: {notice}"
        );
        let dropped: usize = notice
            .split_whitespace()
            .find_map(|word| word.parse().ok())
            .expect("a count");
        assert!(dropped >= 1, "{mode:?}: {dropped} of {SENT}: {notice}");
        // What waited in the buffer went out first: forwards of SIGUSR2, the flood's.
        assert!(
            read.iter()
                .any(|line| line.contains("debug: forwarded SIGUSR2")),
            "{mode:?}"
        );
        send_signal(grace_pid, libc::SIGTERM);
        expect_line(&stdout, "got 15 from");
        let (status, _) = exit_within(outer, TIMEOUT).expect("grace exits");
        assert_eq!(status.code(), Some(0), "{mode:?}");
    }
}

// ---- the log stays true: whole lines, whatever stderr is ------------------------------------------------

/// Every line of `stream` as it comes, newline included (a last line without one comes as it is), read as
/// bytes: a line cut in two shows as such, not as a failed UTF-8 decoding.
fn raw_lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(read) if read > 0 => {
                    if sender
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    receiver
}

/// Every line `lines` brings until its stream ends, within [`TIMEOUT`].
fn all_lines(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut all = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => all.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return all,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the stream did not end: {} lines so far", all.len())
            }
        }
    }
}

/// Waits until each of `needles` has been on a line of `lines`, in whatever order they come.
fn expect_lines_in_any_order(lines: &mpsc::Receiver<String>, needles: &[&str]) {
    let mut missing: Vec<&str> = needles.to_vec();
    let deadline = Instant::now() + TIMEOUT;
    while !missing.is_empty() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(remaining)
            .unwrap_or_else(|error| panic!("no line containing {missing:?}: {error}"));
        missing.retain(|needle| !line.contains(needle));
    }
}

/// One of grace's JSON log lines, whole: one JSON object and its newline, with `ts` first and an `event`.
/// Panics, naming the line, if it is anything else (a line cut short, or with another writer's bytes in it).
fn json_entry(line: &str) -> Vec<(String, Json)> {
    let text = line
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("a line without its newline: {line:?}"));
    let fields = match Json::parse(text) {
        Ok(Json::Object(fields)) => fields,
        other => panic!("not one of grace's JSON lines ({other:?}): {line:?}"),
    };
    assert_eq!(
        fields.first().map(|(key, _)| key.as_str()),
        Some("ts"),
        "{line:?}"
    );
    assert!(
        matches!(field(&fields, "event"), Some(Json::String(_))),
        "{line:?}"
    );
    fields
}

fn field<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    fields
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
}

/// Whether a parsed line has `event` and, if given, `signal`.
fn is_event(fields: &[(String, Json)], event: &str, signal: Option<&str>) -> bool {
    field(fields, "event") == Some(&Json::String(event.into()))
        && signal.map_or(true, |signal| {
            field(fields, "signal") == Some(&Json::String(signal.into()))
        })
}

/// The lines a `log_dropped` line reports; 0 for any other line.
fn reported_dropped(fields: &[(String, Json)]) -> u64 {
    match field(fields, "count") {
        Some(Json::Number(count)) if is_event(fields, "log_dropped", None) => *count as u64,
        _ => 0,
    }
}

/// grace's pid as the host sees it.
fn grace_pid_of(mode: Mode, outer: &KillOnDrop) -> i32 {
    let outer_pid = outer.0.as_ref().expect("running").id() as i32;
    match mode {
        Mode::Subreaper => outer_pid,
        Mode::Pid1 => only_child_of(outer_pid),
    }
}

/// Sends `signal` to grace `count` times, each once the child has said it got the one before: grace logs a
/// `forwarded` line for each (at -v).
fn forward_each(grace_pid: i32, stdout: &mpsc::Receiver<String>, signal: i32, count: usize) {
    for _ in 0..count {
        send_signal(grace_pid, signal);
        expect_line(stdout, &format!("got {signal} from"));
    }
}

/// grace's log and the child's stderr share a pipe whose reader stalls and comes back (a log shipper that
/// hung): grace's backlog must go out as whole lines, each write at most PIPE_BUF, while the child writes
/// its own lines to the same pipe. The kernel splits a write larger than PIPE_BUF where the pipe runs out of
/// room, and another writer's data lands in the gap; it never splits one of at most PIPE_BUF.
#[test]
fn a_stalled_pipe_shared_with_the_child_keeps_every_line_whole() {
    // 200 KB of the child's lines: they fill the 64 KiB pipe, and keep coming while grace's backlog goes out.
    const CHILD_LINES: usize = 2_000;
    // About 45 KB of JSON `forwarded` lines, under the 64 KiB buffer: a backlog, none dropped.
    const SIGNALS: usize = 200;
    for mode in MODES {
        let (reader, writer) = pipe();
        let mut command = Grace::new(mode)
            .args(["-v", "--log-format", "json"])
            .command(&child(&[
                "stderr-lines",
                &CHILD_LINES.to_string(),
                "signals",
                "15",
            ]));
        command.stdout(Stdio::piped()).stderr(Stdio::from(writer));
        let mut outer = command.spawn().expect("starting grace");
        drop(command); // the test's copy of the write end: the pipe ends when grace and its tree are gone
        let stdout = lines_of(outer.stdout.take().expect("stdout"));
        let outer = KillOnDrop(Some(outer));
        expect_lines_in_any_order(&stdout, &["ready pid", "stderr full"]);
        let grace_pid = grace_pid_of(mode, &outer);
        forward_each(grace_pid, &stdout, libc::SIGUSR2, SIGNALS);
        // The reader comes back: grace's backlog and the child's blocked lines go out together.
        let log = raw_lines_of(std::fs::File::from(reader));
        expect_line(&stdout, &format!("stderr lines written {CHILD_LINES}"));
        send_signal(grace_pid, libc::SIGTERM);
        expect_line(&stdout, "got 15 from");
        let (status, _) = exit_within(outer, TIMEOUT).expect("grace exits");
        assert_eq!(status.code(), Some(0), "{mode:?}");
        let lines = all_lines(&log);
        let mut child_lines = Vec::new();
        let mut entries = Vec::new();
        for line in &lines {
            if line.starts_with("child line ") {
                let number: usize = line
                    .get(11..16)
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or_else(|| panic!("{mode:?}: {line:?}"));
                let whole = format!("{:-<99}\n", format!("child line {number:05} "));
                assert_eq!(line, &whole, "{mode:?}: a child's line, not whole");
                child_lines.push(number);
            } else {
                entries.push(json_entry(line));
            }
        }
        assert_eq!(
            child_lines,
            (0..CHILD_LINES).collect::<Vec<_>>(),
            "{mode:?}: the child's lines, each once, in order"
        );
        let forwarded = entries
            .iter()
            .filter(|fields| is_event(fields, "forwarded", Some("SIGUSR2")))
            .count();
        let dropped: u64 = entries.iter().map(|fields| reported_dropped(fields)).sum();
        assert_eq!(forwarded as u64 + dropped, SIGNALS as u64, "{mode:?}");
        assert!(
            entries
                .last()
                .is_some_and(|fields| is_event(fields, "exiting", None)),
            "{mode:?}: {:?}",
            lines.last()
        );
        eprintln!(
            "hostile environment: stderr a pipe shared with the child, stalled then read again, {mode:?}: \
             {} of grace's lines ({forwarded} forwards waited, {dropped} dropped) and {} of the child's, \
             every one whole",
            entries.len(),
            child_lines.len()
        );
    }
}

/// A tmpfs of the test's own, of `bytes`, for a filesystem that fills up; unmounted (lazily: grace may
/// still hold a file on it) when dropped.
struct SmallTmpfs {
    directory: std::path::PathBuf,
}

impl SmallTmpfs {
    fn mount(name: &str, bytes: usize) -> SmallTmpfs {
        let directory = std::env::temp_dir().join(format!("grace-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("a mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "none"])
            .arg(&directory)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mounting a tmpfs on {directory:?}");
        SmallTmpfs { directory }
    }

    /// Writes a file until the filesystem refuses (ENOSPC); the file's path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.directory.join("filler");
        let mut filler = std::fs::File::create(&path).expect("the filler");
        for chunk in [4096, 1] {
            let bytes = vec![b'.'; chunk];
            let error = loop {
                if let Err(error) = filler.write_all(&bytes) {
                    break error;
                }
            };
            assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
        }
        path
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.directory)
            .status();
        let _ = std::fs::remove_dir(&self.directory);
    }
}

/// grace's stderr is a file on a filesystem that fills up, then has room again (a node's log disk under
/// pressure): the lines that find it full are dropped and counted, a line begun as it filled ends whole,
/// and once there is room the count goes out first and lines flow again, `exiting` included.
#[test]
fn a_full_filesystem_drops_and_counts_lines_until_it_has_room_again() {
    // About 10 KB of `forwarded` lines: more than the room left in the log file's last page.
    const SIGNALS: usize = 50;
    for mode in MODES {
        let tmpfs = SmallTmpfs::mount(&format!("full-{mode:?}"), 256 * 1024);
        let log_path = tmpfs.directory.join("grace.log");
        let log = std::fs::File::create(&log_path).expect("the log file");
        let mut command = Grace::new(mode)
            .args(["-v", "--log-format", "json"])
            .command(&child(&["signals", "15"]));
        command.stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut outer = command.spawn().expect("starting grace");
        drop(command);
        let stdout = lines_of(outer.stdout.take().expect("stdout"));
        let outer = KillOnDrop(Some(outer));
        expect_line(&stdout, "ready pid");
        let grace_pid = grace_pid_of(mode, &outer);
        let filler = tmpfs.fill();
        let full_since = Instant::now();
        forward_each(grace_pid, &stdout, libc::SIGUSR2, SIGNALS);
        let while_full = std::fs::read(&log_path).expect("the log");
        let begun = while_full
            .iter()
            .rev()
            .take_while(|&&byte| byte != b'\n')
            .count();
        // Room again, now that the child has said it got the last signal.
        std::fs::remove_file(&filler).expect("freeing the filesystem");
        let full_for = full_since.elapsed();
        forward_each(grace_pid, &stdout, libc::SIGUSR1, 1);
        send_signal(grace_pid, libc::SIGTERM);
        expect_line(&stdout, "got 15 from");
        let (status, _) = exit_within(outer, TIMEOUT).expect("grace exits");
        assert_eq!(status.code(), Some(0), "{mode:?}");
        let written = String::from_utf8(std::fs::read(&log_path).expect("the log"))
            .expect("UTF-8: no line cut inside a character");
        let entries: Vec<_> = written.split_inclusive('\n').map(json_entry).collect();
        let forwarded = entries
            .iter()
            .filter(|fields| is_event(fields, "forwarded", Some("SIGUSR2")))
            .count();
        let notices: Vec<usize> = (0..entries.len())
            .filter(|&at| is_event(&entries[at], "log_dropped", None))
            .collect();
        assert_eq!(notices.len(), 1, "{mode:?}:\n{written}");
        let notice = notices[0];
        let dropped = reported_dropped(&entries[notice]);
        assert!(dropped >= 1, "{mode:?}: {written}");
        assert_eq!(forwarded as u64 + dropped, SIGNALS as u64, "{mode:?}");
        // What came before the gap is older than every line after it: the count went out first.
        assert!(
            entries[..notice]
                .iter()
                .all(|fields| !is_event(fields, "forwarded", Some("SIGUSR1"))),
            "{mode:?}: {written}"
        );
        assert!(
            entries[notice..]
                .iter()
                .any(|fields| is_event(fields, "forwarded", Some("SIGUSR1"))),
            "{mode:?}: {written}"
        );
        assert!(
            entries
                .last()
                .is_some_and(|fields| is_event(fields, "exiting", None)),
            "{mode:?}: {written}"
        );
        eprintln!(
            "hostile environment: stderr a file on a full tmpfs for {} ms, {mode:?}: {dropped} of \
             {SIGNALS} lines dropped and counted, {forwarded} written, a line begun with {begun} bytes \
             when it filled ended whole, then the count, the later lines and `exiting`",
            full_for.as_millis()
        );
    }
}

/// The datagrams `socket` receives, each as it comes, until one is an `exiting` line, within [`TIMEOUT`].
fn datagrams_until_exiting(socket: impl Fn(&mut [u8]) -> std::io::Result<usize>) -> Vec<String> {
    let mut buffer = vec![0; 65_536];
    let mut datagrams = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !datagrams
        .last()
        .is_some_and(|datagram: &String| datagram.contains("\"event\":\"exiting\""))
    {
        assert!(
            Instant::now() < deadline,
            "no `exiting` line: {datagrams:#?}"
        );
        match socket(&mut buffer) {
            Ok(length) => datagrams.push(String::from_utf8_lossy(&buffer[..length]).into_owned()),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(error) => panic!("receiving: {error}"),
        }
    }
    datagrams
}

/// Each datagram one whole line: one JSON object and its newline, nothing more.
fn one_line_each(datagrams: &[String]) -> Vec<Vec<(String, Json)>> {
    datagrams
        .iter()
        .map(|datagram| {
            assert_eq!(
                datagram.matches('\n').count(),
                1,
                "not one line per datagram: {datagram:?}"
            );
            json_entry(datagram)
        })
        .collect()
}

/// grace's stderr is a Unix datagram socket (a syslog-style collector) with the smallest send buffer
/// (SO_SNDBUF 1: the kernel's floor, 4,608 bytes here), whose reader stalls and comes back: each line goes
/// out as a datagram of its own, and the backlog flows once the reader is back.
#[test]
fn a_datagram_socket_gets_one_line_per_datagram() {
    const SIGNALS: usize = 100;
    for mode in MODES {
        let (reader, writer) = std::os::unix::net::UnixDatagram::pair().expect("a socket pair");
        let smallest: libc::c_int = 1;
        assert_eq!(
            unsafe {
                libc::setsockopt(
                    writer.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&smallest as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            },
            0
        );
        let mut send_buffer: libc::c_int = 0;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        assert_eq!(
            unsafe {
                libc::getsockopt(
                    writer.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&mut send_buffer as *mut libc::c_int).cast(),
                    &mut length,
                )
            },
            0
        );
        let mut command = Grace::new(mode)
            .args(["-v", "--log-format", "json"])
            .command(&child(&["signals", "15"]));
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(OwnedFd::from(writer)));
        let mut outer = command.spawn().expect("starting grace");
        drop(command);
        let stdout = lines_of(outer.stdout.take().expect("stdout"));
        let outer = KillOnDrop(Some(outer));
        expect_line(&stdout, "ready pid");
        let grace_pid = grace_pid_of(mode, &outer);
        // Nobody reads: a few datagrams fill the send buffer, the rest wait in grace's.
        forward_each(grace_pid, &stdout, libc::SIGUSR2, SIGNALS);
        // The reader comes back; then the stop.
        reader
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let reading = thread::spawn(move || datagrams_until_exiting(|buffer| reader.recv(buffer)));
        send_signal(grace_pid, libc::SIGTERM);
        expect_line(&stdout, "got 15 from");
        let datagrams = reading.join().expect("the reader");
        let (status, _) = exit_within(outer, TIMEOUT).expect("grace exits");
        assert_eq!(status.code(), Some(0), "{mode:?}");
        let entries = one_line_each(&datagrams);
        let forwarded = entries
            .iter()
            .filter(|fields| is_event(fields, "forwarded", Some("SIGUSR2")))
            .count();
        let dropped: u64 = entries.iter().map(|fields| reported_dropped(fields)).sum();
        assert_eq!(forwarded as u64 + dropped, SIGNALS as u64, "{mode:?}");
        eprintln!(
            "hostile environment: stderr a Unix datagram socket with a {send_buffer}-byte send buffer, \
             stalled, {mode:?}: {} datagrams, one line each ({forwarded} forwards waited, {dropped} \
             dropped), `exiting` last",
            datagrams.len()
        );
    }
}

/// A connected UDP pair in a network namespace of its own whose loopback MTU is `mtu`, with path MTU
/// discovery on (IP_PMTUDISC_DO: do not fragment): a datagram larger than the MTU is refused with EMSGSIZE,
/// the smaller ones go through. (receiver, sender).
fn udp_pair_with_mtu(mtu: u32) -> (std::net::UdpSocket, std::net::UdpSocket) {
    // A thread of its own enters the new namespace (namespaces belong to threads), and so do the `ip` it
    // starts and the sockets it opens; the sockets stay in it wherever they are used.
    thread::spawn(move || {
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let set = Command::new("ip")
            .args(["link", "set", "lo", "mtu", &mtu.to_string(), "up"])
            .status()
            .expect("ip");
        assert!(set.success());
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding");
        sender
            .connect(receiver.local_addr().expect("an address"))
            .expect("connecting");
        let do_not_fragment: libc::c_int = libc::IP_PMTUDISC_DO;
        assert_eq!(
            unsafe {
                libc::setsockopt(
                    sender.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    (&do_not_fragment as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            },
            0
        );
        (receiver, sender)
    })
    .join()
    .expect("the namespace thread")
}

/// grace's stderr is a UDP socket that refuses datagrams over 972 bytes (EMSGSIZE: a 1,000-byte MTU, do not
/// fragment), and grace's first line, naming a long command, is longer: that line alone is dropped and
/// counted, and the count is the first line that arrives; every later line arrives, `exiting` included.
#[test]
fn a_datagram_the_socket_refuses_is_dropped_and_counted_alone() {
    for mode in MODES {
        let (receiver, sender) = udp_pair_with_mtu(1_000);
        let script = format!(
            "exec {} # {}",
            child(&["signals", "15"]).join(" "),
            "x".repeat(600)
        );
        let mut command = Grace::new(mode)
            .args(["-v", "--log-format", "json"])
            .command(&["sh".to_string(), "-c".to_string(), script]);
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(OwnedFd::from(sender)));
        let mut outer = command.spawn().expect("starting grace");
        drop(command);
        let stdout = lines_of(outer.stdout.take().expect("stdout"));
        let outer = KillOnDrop(Some(outer));
        expect_line(&stdout, "ready pid");
        let grace_pid = grace_pid_of(mode, &outer);
        send_signal(grace_pid, libc::SIGTERM);
        expect_line(&stdout, "got 15 from");
        receiver
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let datagrams = datagrams_until_exiting(|buffer| receiver.recv(buffer));
        let (status, _) = exit_within(outer, TIMEOUT).expect("grace exits");
        assert_eq!(status.code(), Some(0), "{mode:?}");
        let entries = one_line_each(&datagrams);
        assert_eq!(
            reported_dropped(&entries[0]),
            1,
            "{mode:?}: the first line to arrive: {:?}",
            datagrams[0]
        );
        let events: Vec<&Json> = entries
            .iter()
            .filter_map(|fields| field(fields, "event"))
            .collect();
        for event in ["stop_signal", "main_exited", "exiting"] {
            assert!(
                events.contains(&&Json::String(event.into())),
                "{mode:?}: no {event}: {datagrams:#?}"
            );
        }
        assert!(
            !events.contains(&&Json::String("started".into())),
            "{mode:?}: {datagrams:#?}"
        );
        eprintln!(
            "hostile environment: stderr a UDP socket refusing datagrams over 972 bytes, {mode:?}: the \
             `started` line (a 600-byte command, twice) dropped and counted by the first datagram to \
             arrive; the {} others arrived, the longest {} bytes",
            datagrams.len() - 1,
            datagrams.iter().map(String::len).max().unwrap_or(0)
        );
    }
}

/// A seccomp profile older than the pidfd calls refuses them (EPERM, or ENOSYS): grace signals the tree
/// with checked kill() instead, and the main child (its own unreaped child) with plain kill(). The daemon
/// that handles SIGTERM gets it; the one that ignores it is SIGKILLed with the main child.
#[test]
fn refused_pidfd_calls_fall_back_to_kill() {
    let refusals: [(&str, &[&str]); 3] = [
        ("EPERM", &["pidfd_send_signal"]),
        ("ENOSYS", &["pidfd_open", "pidfd_send_signal"]),
        ("EPERM", &["pidfd_open", "pidfd_send_signal"]),
    ];
    for (errno, calls) in refusals {
        for mode in MODES {
            let what = format!("{mode:?}, {calls:?} refused with {errno}");
            let mut grace = Grace::new(mode)
                .wrapped(seccomp(errno, calls))
                .args(["-t", "1s"])
                .spawn(&child(&[
                    "daemons",
                    "polite:handle",
                    "stubborn:ignore",
                    "--main",
                    "ignore",
                ]));
            let stubborn = pid_in(&grace.wait_stdout("daemon stubborn pid").text);
            grace.wait_stdout("daemons ready");
            let sent = stop(&grace);
            grace.wait_stdout("daemon polite got TERM");
            let finished = grace.finish();
            assert_eq!(finished.code(), 137, "{what}\n{}", finished.dump());
            let killed = finished.line(Stream::Stderr, "SIGKILL to");
            assert!(
                killed.text.contains("SIGKILL to 2 processes"),
                "{what}\n{}",
                finished.dump()
            );
            assert!(killed.at.duration_since(sent) >= Duration::from_secs(1));
            for failure in ["could not", "giving up", "survived"] {
                assert!(
                    !finished.has(Stream::Stderr, failure),
                    "{what}\n{}",
                    finished.dump()
                );
            }
            if mode == Mode::Subreaper {
                assert!(!is_alive(stubborn), "{what}: the daemon outlived grace");
            }
        }
    }
}

/// Some sandboxes refuse PR_SET_CHILD_SUBREAPER (a seccomp profile; qemu-user answers EINVAL). grace warns
/// once and runs, shutting down what it can reach: its child and the child's own child.
#[test]
fn a_refused_subreaper_is_a_warning_not_a_failure() {
    for errno in ["EINVAL", "EPERM"] {
        let mut grace = Grace::new(Mode::Subreaper)
            .wrapped(seccomp(errno, &["prctl:36"]))
            .args(["-t", "1s"])
            .spawn(&child(&["daemons", "kid:stay-ignore", "--main", "ignore"]));
        let warning = grace.wait_log("could not become a child subreaper");
        assert!(warning.text.contains("warning: "), "{}", warning.text);
        let kid = pid_in(&grace.wait_stdout("daemon kid pid").text);
        grace.wait_stdout("daemons ready");
        stop(&grace);
        let finished = grace.finish();
        assert_eq!(finished.code(), 137, "{errno}\n{}", finished.dump());
        finished.line(Stream::Stderr, "SIGKILL to 2 processes");
        // Without a subreaper the kid, orphaned once its parent died, is no longer grace's to wait for: grace
        // exits once its child is reaped, and the kid, SIGKILLed a moment before, may still be dying. That it
        // dies is what grace's SIGKILL decides (it ignores SIGTERM, and would live on without one).
        common::wait_until(&format!("{errno}: the child's child has died"), || {
            !is_alive(kid)
        });
        let warnings = finished
            .log()
            .iter()
            .filter(|line| line.contains("could not become a child subreaper"))
            .count();
        assert_eq!(warnings, 1, "{}", finished.dump());
    }
}

/// The main child exits; a process that entered the namespace from outside (an `nsenter` or `kubectl
/// exec` whose outside parent never reaps it) is left there as a zombie. A zombie is dead: grace, PID 1,
/// exits at once with the main child's status, with a stop signal or without one.
#[test]
fn a_zombie_whose_parent_is_outside_does_not_hold_pid_1() {
    for with_stop_signal in [true, false] {
        let mut grace = Grace::new(Mode::Pid1).spawn(&child(&["handle-term", "3"]));
        grace.wait_stdout("ready");
        let mut leaver = Command::new("python3")
            .arg("-u")
            .arg(common::child_script())
            .args(["leave-zombie-in", &grace.grace_pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the outside parent");
        let said = lines_of(leaver.stdout.take().expect("stdout"));
        let leaver = KillOnDrop(Some(leaver));
        let zombie = pid_in(&expect_line(&said, "zombie left pid"));
        common::wait_for_state(zombie, 'Z');
        let sent = Instant::now();
        if with_stop_signal {
            grace.signal(libc::SIGTERM);
        } else {
            send_signal(only_child_of(grace.grace_pid()), libc::SIGTERM);
        }
        // The kernel holds a PID 1 in its exit until every process of its namespace is reaped, so grace's
        // own last line is what tells that it did not wait.
        let exiting = grace.wait_log("exiting with status 3");
        let took = exiting.at.duration_since(sent);
        drop(leaver); // reaps the zombie: the kernel lets grace's exit complete
        let finished = grace.finish();
        let what = if with_stop_signal {
            "stop signal"
        } else {
            "main child's exit"
        };
        assert_eq!(finished.code(), 3, "{what}\n{}", finished.dump());
        assert!(
            took < LATE,
            "{what}: exited {took:?} after\n{}",
            finished.dump()
        );
        assert!(
            !finished.has(Stream::Stderr, "giving up"),
            "{}",
            finished.dump()
        );
    }
}

/// As a subreaper with no /proc of its own (a tmpfs over it), the tree cannot be listed: grace signals the
/// main child's process group (its member that ignores SIGTERM dies at the deadline), and says plainly
/// that processes outside it — the setsid daemon — cannot be reached. The daemon outlives grace: nothing
/// can reach it, and the log says so.
#[test]
fn without_proc_a_subreaper_signals_the_main_group_and_says_what_it_cannot_reach() {
    let mut grace = Grace::new(Mode::Subreaper)
        .wrapped(with_empty(Mode::Subreaper, "/proc", ""))
        .args(["-t", "1s"])
        .spawn(&child(&[
            "daemons",
            "member:stay-ignore",
            "outside:ignore",
            "--main",
            "ignore",
        ]));
    let member = pid_in(&grace.wait_stdout("daemon member pid").text);
    let outside = pid_in(&grace.wait_stdout("daemon outside pid").text);
    // Nothing in grace can reach it: the test ends it, even when it fails before its own cleanup.
    let _cleanup = common::KillOnFailure(vec![outside]);
    grace.wait_stdout("daemons ready");
    let sent = stop(&grace);
    let finished = grace.finish();
    let alive_after = is_alive(outside);
    send_signal(outside, libc::SIGKILL); // the test's own cleanup
    assert_eq!(finished.code(), 137, "{}", finished.dump());
    let kill = finished.line(Stream::Stderr, "SIGKILL to the main child's process group");
    assert!(kill.at.duration_since(sent) >= Duration::from_secs(1));
    assert!(kill.text.contains("cannot be listed"), "{}", kill.text);
    assert!(!is_alive(member), "the group member outlived grace");
    assert!(alive_after, "the setsid daemon was reached after all?");
    finished.line(Stream::Stderr, "/proc does not show");
    assert!(
        !finished.has(Stream::Stderr, "giving up on 0"),
        "{}",
        finished.dump()
    );
}

/// As PID 1 with no /proc of its own, the rest of the tree still gets its SIGTERM before the deadline
/// (kill(-1) needs no listing), and the log says what the SIGKILL reached instead of naming only the main
/// child.
#[test]
fn without_proc_pid_1_still_terminates_the_rest_and_says_so() {
    let mut grace = Grace::new(Mode::Pid1)
        .wrapped(with_empty(Mode::Pid1, "/proc", ""))
        .args(["-t", "2s"])
        .spawn(&child(&[
            "daemons",
            "polite:handle",
            "stubborn:ignore",
            "--main",
            "ignore",
        ]));
    grace.wait_stdout("daemons ready");
    let sent = stop(&grace);
    grace.wait_stdout("daemon polite got TERM");
    let finished = grace.finish();
    assert_eq!(finished.code(), 137, "{}", finished.dump());
    let terminating = finished.line(Stream::Stderr, "SIGTERM to every process of the namespace");
    assert!(
        terminating.text.contains("the main child included"),
        "{}",
        terminating.text
    );
    let kill = finished.line(Stream::Stderr, "SIGKILL to every process of the namespace");
    assert!(kill.at.duration_since(sent) >= Duration::from_secs(2));
}

/// Descriptors 0 and 1 closed, and no /dev/null (an empty tmpfs over /dev): Rust's runtime would abort
/// before `main`, silently. grace runs the child, which sees them closed as grace did, and its status comes
/// through.
#[test]
fn closed_descriptors_and_no_dev_null_still_run_the_child() {
    let probe = sh(
        "for fd in 0 1; do if [ -e /proc/self/fd/$fd ]; then echo \"fd $fd open\" >&2; \
         else echo \"fd $fd closed\" >&2; fi; done; exit 3",
    );
    for mode in MODES {
        let wrapper = with_empty(mode, "/dev", "<&- >&-");
        let running = Grace::new(mode).wrapped(wrapper).spawn(&probe);
        let finished = running.finish();
        assert_eq!(finished.code(), 3, "{mode:?}\n{}", finished.dump());
        if !common::emulator_limit(
            "binfmt_misc opens an emulated program for qemu-user (its O flag) on the lowest free descriptor: \
             a closed descriptor 0 holds the program when it starts",
            "sh -c 'exec 0<&-; exec target/busybox-arm64/bin/busybox ls -l /proc/self/fd/'  \
             # 0 -> …/busybox",
        ) {
            finished.line(Stream::Stderr, "fd 0 closed");
        }
        finished.line(Stream::Stderr, "fd 1 closed");
        finished.line(Stream::Stderr, "exited with status 3");
    }
}

/// A process limit (RLIMIT_NPROC here; a pids cgroup at its limit alike) or a descriptor limit makes the
/// spawn fail: that is grace failing to set up (status 1, naming the limit), not a command that cannot
/// execute (126).
#[test]
fn a_spawn_refused_by_a_limit_is_graces_failure() {
    let grace_for_nobody = accessible_to_nobody(common::grace_binary(), true);
    let cases: [(Vec<String>, &str); 2] = [
        (
            ["prlimit", "--nofile=4", "--"].map(String::from).to_vec(),
            "RLIMIT_NOFILE",
        ),
        (
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "prlimit",
                "--nproc=1:1",
                "--",
            ]
            .map(String::from)
            .to_vec(),
            "RLIMIT_NPROC",
        ),
    ];
    for (wrapper, limit) in cases {
        if limit == "RLIMIT_NPROC"
            && common::emulator_limit(
                "qemu-user starts a thread of its own, which RLIMIT_NPROC refuses before grace runs",
                "setpriv --reuid=65534 --regid=65534 --clear-groups -- prlimit --nproc=1:1 -- \
                 target/busybox-arm64/bin/busybox true  # qemu: qemu_thread_create: Resource \
                 temporarily unavailable; Aborted",
            )
        {
            continue;
        }
        for mode in MODES {
            let mut words = wrapper.clone();
            words.push(grace_for_nobody.display().to_string());
            words.extend(["--", "/bin/true"].map(String::from));
            let mut command = match mode {
                Mode::Pid1 => {
                    let mut unshare = Command::new("unshare");
                    unshare.args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
                    unshare.args(&words);
                    unshare
                }
                Mode::Subreaper => {
                    let mut direct = Command::new(&words[0]);
                    direct.args(&words[1..]);
                    direct
                }
            };
            let output = common::output_within(command.stdin(Stdio::null()));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{mode:?} {limit}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{mode:?} {limit}: {stderr}");
            assert!(lines[0].contains("cannot start /bin/true"), "{stderr}");
            assert!(lines[0].contains(limit), "{mode:?}: {stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(common::unprivileged_directory());
}
