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
        // A stale readiness file from an earlier run: it must not let the next service start early.
        std::fs::write(&file, "stale").expect("writing a stale readiness file");
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

/// A service's `env` is set on top of grace's environment: a variable set again has the file's value (once),
/// a new one is added, the rest is inherited, GRACE_SERVICE names the service, and a PATH set there is where
/// the command is looked up.
#[test]
fn a_services_environment_is_graces_with_its_env_on_top() {
    for mode in MODES {
        let setup = Setup::new("environment");
        let bin = setup.path("bin");
        std::fs::create_dir_all(&bin).expect("creating the bin directory");
        // env(1) prints the environment exactly as exec gave it, duplicates included.
        std::os::unix::fs::symlink("/usr/bin/env", format!("{bin}/probe-environment"))
            .expect("linking the probe");
        let text = format!(
            "[probe]\ncommand = [\"probe-environment\"]\nonce = true\n\
             env = [\"OVERRIDDEN=from-the-file\", \"ADDED=added\", \"PATH={bin}:/usr/bin:/bin\"]\n\n\
             [app]\nmain = true\n"
        );
        let mut grace = Grace::new(mode)
            .env("INHERITED", "from-grace")
            .env("OVERRIDDEN", "from-grace")
            .args(setup.file(&text))
            .spawn_waiting_for(&main_command("app", &[]), "starting");
        grace.wait_stdout("svc app ready");
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{output}");
        let printed = finished.stdout();
        let count = |entry: &str| printed.iter().filter(|line| **line == entry).count();
        for entry in [
            "INHERITED=from-grace",
            "OVERRIDDEN=from-the-file",
            "ADDED=added",
            "GRACE_SERVICE=probe",
        ] {
            assert_eq!(count(entry), 1, "{mode:?} {entry}\n{output}");
        }
        assert_eq!(count("OVERRIDDEN=from-grace"), 0, "{mode:?}\n{output}");
    }
}

/// A helper that keeps failing is restarted with grace's growing delay while the app runs (the first
/// restart after the configured delay, then at least a second, doubling); and one that fails during the app's
/// drain is restarted too, so that it is there for the rest of the drain.
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
        let mut grace = start(mode, options, main_command("app", &["--drain", "3000"]));
        let starts = grace.wait_count(Stream::Stdout, "svc flaky started", 3);
        let gaps: Vec<f64> = starts
            .windows(2)
            .map(|pair| pair[1].at.duration_since(pair[0].at).as_secs_f64())
            .collect();
        for (gap, delay) in gaps.iter().zip([0.2, 1.0]) {
            assert!(
                *gap >= delay,
                "{mode:?}: restarts {gaps:?} came sooner than {delay}"
            );
        }
        grace.wait_log("flaky: restarting in 2.000s");
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
    assert!(
        !std::path::Path::new(&marker).exists(),
        "--explain started something"
    );
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
    assert!(
        stdout.contains("Stop order: nginx, app, db-proxy ("),
        "{stdout}"
    );
    // nginx's turn lasts its stop-timeout; app's begins after it; everything is signalled at G − C = 17 s.
    assert!(
        lines[position("t0+0s      nginx: SIGQUIT")]
            .contains("at most 5s (its stop-timeout: SIGKILL of its tree at t0+5s)"),
        "{stdout}"
    );
    assert!(
        lines[position("t0+5s      app:")].contains("until nothing of it is left"),
        "{stdout}"
    );
    // db-proxy's turn comes at G − C at worst: it is signalled with everything.
    assert!(
        lines[position("t0+17s     db-proxy:")].contains("with everything not yet signalled"),
        "{stdout}"
    );
    assert!(
        stdout.contains("t0+17s     every process not yet signalled"),
        "{stdout}"
    );
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

/// What is not a services file is refused at once with status 2, never read for ever: a device that never
/// ends, a FIFO nobody writes, a directory, a file over 1 MiB.
#[test]
fn what_is_not_a_services_file_is_refused_at_once() {
    let setup = Setup::new("not-a-file");
    let fifo = setup.path("fifo");
    let made = std::ffi::CString::new(fifo.clone()).expect("a path");
    assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0, "mkfifo");
    let huge = setup.path("huge.toml");
    std::fs::write(&huge, "#".repeat(1024 * 1024 + 1)).expect("writing");
    let directory = setup.path("");
    for (path, expected) in [
        ("/dev/zero", "not a regular file"),
        (fifo.as_str(), "not a regular file"),
        (directory.as_str(), "directory"),
        (huge.as_str(), "larger than 1 MiB"),
    ] {
        let (status, _, stderr) = common::run_to_end(
            Grace::new(Mode::Subreaper).args(["--services", path]),
            &["true".to_string()],
        );
        assert_eq!(status.code(), Some(2), "{path}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{path}: {stderr}");
    }
}

