//! End to end, with servers no one in this project wrote: gunicorn and uvicorn (PyPI) and nginx (Debian),
//! each SIGTERMed through grace while a slow request is in flight, and a stand-in with the full shape of
//! the multi-process server grace was made for (tests/e2e/standin_server.py: supervisor, manager, draining
//! workers, SIGTERM-ignoring executors, setsid controllers, a FIFO-fed tee, orphans).
//!
//! What it proves:
//! - forwarding SIGTERM to the main process lets each server drain: the request in flight completes with
//!   200, the server exits 0, and grace exits 0 inside its grace period, logging the stop, the main child's
//!   exit and how long after the stop signal each came; uvicorn --workers leaves no process behind;
//! - `-r TERM:QUIT` turns nginx's fast stop into its graceful one: a rate-limited download in flight
//!   completes, where plain forwarding cuts it;
//! - the stand-in, with `--grace-period 30s`, exits 0 long before the period ends; the controllers left
//!   behind by the supervisor all get SIGTERM, and only the one that ignores it gets SIGKILL, after; the
//!   last line written through the FIFO reaches the output; the orphans are reaped; grace's log names every
//!   process it had to signal;
//! - `-g` (the whole group) reproduces the incident: the manager and tee die before the workers drain;
//! - the broken setups (a shell that does not exec the server; the server piped into tee) are still
//!   stopped inside the grace period, and grace's log shows why: the main child was the shell, and it
//!   names the processes that were left, and those still alive at the deadline.
//!
//! Needs what `tools/setup` installs (tests/e2e/setup.sh): the venv target/e2e-venv with gunicorn and
//! uvicorn, and nginx. Ports are loopback ports chosen free at run time.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{descendants, Finished, Grace, Line, Mode, Running, Stream, MODES, TIMEOUT};

/// The material the tests run: apps, configs, the stand-in, the broken setups.
const E2E: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

// ---- what the tests need installed ------------------------------------------------------------------------

/// A program of the e2e venv, or a failure that says how to get it.
fn venv_program(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/e2e-venv/bin")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run tools/setup first (its tests/e2e/setup.sh creates the venv target/e2e-venv \
         with gunicorn and uvicorn and installs nginx)",
        path.display()
    );
    path.display().to_string()
}

/// nginx, from PATH or /usr/sbin (Debian's place, often not in a non-root PATH).
fn nginx_program() -> String {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("nginx is not installed: run tools/setup first (tests/e2e/setup.sh installs it)")
        })
        .display()
        .to_string()
}

fn e2e_file(name: &str) -> String {
    format!("{E2E}/{name}")
}

/// A loopback port nothing listens on now. The kernel picks it; the listener is closed before the server
/// binds it, a race too small to matter (a server that lost it would fail its start with "Address already
/// in use", which the failure dump shows).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("binding a free loopback port")
        .port()
}

/// A fresh directory under cargo's temp dir for the tests, removed by the caller.
fn scratch_dir(what: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "e2e-{what}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

// ---- an HTTP client -------------------------------------------------------------------------------------

/// What a GET came to.
#[derive(Debug)]
struct Response {
    /// 0 if no status line arrived.
    status: u16,
    content_length: Option<u64>,
    /// Body bytes received.
    received: u64,
    /// The start of the body, as text.
    body: String,
    /// When the response ended (EOF, the whole body, or an error).
    done: Instant,
    /// Why reading stopped early, if it did.
    error: Option<String>,
}

impl Response {
    fn complete(&self) -> bool {
        self.error.is_none() && self.content_length == Some(self.received)
    }
}

/// A GET in flight on its own thread; `first_body_bytes` yields once the body has started to arrive.
struct Request {
    first_body_bytes: Receiver<Instant>,
    thread: JoinHandle<Response>,
}

impl Request {
    fn wait_for_body(&self) -> Instant {
        self.first_body_bytes
            .recv_timeout(TIMEOUT)
            .expect("the body to start arriving")
    }

    fn response(self) -> Response {
        self.thread.join().expect("the client thread")
    }
}

/// Sends `GET path` to 127.0.0.1:port (one request, `Connection: close`) and reads the whole response.
/// Timeouts only guard against a hang.
fn get(port: u16, path: &str) -> Request {
    let (sender, first_body_bytes) = mpsc::channel();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let thread = thread::spawn(move || {
        let mut response = Response {
            status: 0,
            content_length: None,
            received: 0,
            body: String::new(),
            done: Instant::now(),
            error: None,
        };
        if let Err(error) = exchange(port, &request, &mut response, &sender) {
            response.error = Some(error.to_string());
        }
        response.done = Instant::now();
        response
    });
    Request {
        first_body_bytes,
        thread,
    }
}

fn exchange(
    port: u16,
    request: &str,
    response: &mut Response,
    first_body_bytes: &mpsc::Sender<Instant>,
) -> std::io::Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut buffer = vec![0; 64 * 1024];
    let mut head = Some(Vec::new()); // until the blank line after the headers
    while response.content_length != Some(response.received) {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break; // EOF
        }
        let Some(bytes) = head.as_mut() else {
            take_body(&buffer[..read], response, first_body_bytes);
            continue;
        };
        bytes.extend_from_slice(&buffer[..read]);
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            parse_head(&String::from_utf8_lossy(&bytes[..end]), response);
            let body = bytes.split_off(end + 4);
            head = None;
            take_body(&body, response, first_body_bytes);
        }
    }
    Ok(())
}

