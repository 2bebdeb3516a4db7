//! Several services (`--services FILE`): start order gated by readiness, the reverse stop one service at a
//! time, one deadline for all, daemons attributed to their service, the first cause's status, optional
//! services, restarts (while running and during the drain), `once` tasks, signal routing. Each service is
//! tests/support/service.py, which prints what it does and receives with monotonic timestamps; the tests
//! compare those times and orders, in both modes.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Finished, Grace, Line, Mode, Running, Stream, LATE, MODES};

/// A services file in a directory of its own, removed when the test ends.
struct Setup {
    directory: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let directory = std::env::temp_dir().join(format!(
            "grace-services-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("creating the test's directory");
        Setup { directory }
    }

    fn path(&self, name: &str) -> String {
        self.directory.join(name).display().to_string()
    }

    /// Writes `text` as services.toml and returns grace's options to use it.
    fn file(&self, text: &str) -> Vec<String> {
        let path = self.path("services.toml");
        std::fs::write(&path, text).expect("writing the services file");
        vec!["--services".to_string(), path]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn stub() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/service.py")
        .display()
        .to_string()
}

/// `service.py NAME ARGS…` as a TOML array.
fn command(name: &str, arguments: &[&str]) -> String {
    let mut words = vec![
        "python3".to_string(),
        "-u".to_string(),
        stub(),
        name.to_string(),
    ];
    words.extend(arguments.iter().map(|word| word.to_string()));
    let quoted: Vec<String> = words.iter().map(|word| format!("{word:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The same as grace's command after `--`.
fn main_command(name: &str, arguments: &[&str]) -> Vec<String> {
    let mut words = vec![
        "python3".to_string(),
        "-u".to_string(),
        stub(),
        name.to_string(),
    ];
    words.extend(arguments.iter().map(|word| word.to_string()));
    words
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// One line of a stub: `svc NAME EVENT t=SECONDS pid=P [DETAIL]`.
#[derive(Clone, Debug)]
struct Event {
    service: String,
    event: String,
    t: f64,
    pid: i32,
    detail: String,
}

fn parse(line: &Line) -> Option<Event> {
    let text = line.text.strip_prefix("svc ")?;
    let (service, rest) = text.split_once(' ')?;
    let (event, rest) = rest.split_once(" t=")?;
    let (t, rest) = rest.split_once(" pid=")?;
    let (pid, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Event {
        service: service.to_string(),
        event: event.to_string(),
        t: t.parse().ok()?,
        pid: pid.parse().ok()?,
        detail: detail.to_string(),
    })
}

fn events(lines: &[Line]) -> Vec<Event> {
    lines
        .iter()
        .filter(|line| line.stream == Stream::Stdout)
        .filter_map(parse)
        .collect()
}

/// The first event `event` of `service` (with `detail` starting as given, if given).
fn find<'a>(events: &'a [Event], service: &str, event: &str, detail: &str) -> Option<&'a Event> {
    events
        .iter()
        .find(|e| e.service == service && e.event == event && e.detail.starts_with(detail))
}

fn time_of(finished: &Finished, service: &str, event: &str, detail: &str) -> f64 {
    let all = events(&finished.lines);
    find(&all, service, event, detail)
        .unwrap_or_else(|| panic!("no '{event} {detail}' from {service}\n{}", finished.dump()))
        .t
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

fn start(mode: Mode, options: Vec<String>, main: Vec<String>) -> Running {
    Grace::new(mode)
        .args(options)
        .spawn_waiting_for(&main, "starting")
}

/// Each kind of readiness holds the next service back until it passes: a TCP port, a file, sd_notify, a
/// check command; every service becomes ready 300 ms after it starts, so a start that does not wait shows.
/// Then the stop runs in exact reverse, one service at a time.
#[test]
fn services_start_in_order_each_once_the_one_before_is_ready_and_stop_in_reverse() {
    for mode in MODES {
        let setup = Setup::new("order");
        let port = free_port();
        let file = setup.path("cache-ready");
        let checked = setup.path("checked-ready");
        let text = format!(
            r#"
[proxy]
command = {}
ready = "tcp:127.0.0.1:{port}"

[cache]
command = {}
ready = "file:{file}"

[notifier]
command = {}
ready = "notify"

[checked]
command = {}
ready = ["test", "-e", "{checked}"]

[app]
main = true
"#,
            command(
                "proxy",
                &["--ready-after", "300", "--listen", &port.to_string()]
            ),
            command("cache", &["--ready-after", "300", "--ready-file", &file]),
            command("notifier", &["--ready-after", "300", "--notify"]),
            command(
                "checked",
                &["--ready-after", "300", "--ready-file", &checked]
            ),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        grace.wait_stdout("svc app ready");
        grace.wait_log("all 5 services started");
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        let order = ["proxy", "cache", "notifier", "checked", "app"];
        for pair in order.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let ready = time_of(&finished, before, "ready", "");
            let started = time_of(&finished, after, "started", "");
            assert!(
                started >= ready,
                "{mode:?}: {after} started {:.3} s before {before} was ready\n{output}",
                ready - started
            );
            // The reverse: `before` is signalled only once `after` has exited.
            let exited = time_of(&finished, after, "exiting", "");
            let signalled = time_of(&finished, before, "got", "TERM");
            assert!(
                signalled >= exited,
                "{mode:?}: {before} got SIGTERM {:.3} s before {after} had exited\n{output}",
                exited - signalled
            );
        }
        for name in ["proxy", "cache", "notifier", "checked"] {
            assert!(
                finished.has(Stream::Stderr, &format!("{name}: ready")),
                "{mode:?}: no ready line for {name}\n{output}"
            );
        }
    }
}

/// The database proxy is there for the whole of the app's drain: a client in the app connects to it every
/// 50 ms while the app drains for 1.5 s, and never fails; the proxy gets its SIGTERM only once the app has
/// exited.
#[test]
fn a_helper_outlives_the_drain_of_the_main_service() {
    for mode in MODES {
        let setup = Setup::new("drain");
        let port = free_port();
        let text = format!(
            "[db-proxy]\ncommand = {}\nready = \"tcp:127.0.0.1:{port}\"\n\n[app]\nmain = true\n",
            command("db-proxy", &["--listen", &port.to_string()]),
        );
        let main = main_command("app", &["--client", &port.to_string(), "--drain", "1500"]);
        let mut grace = start(mode, setup.file(&text), main);
        grace.wait_stdout("svc app client ok");
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        let all = events(&finished.lines);
        let app_exit = time_of(&finished, "app", "exiting", "");
        let drain = time_of(&finished, "app", "draining", "");
        assert!(app_exit - drain >= 1.5, "{output}");
        assert!(
            find(&all, "app", "client failed", "").is_none(),
            "{mode:?}: the app's client failed during the drain\n{output}"
        );
        assert!(
            time_of(&finished, "db-proxy", "got", "TERM") >= app_exit,
            "{output}"
        );
    }
}

/// One clock for the whole container: with every service ignoring its stop signal, the first gets it at
/// once, every other at grace period − cleanup timeout, and everything is SIGKILLed at the grace period —
/// never a sum of per-service timers.
#[test]
fn one_deadline_for_every_service() {
    for mode in MODES {
        let setup = Setup::new("deadline");
        let text = format!(
            "[a]\ncommand = {}\n\n[b]\ncommand = {}\n\n[app]\nmain = true\n",
            command("a", &["--ignore-stop"]),
            command("b", &["--ignore-stop"]),
        );
        let mut options = setup.file(&text);
        options.extend(["-t", "2s", "--cleanup-timeout", "1s"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &["--ignore-stop"]));
        grace.wait_stdout("svc app ready");
        let t0 = monotonic_now();
        let sent = common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        let elapsed = finished.at.saturating_duration_since(sent);
        assert!(
            elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(2) + LATE,
            "{mode:?}: exit {elapsed:?} after SIGTERM\n{output}"
        );
        // The app at once; a and b only at G − C (1 s): b's turn never came.
        assert!(
            time_of(&finished, "app", "got", "TERM") - t0 < LATE.as_secs_f64(),
            "{output}"
        );
        for helper in ["a", "b"] {
            let got = time_of(&finished, helper, "got", "TERM") - t0;
            assert!(
                got >= 1.0 && got < 1.0 + LATE.as_secs_f64(),
                "{mode:?}: {helper} got SIGTERM {got:.3} s after the stop\n{output}"
            );
        }
        assert!(finished.has(Stream::Stderr, "a: pid"), "{output}");
    }
}

/// A helper's setsid daemon belongs to the helper: it gets SIGTERM on the helper's turn, once the helper
/// itself has exited, and before the next service's turn; one that ignores it holds the next turn until grace
/// period − cleanup timeout, and is named under its service in the report.
#[test]
fn daemons_belong_to_the_service_that_started_them() {
    for mode in MODES {
        let setup = Setup::new("daemons");
        let text = format!(
            "[db]\ncommand = {}\n\n[cron]\ncommand = {}\n\n[logs]\ncommand = {}\n\n[app]\nmain = true\n",
            command("db", &[]),
            command("cron", &["--daemon", "ignore"]),
            command("logs", &["--daemon", "handle"]),
        );
        let mut options = setup.file(&text);
        options.extend(["-t", "3s", "--cleanup-timeout", "1s"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &[]));
        grace.wait_stdout("svc logs daemon");
        grace.wait_stdout("svc cron daemon");
        grace.wait_stdout("svc app ready");
        let t0 = monotonic_now();
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        // logs' turn: logs, then its daemon, then cron.
        let logs_exit = time_of(&finished, "logs", "exiting", "");
        let logs_daemon = time_of(&finished, "logs", "daemon got TERM", "");
        let cron_term = time_of(&finished, "cron", "got", "TERM");
        assert!(
            logs_daemon >= logs_exit,
            "{mode:?}: logs' daemon before logs\n{output}"
        );
        assert!(
            cron_term >= logs_daemon,
            "{mode:?}: cron before logs' daemon\n{output}"
        );
        // cron's daemon ignores SIGTERM: it holds cron's turn until G − C (2 s), when db gets its SIGTERM.
        let db_term = time_of(&finished, "db", "got", "TERM") - t0;
        assert!(
            db_term >= 2.0,
            "{mode:?}: db was signalled {db_term:.3} s after the stop, while cron's daemon was alive\n{output}"
        );
        // cron's daemon is SIGKILLed at the deadline and reported under cron.
        assert!(
            finished
                .log()
                .iter()
                .any(|line| line.contains("cron: pid") && line.contains("ignores SIGTERM")),
            "{mode:?}: the report does not name cron's daemon under cron\n{output}"
        );
    }
}

/// A helper that ends for good ends the container with its own status (the first cause), the app stopping
/// in order; an optional one is let go.
#[test]
fn the_first_cause_decides_the_status_and_optional_services_are_let_go() {
    for mode in MODES {
        let setup = Setup::new("cause");
        let text = format!(
            "[side]\ncommand = {}\nrestart = \"never\"\noptional = true\n\n[helper]\ncommand = {}\nrestart = \"never\"\n\n[app]\nmain = true\n",
            command("side", &["--exit-after", "200", "4"]),
            command("helper", &["--exit-after", "1000", "3"]),
        );
        let grace = start(
            mode,
            setup.file(&text),
            main_command("app", &["--exit", "0"]),
        );
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 3, "{mode:?}\n{output}");
        assert!(
            finished.has(Stream::Stderr, "side exited with status 4; it is optional"),
            "{output}"
        );
        assert!(
            finished.has(
                Stream::Stderr,
                "helper exited with status 3: stopping every service"
            ),
            "{output}"
        );
        assert!(
            time_of(&finished, "app", "got", "TERM") >= time_of(&finished, "helper", "exiting", "")
        );
    }
}

/// `once` tasks run to completion before the next service starts; a failing one ends the container with
/// its status before the app ever starts.
#[test]
fn once_tasks_complete_before_the_next_service_starts() {
    for mode in MODES {
        let setup = Setup::new("once");
        let text = format!(
            "[migrate]\ncommand = {}\nonce = true\n\n[app]\nmain = true\n",
            command("migrate", &["--exit-after", "300", "0"]),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        grace.wait_stdout("svc app ready");
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{output}");
        assert!(
            time_of(&finished, "app", "started", "")
                >= time_of(&finished, "migrate", "exiting", ""),
            "{output}"
        );
        assert!(
            finished.has(Stream::Stderr, "migrate: completed"),
            "{output}"
        );

        let failing = format!(
            "[migrate]\ncommand = {}\nonce = true\n\n[app]\nmain = true\n",
            command("migrate", &["--exit-after", "100", "5"]),
        );
        let grace = start(mode, setup.file(&failing), main_command("app", &[]));
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 5, "{mode:?}\n{output}");
        assert!(
            find(&events(&finished.lines), "app", "started", "").is_none(),
            "{output}"
        );
    }
}

/// A helper that keeps failing is restarted with grace's doubling delay while the app runs; and one that
/// fails during the app's drain is restarted too, so that it is there for the rest of the drain.
#[test]
fn helpers_restart_with_backoff_while_running_and_during_the_drain() {
    for mode in MODES {
        let setup = Setup::new("restart");
        let text = format!(
            "[flaky]\ncommand = {}\n\n[app]\nmain = true\n",
            command("flaky", &["--exit-after", "50", "1"]),
        );
        let mut options = setup.file(&text);
        options.extend(["--restart-delay", "200ms"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &["--drain", "2500"]));
        let starts = grace.wait_count(Stream::Stdout, "svc flaky started", 4);
        let gaps: Vec<f64> = starts
            .windows(2)
            .map(|pair| pair[1].at.duration_since(pair[0].at).as_secs_f64())
            .collect();
        for (gap, delay) in gaps.iter().zip([0.2, 0.4, 0.8]) {
            assert!(
                *gap >= delay,
                "{mode:?}: restarts {gaps:?} came sooner than {delay}"
            );
        }
        grace.wait_log("restarting in 0.800s");
        common::stop(&grace);
        grace.wait_stdout("svc app draining");
        let during = grace.wait_stdout("svc flaky started");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        let app_exit = finished.line(Stream::Stdout, "svc app exiting").at;
        assert!(
            during.at < app_exit,
            "{mode:?}: no restart during the drain\n{output}"
        );
    }
}

/// Signals other than stop and restart signals go to the main service only; the restart signal restarts
/// the main service only, the helpers staying up.
#[test]
fn signals_go_to_the_main_service_and_the_restart_signal_restarts_it_alone() {
    for mode in MODES {
        let setup = Setup::new("routing");
        let text = format!(
            "[helper]\ncommand = {}\n\n[app]\nmain = true\n",
            command("helper", &[])
        );
        let mut options = setup.file(&text);
        options.extend(["--restart-signal", "HUP"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &[]));
        let first = grace.wait_stdout("svc app ready");
        grace.signal(libc::SIGUSR1);
        grace.wait_stdout("svc app got t=");
        grace.signal(libc::SIGHUP);
        grace.wait_stdout("svc app exiting");
        let second = grace.wait_stdout("svc app ready");
        assert_ne!(parse(&first).map(|e| e.pid), parse(&second).map(|e| e.pid));
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{output}");
        let all = events(&finished.lines);
        let helper_signals: Vec<&Event> = all
            .iter()
            .filter(|e| e.service == "helper" && e.event == "got")
            .collect();
        assert_eq!(
            helper_signals.len(),
            1,
            "{mode:?}: the helper got more than its SIGTERM\n{output}"
        );
        assert_eq!(
            all.iter()
                .filter(|e| e.service == "helper" && e.event == "started")
                .count(),
            1,
            "{output}"
        );
        assert!(find(&all, "app", "got", "USR1").is_some(), "{output}");
    }
}

/// A stop signal during start-up stops what started, in reverse order, and nothing more starts; before the
/// main service ever ran, grace exits 128 + the signal's number.
#[test]
fn a_stop_during_start_up_stops_what_started() {
    for mode in MODES {
        let setup = Setup::new("startup");
        let never = setup.path("never");
        let text = format!(
            "[first]\ncommand = {}\n\n[slow]\ncommand = {}\nready = \"file:{never}\"\n\n[app]\nmain = true\n",
            command("first", &[]),
            command("slow", &[]),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        grace.wait_stdout("svc first ready");
        grace.wait_stdout("svc slow ready");
        let waited = Instant::now();
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 128 + libc::SIGTERM, "{mode:?}\n{output}");
        assert!(finished.at.duration_since(waited) < LATE, "{output}");
        assert!(
            time_of(&finished, "first", "got", "TERM") >= time_of(&finished, "slow", "exiting", "")
        );
        assert!(
            find(&events(&finished.lines), "app", "started", "").is_none(),
            "{output}"
        );
    }
}

/// A file grace cannot accept is refused before anything starts: one line with the file and line, status 2.
#[test]
fn a_refused_file_names_its_line_and_nothing_starts() {
    let setup = Setup::new("refused");
    let marker = setup.path("started");
    let cases: [(&str, &str); 4] = [
        ("[app]\nmain = true\n[app]\n", "services.toml:3:"),
        ("[web]\ncomand = [\"x\"]\n", "services.toml:2:"),
        ("[web]\ncommand = \"\"\"x\"\"\"\n", "services.toml:2:"),
        (
            "# a comment\n[web]\ncommand = [\"touch\", \"MARKER\"]\nready = \"udp:1\"\n",
            "services.toml:4:",
        ),
    ];
    for (text, expected) in cases {
        let text = text.replace("MARKER", &marker);
        let (status, _, stderr) = common::run_to_end(
            Grace::new(Mode::Subreaper).args(setup.file(&text)),
            &["touch".to_string(), marker.clone()],
        );
        assert_eq!(status.code(), Some(2), "{text}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(
            !std::path::Path::new(&marker).exists(),
            "{text}: something started"
        );
    }
}

/// `--explain` with a services file validates it, starts nothing, and prints the start order, the stop
/// order, the stop's timeline with each service's share, and a warning for a plan that cannot fit.
#[test]
fn explain_shows_the_orders_and_the_stop_timeline_and_starts_nothing() {
    let setup = Setup::new("explain");
    let marker = setup.path("started");
    let text = format!(
        r#"
[migrate]
command = ["touch", "{marker}"]
once = true

[db-proxy]
command = ["touch", "{marker}"]
ready = "tcp:127.0.0.1:5432"

[app]
main = true

[nginx]
command = ["touch", "{marker}"]
stop-signal = "QUIT"
stop-timeout = "5s"
"#
    );
    let mut options = setup.file(&text);
    options.extend(["--explain", "-t", "20s", "--cleanup-timeout", "3s"].map(String::from));
    let (status, stdout, stderr) = common::run_to_end(
        Grace::new(Mode::Subreaper).args(options),
        &["touch".to_string(), marker.clone()],
    );
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(!std::path::Path::new(&marker).exists(), "--explain started something");
    let lines: Vec<&str> = stdout.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}\n{stdout}"))
    };
    // Start order, then the stop order without the `once` task.
    assert!(position("1  migrate") < position("2  db-proxy"));
    assert!(position("2  db-proxy") < position("3  app"));
    assert!(position("3  app") < position("4  nginx"));
    assert!(stdout.contains("Stop order: nginx, app, db-proxy ("), "{stdout}");
    // nginx's turn lasts its stop-timeout; app's begins after it; everything is signalled at G − C = 17 s.
    assert!(lines[position("t0+0s      nginx: SIGQUIT")].contains("at most 5s"), "{stdout}");
    assert!(lines[position("t0+5s      app:")].contains("t0+17s at most"), "{stdout}");
    assert!(stdout.contains("t0+17s     every process not yet signalled"), "{stdout}");
    assert!(stdout.contains("t0+20s     SIGKILL"), "{stdout}");
    assert!(
        stdout.contains("warning: app has no stop-timeout: if it does not stop, the services after it in the stop order (db-proxy) wait until t0+17s"),
        "{stdout}"
    );

    // A refused file is refused by --explain too, with its line.
    let broken = setup.file("[app]\nmain = true\nstop-timeout = \"soon\"\n");
    let mut options = broken;
    options.push("--explain".to_string());
    let (status, stdout, stderr) = common::run_to_end(
        Grace::new(Mode::Subreaper).args(options),
        &["true".to_string()],
    );
    assert_eq!(status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("services.toml:3:"), "{stderr}");
}