/// Only the service's own processes may say it is ready: a READY=1 from anything else that reaches the
/// abstract socket (here the test itself; in a pod, another container) is refused and logged, and the next
/// service still waits for the service's own word.
#[test]
fn notify_takes_ready_only_from_the_service() {
    for mode in MODES {
        let setup = Setup::new("notify");
        let text = format!(
            "[notifier]\ncommand = {}\nready = \"notify\"\n\n[app]\nmain = true\n",
            command(
                "notifier",
                &[
                    "--env",
                    "NOTIFY_SOCKET",
                    "--ready-after",
                    "1500",
                    "--notify"
                ]
            ),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        let line = grace.wait_stdout("svc notifier env");
        let name = line
            .text
            .split("NOTIFY_SOCKET=@")
            .nth(1)
            .expect("an abstract socket name")
            .to_string();
        let impostor = std::os::unix::net::UnixDatagram::unbound().expect("a socket");
        let address = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .expect("an address");
        impostor
            .send_to_addr(b"READY=1\n", &address)
            .expect("sending");
        grace.wait_log("which is not one of the service's processes: ignored");
        grace.wait_stdout("svc app ready");
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        let ready = time_of(&finished, "notifier", "ready", "");
        let app = time_of(&finished, "app", "started", "");
        assert!(
            app >= ready,
            "{mode:?}: the app started before the notifier's own READY=1\n{output}"
        );
    }
}

/// A `once` task is waited for with a line every 10 s, and `ready-timeout` bounds it: past it, its tree is
/// SIGKILLed and the container ends with 124 before the app ever starts.
#[test]
fn a_once_task_past_its_ready_timeout_ends_the_container_with_124() {
    for mode in MODES {
        let setup = Setup::new("once-timeout");
        let text = format!(
            "[migrate]\ncommand = {}\nonce = true\nready-timeout = \"1s\"\n\n[app]\nmain = true\n",
            command("migrate", &["--daemon", "ignore"]),
        );
        let mut grace = start(mode, setup.file(&text), main_command("app", &[]));
        let started = grace.wait_log("migrate: started pid").at;
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 124, "{mode:?}\n{output}");
        let ended = finished
            .line(
                Stream::Stderr,
                "did not complete within its ready-timeout of 1s",
            )
            .at;
        assert!(
            ended.duration_since(started) >= Duration::from_millis(900),
            "{output}"
        );
        assert!(
            find(&events(&finished.lines), "app", "started", "").is_none(),
            "{output}"
        );
    }
}

/// A `file:` readiness check on a file system that stops answering (a network mount whose server went away;
/// here a FUSE server of the test's own) never holds PID 1: the stale file's removal and each probe run in
/// children of their own, the service starts, the stop comes at once, and the deadline holds.
#[test]
fn a_hung_file_system_never_holds_grace() {
    use std::io::BufRead;
    for mode in MODES {
        let setup = Setup::new("fuse");
        let mountpoint = setup.path("mnt");
        std::fs::create_dir_all(&mountpoint).expect("a mount point");
        let stall = setup.path("stall");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/fuse_stall.py");
        let mut server = std::process::Command::new("python3")
            .arg(&script)
            .args([&mountpoint, &stall])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the FUSE server");
        let mut server_lines =
            std::io::BufReader::new(server.stdout.take().expect("its stdout")).lines();
        assert_eq!(
            server_lines.next().and_then(Result::ok).as_deref(),
            Some("mounted")
        );
        // Unmounted and stopped whatever happens: a stalled mount would hold every later test.
        struct Unmount(String, std::process::Child);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .args(["-l", &self.0])
                    .status();
                let _ = self.1.kill();
                let _ = self.1.wait();
            }
        }
        let _unmount = Unmount(mountpoint.clone(), server);
        std::fs::write(&stall, "").expect("stalling the file system");
        let text = format!(
            "[share]\ncommand = {}\nready = \"file:{mountpoint}/ready\"\n\n[app]\nmain = true\n",
            command("share", &[]),
        );
        let mut options = setup.file(&text);
        options.extend(["-t", "2s"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &[]));
        // The stale file cannot be removed (the child that tries waits in the kernel): after 10 s grace says
        // so and starts the service anyway; its probes hang in children of their own.
        grace.wait_log("could not be removed within 10.000s");
        grace.wait_stdout("svc share ready");
        // Its first probe hangs too; 10 s later the loop still runs, and says what it waits for.
        grace.wait_log("share: not ready after");
        let sent = common::stop(&grace);
        grace.wait_log("stopping the services in reverse order");
        // A child stuck in the kernel survives even SIGKILL: grace gives up on it 1 s after the deadline,
        // names it, and exits (as PID 1 the kernel then holds the namespace until the file system answers:
        // the test lets it go only then).
        let exiting = grace.wait_log("exiting with status 143");
        let elapsed = exiting.at.saturating_duration_since(sent);
        assert!(
            elapsed < Duration::from_secs(3) + LATE,
            "{mode:?}: exiting {elapsed:?} after SIGTERM"
        );
        drop(_unmount);
        let finished = grace.finish();
        assert_eq!(
            finished.code(),
            128 + libc::SIGTERM,
            "{mode:?}\n{}",
            finished.dump()
        );
    }
}