fn parse_head(head: &str, response: &mut Response) {
    let mut lines = head.lines();
    response.status = lines
        .next()
        .and_then(|status_line| status_line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    response.content_length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    });
}

fn take_body(bytes: &[u8], response: &mut Response, first_body_bytes: &mpsc::Sender<Instant>) {
    if bytes.is_empty() {
        return;
    }
    if response.received == 0 {
        let _ = first_body_bytes.send(Instant::now());
    }
    response.received += bytes.len() as u64;
    if response.body.len() < 64 {
        response
            .body
            .push_str(&String::from_utf8_lossy(&bytes[..bytes.len().min(64)]));
    }
}

// ---- reading grace's log --------------------------------------------------------------------------------

/// Sends `signal` to grace; returns when it was sent (taken just before, so a duration measured from it is
/// never shorter than the real one).
fn stop(grace: &Running, signal: i32) -> Instant {
    let at = Instant::now();
    grace.signal(signal);
    at
}

/// The seconds in `…, 1.234s after the stop signal`.
fn after_stop(line: &str) -> f64 {
    let (before, _) = line
        .split_once("s after the stop signal")
        .unwrap_or_else(|| panic!("no time after the stop signal in {line:?}"));
    before
        .rsplit(' ')
        .next()
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no time after the stop signal in {line:?}"))
}

/// Fails, showing everything, if a line of `stream` contains `needle`.
fn expect_no_line(finished: &Finished, stream: Stream, needle: &str) {
    if let Some(line) = finished
        .lines
        .iter()
        .find(|line| line.stream == stream && line.text.contains(needle))
    {
        panic!(
            "unexpected {stream:?} line {:?}\n{}",
            line.text,
            finished.dump()
        );
    }
}

/// The index (in all lines) and text of the first line of grace's log containing `needle`.
fn log_line<'a>(finished: &'a Finished, needle: &str) -> (usize, &'a str) {
    finished
        .lines
        .iter()
        .enumerate()
        .find(|(_, line)| line.stream == Stream::Stderr && line.text.contains(needle))
        .map(|(index, line)| (index, line.text.as_str()))
        .unwrap_or_else(|| panic!("no log line contains {needle:?}\n{}", finished.dump()))
}

/// The main child's pid, from grace's start line. As PID 1 of a fresh namespace it is usually 2, but not
/// always: under qemu-user the emulator's own thread takes pid 2 and the child gets 3.
fn main_child_pid(finished: &Finished) -> i32 {
    common::pid_in(&finished.line(Stream::Stderr, "started pid ").text)
}

/// A process as grace's log names it: `pid (name)`.
type Named = (i32, String);

/// The `pid (name)` list of a log line, after `marker` and up to the next `;` or the end.
fn named_processes(line: &str, marker: &str) -> Vec<Named> {
    let (_, list) = line
        .split_once(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {line:?}"));
    let list = list.split(';').next().unwrap_or_default();
    list.split(", ")
        .map(|entry| {
            let (pid, name) = entry
                .split_once(" (")
                .unwrap_or_else(|| panic!("not `pid (name)`: {entry:?} in {line:?}"));
            (
                pid.parse().expect("a pid"),
                name.trim_end_matches(')').to_string(),
            )
        })
        .collect()
}

/// What follows `marker` in `line`.
fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    line.split_once(marker)
        .map_or_else(|| panic!("{marker:?} not in {line:?}"), |(_, rest)| rest)
}

/// `1 process`, `3 processes`, as grace writes counts.
fn processes(count: usize) -> String {
    if count == 1 {
        "1 process".to_string()
    } else {
        format!("{count} processes")
    }
}

fn names(processes: &[Named]) -> Vec<&str> {
    processes.iter().map(|(_, name)| name.as_str()).collect()
}

/// Fails unless every process of `tree` is gone: neither alive nor a zombie.
fn expect_all_gone(tree: &[common::ProcessSnapshot], finished: &Finished) {
    let left: Vec<_> = tree
        .iter()
        .filter(|process| process.still_exists())
        .collect();
    assert!(
        left.is_empty(),
        "still there after grace exited: {left:?}\n{}",
        finished.dump()
    );
}

/// How many lines, of either stream, contain `needle`.
fn count(finished: &Finished, needle: &str) -> usize {
    finished
        .lines
        .iter()
        .filter(|line| line.text.contains(needle))
        .count()
}

/// What every stop must show: grace's log has the stop, then the exit of the main child (named `main`),
/// then its own exit, each with the time after the stop signal; and the test saw grace exit inside the
/// grace period. Returns (main child's exit, grace's exit) in seconds after the stop, as grace measured them.
fn check_stop_timeline(
    finished: &Finished,
    stopped: Instant,
    grace_period: Duration,
    main: &str,
) -> (f64, f64) {
    let (stop_index, _) = log_line(finished, "received SIGTERM from");
    let exit_needle = format!("({main}) ");
    let (exit_index, exit_line) = finished
        .lines
        .iter()
        .enumerate()
        .find(|(_, line)| {
            line.stream == Stream::Stderr
                && line.text.contains("main child pid ")
                && line.text.contains(&exit_needle)
                && line.text.contains("after the stop signal")
        })
        .map(|(index, line)| (index, line.text.as_str()))
        .unwrap_or_else(|| panic!("no exit of the main child ({main})\n{}", finished.dump()));
    let (end_index, end_line) = log_line(finished, "exiting with status");
    assert!(
        stop_index < exit_index && exit_index < end_index,
        "{}",
        finished.dump()
    );
    let main_exit = after_stop(exit_line);
    let grace_exit = after_stop(end_line);
    assert!(main_exit <= grace_exit, "{}", finished.dump());
    let measured = finished.at.duration_since(stopped);
    assert!(
        measured < grace_period,
        "grace exited {measured:?} after SIGTERM, past its grace period of {grace_period:?}\n{}",
        finished.dump()
    );
    (main_exit, grace_exit)
}

// ---- gunicorn, uvicorn ------------------------------------------------------------------------------------

/// gunicorn with 3 sync workers and a graceful_timeout of 5 s under grace with 8 s: SIGTERM while a 3 s
/// request is in flight. The request completes with 200, gunicorn exits 0, and grace right after it.
#[test]
fn gunicorn_drains_the_request_in_flight() {
    let gunicorn = venv_program("gunicorn");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut grace = Grace::new(Mode::Pid1)
        .args(["--grace-period", "8s"])
        .env("PYTHONUNBUFFERED", "1")
        .spawn(&strings(&[
            &gunicorn,
            "--chdir",
            E2E,
            "--bind",
            &bind,
            "--workers",
            "3",
            "--graceful-timeout",
            "5",
            "--no-control-socket",
            "wsgi_app:app",
        ]));
    grace.wait_count(Stream::Stderr, "Booting worker with pid:", 3);
    let request = get(port, "/slow?s=3");
    grace.wait_log("app: slow request started");
    let stopped = stop(&grace, libc::SIGTERM);
    grace.wait_log("Handling signal: term");
    let finished = grace.finish();
    let response = request.response();

    assert_eq!(finished.code(), 0, "{}", finished.dump());
    assert_eq!(response.status, 200, "{response:?}\n{}", finished.dump());
    assert!(
        response.complete() && response.body.starts_with("slept 3"),
        "{response:?}"
    );
    assert!(
        response.done > stopped,
        "the request was answered before the stop"
    );
    let main = main_child_pid(&finished);
    finished.line(
        Stream::Stderr,
        &format!("forwarded SIGTERM to pid {main} (gunicorn)"),
    );
    assert_eq!(
        count(&finished, "Worker exiting (pid:"),
        3,
        "{}",
        finished.dump()
    );
    finished.line(Stream::Stderr, "Shutting down: Master");
    let (main_exit, grace_exit) =
        check_stop_timeline(&finished, stopped, Duration::from_secs(8), "gunicorn");
    let (_, exit_line) = log_line(&finished, &format!("main child pid {main} (gunicorn)"));
    assert!(exit_line.contains("exited with status 0"), "{exit_line}");
    // The request needed 3 s from its start and the stop came right after it: gunicorn waited for it.
    assert!(main_exit >= 1.0, "{}", finished.dump());
    // Nothing was left for grace to signal: the workers had all exited before the master.
    expect_no_line(&finished, Stream::Stderr, "sending SIGTERM: ");
    expect_no_line(&finished, Stream::Stderr, "SIGKILL to ");
    eprintln!(
        "figures: gunicorn: 200 after {:.3}s from SIGTERM; main child exited {main_exit:.3}s, \
         grace {grace_exit:.3}s after the stop (test saw grace exit {:.3}s after SIGTERM)",
        response.done.duration_since(stopped).as_secs_f64(),
        finished.at.duration_since(stopped).as_secs_f64()
    );
}