/// While a helper waits to be restarted, grace sleeps: no listing of /proc, no wake-up, in a restart delay of
/// several seconds (measured as grace's CPU time over two seconds of it, against a bound a loop would pass
/// at once).
#[test]
fn a_restart_delay_costs_nothing() {
    for mode in MODES {
        let setup = Setup::new("delay");
        let text = format!(
            "[crashy]\ncommand = {}\n\n[app]\nmain = true\n",
            command("crashy", &["--exit-after", "10", "1"]),
        );
        let mut options = setup.file(&text);
        options.extend(["--restart-delay", "8s"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &[]));
        grace.wait_log("crashy: restarting in 8.000s");
        // Past the settle and the cleanup timeout of the last run's leftovers (2.2 s), where a loop spun.
        let cpu = |pid: i32| -> f64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("grace's stat");
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let ticks: f64 =
                fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
            ticks / 100.0
        };
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100)); // a measurement window, not synchronisation
        }
        let before = cpu(grace.grace_pid());
        let window = Instant::now() + Duration::from_secs(2);
        while Instant::now() < window {
            std::thread::sleep(Duration::from_millis(100));
        }
        let used = cpu(grace.grace_pid()) - before;
        common::stop(&grace);
        let finished = grace.finish();
        assert!(
            used < 0.2,
            "{mode:?}: grace used {used} s of CPU in 2 s of a restart delay\n{}",
            finished.dump()
        );
    }
}

/// Once a stop began, the main service is never started again: not by its restart policy (a stop during its
/// restart delay), nor by the restart signal (a stop while it restarts).
#[test]
fn the_main_service_is_not_restarted_once_a_stop_began() {
    for mode in MODES {
        let setup = Setup::new("no-restart");
        let text = format!(
            "[app]\nmain = true\n\n[nginx]\ncommand = {}\n",
            command("nginx", &["--drain", "2500"]),
        );
        let mut options = setup.file(&text);
        options.extend(["--restart", "always", "--restart-delay", "1s"].map(String::from));
        let mut grace = start(
            mode,
            options,
            main_command("app", &["--exit-after", "200", "3"]),
        );
        grace.wait_log("app: restarting in 1.000s");
        common::stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 3, "{mode:?}\n{output}");
        assert!(
            !finished.has(Stream::Stderr, "app: restarted"),
            "{mode:?}: restarted during the stop\n{output}"
        );
    }
}

/// A helper that fails for the first time during the app's drain is restarted after the configured delay, so
/// that it is there for the rest of the drain; its turn to stop still comes after the app's.
#[test]
fn a_helper_that_fails_during_the_drain_is_restarted() {
    for mode in MODES {
        let setup = Setup::new("drain-restart");
        let text = format!(
            "[late]\ncommand = {}\n\n[app]\nmain = true\n",
            command("late", &[]),
        );
        let mut options = setup.file(&text);
        options.extend(["--restart-delay", "200ms"].map(String::from));
        let mut grace = start(mode, options, main_command("app", &["--drain", "3000"]));
        let helper = parse(&grace.wait_stdout("svc late ready")).expect("a stub's line");
        grace.wait_stdout("svc app ready");
        common::stop(&grace);
        grace.wait_stdout("svc app draining");
        // The failure: killed, as the OOM killer would.
        common::send_signal(common::host_pid(&grace, helper.pid), libc::SIGKILL);
        let killed = monotonic_now();
        let restarted = parse(&grace.wait_until(
            |line| {
                parse(line).is_some_and(|event| {
                    event.service == "late" && event.event == "started" && event.pid != helper.pid
                })
            },
            "the helper's second start",
        ))
        .expect("a stub's line");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        assert!(
            restarted.t - killed >= 0.2,
            "{mode:?}: restarted {:.3} s after its failure, before the delay\n{output}",
            restarted.t - killed
        );
        let app_exit = time_of(&finished, "app", "exiting", "");
        assert!(
            restarted.t < app_exit,
            "{mode:?}: not restarted during the drain\n{output}"
        );
        assert!(
            time_of(&finished, "late", "got", "TERM") >= app_exit,
            "{mode:?}: late was stopped before the app\n{output}"
        );
    }
}