/// uvicorn --workers 2 (a multiprocess supervisor, like the real server): the same, in both modes. As a
/// subreaper, every process of uvicorn's tree (the workers and multiprocessing's resource tracker, which
/// outlives the parent) is gone when grace exits: no zombie, no leftover.
#[test]
fn uvicorn_drains_and_leaves_no_process_behind() {
    let uvicorn = venv_program("uvicorn");
    for mode in MODES {
        let port = free_port();
        let port_text = port.to_string();
        let mut grace = Grace::new(mode)
            .args(["--grace-period", "8s"])
            .env("PYTHONUNBUFFERED", "1")
            .spawn(&strings(&[
                &uvicorn,
                "--app-dir",
                E2E,
                "--host",
                "127.0.0.1",
                "--port",
                &port_text,
                "--workers",
                "2",
                "asgi_app:app",
            ]));
        grace.wait_count(Stream::Stderr, "Application startup complete.", 2);
        let tree = descendants(grace.grace_pid());
        let request = get(port, "/slow?s=2");
        grace.wait_log("app: slow request started");
        let stopped = stop(&grace, libc::SIGTERM);
        grace.wait_log("Received SIGTERM, exiting.");
        let finished = grace.finish();
        let response = request.response();

        assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
        assert_eq!(response.status, 200, "{response:?}\n{}", finished.dump());
        assert!(
            response.complete() && response.body.starts_with("slept 2"),
            "{response:?}"
        );
        assert!(response.done > stopped);
        let (main_exit, grace_exit) =
            check_stop_timeline(&finished, stopped, Duration::from_secs(8), "uvicorn");
        assert!(main_exit >= 0.5, "{}", finished.dump());
        finished.line(Stream::Stderr, "Stopping parent process");
        expect_no_line(&finished, Stream::Stderr, "SIGKILL to ");
        // uvicorn's parent, 2 workers and the resource tracker, all below grace.
        assert!(tree.len() >= 4, "{mode:?}: uvicorn's tree: {tree:?}");
        // As PID 1, grace exits only once nothing else is left in its namespace (and the namespace's end
        // would hide a leftover from /proc anyway): the log above, with no SIGKILL, is the proof. As a
        // subreaper, /proc shows whether any process of uvicorn's tree, zombie or not, outlived grace.
        if mode == Mode::Subreaper {
            expect_all_gone(&tree, &finished);
        }
        eprintln!(
            "figures: uvicorn {mode:?}: {} processes below grace; 200 after {:.3}s from SIGTERM; \
             main child exited {main_exit:.3}s, grace {grace_exit:.3}s after the stop; remaining: {:?}",
            tree.len(),
            response.done.duration_since(stopped).as_secs_f64(),
            finished
                .log()
                .into_iter()
                .find(|line| line.contains("sending SIGTERM: "))
        );
    }
}

// ---- nginx ------------------------------------------------------------------------------------------------

/// A 4 MiB file at 2 MiB/s: the download takes about 2 s.
const NGINX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// nginx under grace (PID 1) with `grace_arguments`, SIGTERMed once a slow download has started.
fn nginx_stop_during_download(grace_arguments: &[&str]) -> (Response, Finished, Instant) {
    let nginx = nginx_program();
    let dir = scratch_dir("nginx");
    let port = free_port();
    let template = std::fs::read_to_string(e2e_file("nginx.conf.template"))
        .expect("reading the nginx template");
    let config = template
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@RATE@", "2m");
    std::fs::write(dir.join("nginx.conf"), config).expect("writing nginx.conf");
    std::fs::create_dir(dir.join("www")).expect("creating www");
    std::fs::File::create(dir.join("www/big.bin"))
        .and_then(|file| file.set_len(NGINX_FILE_SIZE)) // sparse: served as zeros
        .expect("creating www/big.bin");
    let dir_text = dir.display().to_string();
    let config_path = dir.join("nginx.conf").display().to_string();
    let mut grace = Grace::new(Mode::Pid1)
        .args(grace_arguments)
        .args(["--grace-period", "8s"])
        .spawn(&strings(&[
            &nginx,
            "-e",
            "stderr",
            "-p",
            &dir_text,
            "-c",
            &config_path,
            "-g",
            "daemon off;",
        ]));
    grace.wait_log("start worker processes");
    let request = get(port, "/big.bin");
    request.wait_for_body();
    let stopped = stop(&grace, libc::SIGTERM);
    let finished = grace.finish();
    let response = request.response();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    assert_eq!(response.status, 200, "{response:?}\n{}", finished.dump());
    assert_eq!(
        response.content_length,
        Some(NGINX_FILE_SIZE),
        "{response:?}"
    );
    (response, finished, stopped)
}

/// SIGQUIT is nginx's graceful stop: with `-r TERM:QUIT` the download in flight completes.
#[test]
fn nginx_with_term_rewritten_to_quit_finishes_the_download() {
    let (response, finished, stopped) = nginx_stop_during_download(&["-r", "TERM:QUIT"]);
    assert!(
        response.complete(),
        "download cut: {response:?}\n{}",
        finished.dump()
    );
    finished.line(
        Stream::Stderr,
        &format!(
            "forwarded SIGQUIT to pid {} (nginx)",
            main_child_pid(&finished)
        ),
    );
    finished.line(
        Stream::Stderr,
        "signal 3 (SIGQUIT) received from 1, shutting down",
    );
    let (main_exit, grace_exit) =
        check_stop_timeline(&finished, stopped, Duration::from_secs(8), "nginx");
    // 4 MiB at 2 MiB/s, stopped as the first bytes arrived: nginx waited for the transfer.
    assert!(main_exit >= 1.0, "{}", finished.dump());
    eprintln!(
        "figures: nginx -r TERM:QUIT: {} of {} bytes, download ended {:.3}s after SIGTERM; main child exited \
         {main_exit:.3}s, grace {grace_exit:.3}s after the stop",
        response.received,
        NGINX_FILE_SIZE,
        response.done.duration_since(stopped).as_secs_f64()
    );
}

/// SIGTERM is nginx's fast stop: forwarded as it is, it cuts the download at once.
#[test]
fn nginx_with_plain_forwarding_cuts_the_download() {
    let (response, finished, stopped) = nginx_stop_during_download(&[]);
    assert!(
        response.received < NGINX_FILE_SIZE,
        "the download completed: {response:?}\n{}",
        finished.dump()
    );
    finished.line(
        Stream::Stderr,
        &format!(
            "forwarded SIGTERM to pid {} (nginx)",
            main_child_pid(&finished)
        ),
    );
    finished.line(
        Stream::Stderr,
        "signal 15 (SIGTERM) received from 1, exiting",
    );
    let (main_exit, grace_exit) =
        check_stop_timeline(&finished, stopped, Duration::from_secs(8), "nginx");
    assert!(main_exit < 1.0, "{}", finished.dump());
    eprintln!(
        "figures: nginx plain: {} of {} bytes, download ended {:.3}s after SIGTERM; main child exited \
         {main_exit:.3}s, grace {grace_exit:.3}s after the stop",
        response.received,
        NGINX_FILE_SIZE,
        response.done.duration_since(stopped).as_secs_f64()
    );
}

// ---- the stand-in ----------------------------------------------------------------------------------------

/// The stand-in's durations, scaled down: a clean stop takes WORKER_DELAY + DRAIN + EXECUTOR_TIMEOUT.
const WORKER_DELAY: f64 = 0.2;
const DRAIN: f64 = 0.4;
const EXECUTOR_TIMEOUT: f64 = 0.5;
/// How long grace leaves the rest of the tree alone after the main child exits (src/shutdown.rs).
const SETTLE: f64 = 0.2;
/// grace's default --cleanup-timeout.
const CLEANUP_TIMEOUT: f64 = 2.0;
/// grace's log rounds times to the millisecond: two of them may differ by one more than they did.
const LOG_ROUNDING: f64 = 0.001;

/// `python3 -u standin_server.py` with the scaled durations and `executor_timeout`.
fn standin(executor_timeout: f64) -> Vec<String> {
    let mut command = strings(&["python3", "-u", &e2e_file("standin_server.py")]);
    command.extend(strings(&[
        "--worker-delay",
        &WORKER_DELAY.to_string(),
        "--drain",
        &DRAIN.to_string(),
        "--executor-timeout",
        &executor_timeout.to_string(),
    ]));
    command
}

/// The pids of one role in the stand-in's ready line (`... controllers 15,20,21)`).
fn ready_pids(ready: &Line, role: &str) -> Vec<i32> {
    let text = ready.text.replace('(', " ");
    let (_, rest) = text
        .split_once(&format!(" {role} "))
        .unwrap_or_else(|| panic!("no {role} in {:?}", ready.text));
    rest.split([' ', ')'])
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|pid| pid.parse().expect("a pid"))
        .collect()
}

/// Waits for the ready line and for grace (run with -w) to have reaped the 3 orphans, which exited before
/// it; returns the ready line.
fn standin_ready(grace: &mut Running) -> Line {
    let ready = grace.wait_stdout("standin: all 11 processes ready");
    let orphans = grace.wait_count(Stream::Stdout, "exiting (its parent is gone)", 3);
    for orphan in orphans {
        let pid = orphan
            .text
            .split(" pid ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        grace.wait_log(&format!(
            "Reaped zombie process with pid={}",
            pid.expect("an orphan pid")
        ));
    }
    ready
}

/// The clean stop of the stand-in, in `mode`, with `--grace-period 30s`: SIGTERM to the supervisor only.
fn standin_clean_stop(mode: Mode) {
    let mut grace = Grace::new(mode)
        .args(["--grace-period", "30s", "-w"])
        .spawn(&standin(EXECUTOR_TIMEOUT));
    let ready = standin_ready(&mut grace);
    let tree = descendants(grace.grace_pid());
    let controllers = ready_pids(&ready, "controllers");
    let supervisor = ready_pids(&ready, "supervisor")[0];
    let stopped = stop(&grace, libc::SIGTERM);
    let finished = grace.finish();

    assert_eq!(finished.code(), 0, "{mode:?}\n{}", finished.dump());
    let (main_exit, grace_exit) =
        check_stop_timeline(&finished, stopped, Duration::from_secs(30), "python3");
    finished.line(Stream::Stderr, "forwarded SIGTERM to pid ");
    // The supervisor's own shutdown ran its course: workers drained against a live manager.
    assert_eq!(
        count(&finished, "drained, exiting 0"),
        2,
        "{}",
        finished.dump()
    );
    finished.line(Stream::Stdout, "stopped: exit code 0");
    assert_eq!(
        count(&finished, "ERROR drain step"),
        0,
        "{}",
        finished.dump()
    );
    assert_eq!(count(&finished, "standin: LOST"), 0, "{}", finished.dump());
    // The last line written through the FIFO reached the output through tee.
    finished.line(
        Stream::Stdout,
        &format!("supervisor pid {supervisor} shutdown complete"),
    );
    // Every controller got SIGTERM (they print it: c1, c2 die of it, c3 ignores it), all at once, in one
    // sweep that grace logged with their names; then SIGKILL went to c3 alone.
    let (terminate_index, terminate_line) = log_line(&finished, ", sending SIGTERM: ");
    let terminated = named_processes(terminate_line, "sending SIGTERM: ");
    for (index, pid) in controllers.iter().enumerate() {
        let name = format!("controller-c{}", index + 1);
        assert!(
            terminated.contains(&(*pid, name.clone())),
            "{name} (pid {pid}) not in {terminate_line:?}"
        );
    }
    // tee may still be writing its last lines when the settle ends; nothing else may be left.
    assert!(
        terminated
            .iter()
            .all(|(pid, name)| controllers.contains(pid) || name == "tee"),
        "{terminate_line}"
    );
    for (index, pid) in controllers.iter().enumerate() {
        let how = if index == 2 {
            "ignoring it"
        } else {
            "dying of it"
        };
        let line = format!("controller c{} pid {pid} got SIGTERM: {how}", index + 1);
        assert!(
            finished.has(Stream::Stdout, &line),
            "no {line:?}\n{}",
            finished.dump()
        );
    }
    let (kill_index, kill_line) = log_line(&finished, "SIGKILL to ");
    assert!(terminate_index < kill_index);
    assert!(
        kill_line.contains("cleanup timeout of 2s expired"),
        "{kill_line}"
    );
    assert_eq!(
        named_processes(after(kill_line, "SIGKILL to "), ": "),
        [(controllers[2], "controller-c3".to_string())],
        "{kill_line}"
    );
    assert_eq!(count(&finished, "SIGKILL to "), 1, "{}", finished.dump());
    // Before the SIGKILL, grace said why c3 was still alive: it handles SIGTERM and has not exited.
    let (_, alive_line) = log_line(&finished, " still alive");
    assert!(alive_line.contains("1 process still alive"), "{alive_line}");
    let (_, why_line) = log_line(
        &finished,
        &format!("pid {} (controller-c3), parent ", controllers[2]),
    );
    assert!(why_line.contains("catches SIGTERM"), "{why_line}");
    // c1 and c2 were reaped by grace (they died of SIGTERM), c3 too (of SIGKILL).
    for pid in &controllers {
        finished.line(
            Stream::Stderr,
            &format!("Reaped zombie process with pid={pid}"),
        );
    }
    // Exact lower bounds: the supervisor's own stop, then grace's settle and cleanup timeout for c3.
    let clean_stop = WORKER_DELAY + DRAIN + EXECUTOR_TIMEOUT;
    assert!(
        main_exit >= clean_stop - LOG_ROUNDING,
        "{}",
        finished.dump()
    );
    assert!(
        grace_exit >= main_exit + SETTLE + CLEANUP_TIMEOUT - LOG_ROUNDING,
        "{}",
        finished.dump()
    );
    // In subreaper mode /proc shows what outlived grace (in PID-1 mode the namespace's end would hide it).
    assert!(tree.len() >= 11, "{mode:?}: the stand-in's tree: {tree:?}");
    if mode == Mode::Subreaper {
        expect_all_gone(&tree, &finished);
    }
    eprintln!(
        "figures: stand-in {mode:?} -t 30s: main child exited {main_exit:.3}s, \
         grace {grace_exit:.3}s after the stop (test: {:.3}s); SIGTERM: {:?}; SIGKILL: {:?}",
        finished.at.duration_since(stopped).as_secs_f64(),
        names(&terminated),
        names(&named_processes(after(kill_line, "SIGKILL to "), ": "))
    );
}

/// As PID 1, the stand-in stops cleanly with `--grace-period 30s`, long before the period ends.
#[test]
fn standin_stops_cleanly_as_pid_1() {
    standin_clean_stop(Mode::Pid1);
}

/// As a subreaper, the same; and no process of the stand-in's tree (orphans included) survives grace.
#[test]
fn standin_stops_cleanly_as_subreaper() {
    if common::NO_SUBREAPER.applies() {
        return;
    }
    standin_clean_stop(Mode::Subreaper);
}

/// `-g` sends SIGTERM to the supervisor's whole process group: the manager and tee die at once, the workers
/// drain against a dead manager (broken pipes) and the supervisor's later lines are lost. (The clean stop
/// above, forwarding to the main process only, has none of it.)
#[test]
fn standin_with_process_group_forwarding_breaks_the_pipes() {
    let mut grace = Grace::new(Mode::Pid1)
        .args(["--grace-period", "30s", "-g", "-w"])
        .spawn(&standin(EXECUTOR_TIMEOUT));
    let ready = standin_ready(&mut grace);
    let supervisor = ready_pids(&ready, "supervisor")[0];
    let manager = ready_pids(&ready, "manager")[0];
    let stopped = stop(&grace, libc::SIGTERM);
    let finished = grace.finish();

    // The workers drained against a dead manager: the broken-pipe flood of the incident.
    let errors = count(&finished, "ERROR drain step");
    assert!(errors > 0, "no broken pipe\n{}", finished.dump());
    finished.line(Stream::Stdout, "errors, exiting 1");
    finished.line(
        Stream::Stdout,
        &format!("manager pid {manager} got SIGTERM: dying"),
    );
    // tee died with the group: the supervisor's last line never reached the output.
    expect_no_line(&finished, Stream::Stdout, "shutdown complete");
    finished.line(
        Stream::Stderr,
        &format!("standin: LOST (reader gone): supervisor pid {supervisor} shutdown complete"),
    );
    finished.line(
        Stream::Stderr,
        &format!(
            "forwarded SIGTERM to process group {} (python3)",
            main_child_pid(&finished)
        ),
    );
    // Nothing of it shows in the exit status: the supervisor still exits 0.
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    let (_, grace_exit) =
        check_stop_timeline(&finished, stopped, Duration::from_secs(30), "python3");
    eprintln!(
        "figures: stand-in -g: {errors} drain errors, {} lost lines; grace exited {grace_exit:.3}s after \
         the stop",
        count(&finished, "standin: LOST")
    );
}

// ---- broken setups ---------------------------------------------------------------------------------------

/// The stand-in's executors outlast grace's cleanup here, so the supervisor is mid-shutdown at the deadline.
const SLOW_EXECUTORS: f64 = 5.0;

/// What a broken setup came to.
struct BrokenRun {
    /// What grace SIGTERMed once the main child (the shell) had exited.
    terminated: Vec<Named>,
    /// What was still alive at the cleanup deadline.
    killed: Vec<Named>,
    /// Seconds from SIGTERM to grace's exit, as the test saw them.
    took: f64,
}

/// A broken setup under grace (PID 1, 10 s): the main child is a shell that dies of SIGTERM at once. grace
/// still stops everything inside its grace period, and its log names what the shell left behind and what
/// was still alive at the cleanup deadline.
fn broken_setup(command: &[String]) -> BrokenRun {
    let mut grace = Grace::new(Mode::Pid1)
        .args(["--grace-period", "10s"])
        .spawn(command);
    grace.wait_stdout("standin: all 11 processes ready");
    let stopped = stop(&grace, libc::SIGTERM);
    let finished = grace.finish();

    assert_eq!(finished.code(), 128 + libc::SIGTERM, "{}", finished.dump());
    let (main_exit, grace_exit) =
        check_stop_timeline(&finished, stopped, Duration::from_secs(10), "sh");
    let main = main_child_pid(&finished);
    let (_, exit_line) = log_line(&finished, &format!("main child pid {main} (sh)"));
    assert!(
        exit_line.contains("was killed by SIGTERM (status 143)"),
        "{exit_line}"
    );
    assert!(main_exit < 1.0, "{}", finished.dump());
    let (_, terminate_line) = log_line(&finished, "main child has exited: ");
    let terminated = named_processes(terminate_line, "sending SIGTERM: ");
    let (_, kill_line) = log_line(&finished, "cleanup timeout of 2s expired: SIGKILL to ");
    let killed = named_processes(after(kill_line, "SIGKILL to "), ": ");
    // The server's whole tree was left behind by the shell and got SIGTERM from grace.
    for name in [
        "supervisor",
        "tee",
        "manager",
        "worker-w1",
        "worker-w2",
        "executor-e1",
        "controller-c1",
        "controller-c3",
    ] {
        assert!(
            names(&terminated).contains(&name),
            "{name} not in {terminate_line:?}"
        );
    }
    // At the deadline the supervisor was still waiting for its executors, and c3 ignores SIGTERM.
    for name in ["supervisor", "executor-e1", "controller-c3"] {
        assert!(
            names(&killed).contains(&name),
            "{name} not in {kill_line:?}"
        );
    }
    assert!(!names(&killed).contains(&"controller-c1"), "{kill_line}");
    // And grace says why: the main child was a shell that left the server behind, ...
    let (_, shell_line) = log_line(&finished, "the main child was a shell and ");
    assert!(
        shell_line.contains("does not `exec` its server"),
        "{shell_line}"
    );
    let outlived = named_processes(shell_line, "outlived it: ");
    for process in &terminated {
        assert!(
            outlived.contains(process),
            "{process:?} not in {shell_line:?}"
        );
    }
    // ... and each process still alive at the deadline is named, with what it does with SIGTERM.
    let (_, alive_line) = log_line(&finished, " still alive");
    assert!(
        alive_line.contains(&format!("{} still alive", processes(killed.len()))),
        "{alive_line}"
    );
    for (pid, name) in &killed {
        let (_, line) = log_line(&finished, &format!("pid {pid} ({name}), parent "));
        assert!(line.contains("SIGTERM"), "{line}");
    }
    // Exact lower bound: c3 is SIGKILLed at the cleanup deadline, not before.
    assert!(
        grace_exit >= main_exit + SETTLE + CLEANUP_TIMEOUT - LOG_ROUNDING,
        "{}",
        finished.dump()
    );
    BrokenRun {
        terminated,
        killed,
        took: finished.at.duration_since(stopped).as_secs_f64(),
    }
}

/// `grace -- sh -c 'server; true'`: the shell does not exec the server (dash never does; `; true` stops
/// any shell from doing it), so SIGTERM reaches the shell, which dies of it and orphans the server.
#[test]
fn shell_that_does_not_exec_is_stopped_and_diagnosed() {
    let quoted: Vec<String> = standin(SLOW_EXECUTORS)
        .iter()
        .map(|word| shell_quote(word))
        .collect();
    let script = format!("{}; true", quoted.join(" "));
    let run = broken_setup(&strings(&["sh", "-c", &script]));
    eprintln!(
        "figures: sh -c 'server; true': grace exited {:.3}s after SIGTERM with 143; \
         SIGTERM: {:?}; SIGKILL: {:?}",
        run.took,
        names(&run.terminated),
        names(&run.killed)
    );
}

/// The server piped into tee by a script: the script's shell is the main child; the pipeline's tee is
/// one more process left behind.
#[test]
fn server_piped_into_tee_is_stopped_and_diagnosed() {
    let mut command = strings(&["sh", &e2e_file("broken_pipe_tee.sh")]);
    command.extend(standin(SLOW_EXECUTORS));
    let run = broken_setup(&command);
    let tees = names(&run.terminated)
        .into_iter()
        .filter(|name| *name == "tee")
        .count();
    assert_eq!(
        tees, 2,
        "the pipeline's tee and the FIFO's: {:?}",
        run.terminated
    );
    eprintln!(
        "figures: server | tee: grace exited {:.3}s after SIGTERM with 143; SIGTERM: {:?}; SIGKILL: {:?}",
        run.took,
        names(&run.terminated),
        names(&run.killed)
    );
}

/// `word` as one shell word: as it is when that is safe, else in single quotes.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// The stand-in with the stop the API server this project was made for needed here (about 12 s under
/// grace with `-t 30s`): workers wait 4 s, drain 3 s, executors get 5 s.
fn twelve_second_standin() -> Vec<String> {
    let mut command = strings(&["python3", "-u", &e2e_file("standin_server.py")]);
    command.extend(strings(&[
        "--worker-delay",
        "4",
        "--drain",
        "3",
        "--executor-timeout",
        "5",
    ]));
    command
}

/// No grace period configured, as in many images: in a Kubernetes pod (the kubelet sets
/// KUBERNETES_SERVICE_HOST in every container) the default is 25 s, and a server that needs 12 s to stop
/// drains and exits 0, as it would have without grace inside the pod's 30 s.
#[test]
fn a_twelve_second_drain_finishes_under_the_kubernetes_default() {
    let mut grace = Grace::new(Mode::Pid1)
        .args(["-w"])
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .spawn(&twelve_second_standin());
    let started = grace.seen()[0].text.clone();
    assert!(
        started.contains("(grace period 25s, as PID 1)"),
        "{started}"
    );
    let ready = standin_ready(&mut grace);
    let supervisor = ready_pids(&ready, "supervisor")[0];
    let stopped = stop(&grace, libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(finished.code(), 0, "{}", finished.dump());
    finished.line(
        Stream::Stdout,
        &format!("supervisor pid {supervisor} shutdown complete"),
    );
    assert_eq!(
        count(&finished, "drained, exiting 0"),
        2,
        "{}",
        finished.dump()
    );
    let exited = finished.line(Stream::Stderr, "main child pid ");
    let took = exited.at.duration_since(stopped);
    assert!(
        took >= Duration::from_secs(11) && took < Duration::from_secs(25),
        "the supervisor stopped {took:?} after SIGTERM\n{}",
        finished.dump()
    );
    expect_no_line(&finished, Stream::Stderr, "grace period of 25s expired");
}

/// The same server and no grace period configured, outside Kubernetes: the 8 s default (under the 10 s of
/// `docker stop`) ends it with SIGKILL, and the log says so.
#[test]
fn a_twelve_second_drain_is_cut_at_the_default_elsewhere() {
    let mut grace = Grace::new(Mode::Pid1)
        .args(["-w"])
        .spawn(&twelve_second_standin());
    let started = grace.seen()[0].text.clone();
    assert!(started.contains("(grace period 8s, as PID 1)"), "{started}");
    let ready = standin_ready(&mut grace);
    let supervisor = ready_pids(&ready, "supervisor")[0];
    let stopped = stop(&grace, libc::SIGTERM);
    let finished = grace.finish();
    assert_eq!(finished.code(), 137, "{}", finished.dump());
    let kill = finished.line(Stream::Stderr, "grace period of 8s expired: SIGKILL to");
    assert!(
        kill.text.contains(&format!("{supervisor} (supervisor)")),
        "{}",
        kill.text
    );
    assert!(kill.at.duration_since(stopped) >= Duration::from_secs(8));
    finished.line(Stream::Stderr, "was killed by SIGKILL (status 137)");
}
