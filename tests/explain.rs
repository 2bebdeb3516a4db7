//! The defaults that fit where grace runs, and `grace --explain`, which shows them before a rolling update
//! does: the configuration, where each value came from, and the shutdown timeline it implies.

mod common;

use std::process::{Command, Stdio};

use common::{child, grace_binary, output_within, Grace, Mode};

/// Runs `grace ARGUMENTS…` with only `environment` (beyond PATH) and returns status, stdout and stderr.
fn explain(arguments: &[&str], environment: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(grace_binary());
    command
        .args(arguments)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(environment.iter().copied())
        .stdin(Stdio::null());
    let output = output_within(&mut command);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn explain_shows_the_defaults_and_runs_nothing() {
    let (status, text, errors) = explain(&["--explain", "--", "sh", "-c", "echo ran"], &[]);
    assert_eq!(status, Some(0), "{errors}");
    assert!(errors.is_empty(), "{errors}");
    assert!(!text.contains("ran\n"), "the command ran:\n{text}");
    for expected in [
        "  grace period     8s ",
        "from the default",
        "  command          sh -c 'echo ran'",
        "After a stop signal (SIGTERM or SIGINT) at t0:",
        "t0         forwarded to the main child as SIGTERM, with SIGCONT",
        "t0+6s      SIGTERM and SIGCONT to every other process of the tree",
        "t0+8s      SIGKILL to everything that remains",
        "grace's SIGKILL comes 2s before that of `docker stop`",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    assert!(!text.contains("warning"), "{text}");
    // Outside a pod, nothing of terminationGracePeriodSeconds or preStop hooks.
    assert!(!text.contains("preStop"), "{text}");
}

#[test]
fn explain_in_a_kubernetes_pod_shows_25_seconds_and_where_they_came_from() {
    let pod = [("KUBERNETES_SERVICE_HOST", "10.96.0.1")];
    let (status, text, _) = explain(&["--explain"], &pod);
    assert_eq!(status, Some(0));
    assert!(text.contains("  grace period     25s "), "{text}");
    assert!(
        text.contains("from the default in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set)"),
        "{text}"
    );
    assert!(text.contains("t0+25s     SIGKILL"), "{text}");
    assert!(text.contains("comes 5s before the kubelet's"), "{text}");
    // grace cannot see the pod's terminationGracePeriodSeconds nor its preStop hook: what the default
    // assumes of them, and the rule for any other pod.
    for expected in [
        "grace cannot see the pod's terminationGracePeriodSeconds nor its preStop hook",
        "; the 25s default in a pod assumes terminationGracePeriodSeconds of 30s or more and no preStop hook: \
         otherwise set GRACE_PERIOD ≤ terminationGracePeriodSeconds − preStop − 5s, or the kubelet's SIGKILL \
         comes first and grace reports nothing",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    // An explicit value wins, and says where it came from.
    let (_, text, _) = explain(
        &["--explain"],
        &[
            pod[0],
            ("GRACE_PERIOD", "12s"),
            ("GRACE_PRE_STOP_DELAY", "3s"),
        ],
    );
    assert!(text.contains("  grace period     12s"), "{text}");
    assert!(
        text.contains("from the environment (GRACE_PERIOD)"),
        "{text}"
    );
    assert!(text.contains("t0+3s      forwarded"), "{text}");
    // A period the chart chose: what it needs of the pod, and no word of the default's assumption.
    assert!(
        text.contains(
            "This grace period needs a terminationGracePeriodSeconds of at least 17s plus the preStop hook's \
             time, if the pod has one (GRACE_PERIOD ≤ terminationGracePeriodSeconds − preStop − 5s)"
        ),
        "{text}"
    );
    assert!(!text.contains("default in a pod assumes"), "{text}");
}

#[test]
fn explain_with_every_option_set() {
    let (status, text, errors) = explain(
        &[
            "-t",
            "20s",
            "--cleanup-timeout",
            "5s",
            "--pre-stop-delay",
            "3s",
            "--final-signal",
            "QUIT",
            "--final-timeout",
            "2s",
            "--stop-signals",
            "TERM,HUP",
            "-r",
            "TERM:QUIT",
            "-g",
            "--log-format",
            "json",
            "--explain",
            "--",
            "server",
            "--port",
            "80",
        ],
        &[],
    );
    assert_eq!(status, Some(0), "{errors}");
    for expected in [
        "  grace period     20s",
        "from the command line",
        "  cleanup timeout  5s",
        "  pre-stop delay   3s",
        "  final signal     SIGQUIT",
        "  final timeout    2s",
        "  stop signals     SIGTERM,SIGHUP",
        "  rewrites         SIGTERM→SIGQUIT",
        "  forwarded to     the main child's process group",
        "  log format       json",
        "  command          server --port 80",
        "After a stop signal (SIGTERM or SIGHUP) at t0:",
        "t0+3s      forwarded to the main child as SIGQUIT",
        "t0+15s     SIGTERM and SIGCONT to every other process",
        "t0+18s     the final signal, SIGQUIT",
        "t0+19.9s   grace reads what remains",
        "t0+20s     SIGKILL",
        "t0+21s     at the latest (t0+23s",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

#[test]
fn explain_warns_of_nestings_that_cannot_work_and_refuses_what_grace_refuses() {
    let (status, text, _) = explain(&["-t", "30s", "--cleanup-timeout", "30s", "--explain"], &[]);
    assert_eq!(status, Some(0));
    assert!(
        text.contains("warning: the cleanup timeout (30s)"),
        "{text}"
    );
    assert!(
        text.contains("warning: the grace period (30s) reaches Kubernetes"),
        "{text}"
    );
    assert!(text.contains("at least 35s"), "{text}");
    let (_, text, _) = explain(&["-t", "5s", "--cleanup-timeout", "5s", "--explain"], &[]);
    assert!(text.contains("warning: the cleanup timeout (5s)"), "{text}");
    let (_, text, _) = explain(&["-t", "10s", "--explain"], &[]);
    assert!(!text.contains("warning"), "{text}");
    let (status, text, errors) = explain(&["-t", "1s", "--final-signal", "QUIT", "--explain"], &[]);
    assert_eq!(status, Some(2), "{text}");
    assert!(text.is_empty(), "{text}");
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(errors.contains("--final-timeout"), "{errors}");
}

/// The start line names the effective grace period; the JSON `started` event, and `-v`, say where it came
/// from. In a pod, with the default, the start line (the first of the container's log) also says what the
/// default assumes of the pod, which grace cannot see.
#[test]
fn the_start_says_where_the_grace_period_came_from() {
    /// Grace's options, its environment, the grace period it must name, and where it came from.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let pod = ("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    let cases: [Case; 5] = [
        (&[], &[], "8s", "default"),
        (&[], &[pod], "25s", "kubernetes"),
        (&[], &[("GRACE_PERIOD", "12s")], "12s", "environment"),
        (&["-t", "3s"], &[("GRACE_PERIOD", "12s")], "3s", "flag"),
        (&[], &[pod, ("GRACE_PERIOD", "12s")], "12s", "environment"),
    ];
    let assumption = "; the 25s default in a pod assumes terminationGracePeriodSeconds of 30s or more and no \
                      preStop hook: otherwise set GRACE_PERIOD ≤ terminationGracePeriodSeconds − preStop − 5s";
    for (arguments, environment, period, source) in cases {
        let mut grace = Grace::new(Mode::Subreaper)
            .args(["--log-format", "json", "-v"])
            .args(arguments);
        for (name, value) in environment {
            grace = grace.env(name, value);
        }
        let running = grace.spawn(&child(&["status"]));
        let finished = running.finish();
        let started = finished.line(common::Stream::Stderr, "\"event\":\"started\"");
        assert!(
            started
                .text
                .contains(&format!("(grace period {period}, as a subreaper)")),
            "{}",
            started.text
        );
        assert!(
            started
                .text
                .contains(&format!("\"grace_period_source\":\"{source}\"")),
            "{}",
            started.text
        );
        assert_eq!(
            started
                .text
                .contains(&format!("as a subreaper){assumption}\"")),
            source == "kubernetes",
            "{}",
            started.text
        );
        let origin = finished.line(common::Stream::Stderr, &format!("grace period {period}: "));
        assert!(
            origin.text.contains("\"level\":\"debug\""),
            "{}",
            origin.text
        );
    }
}

/// The explained timeline, `(offset, step)` for each `t0+…` line, in the order printed.
fn explained_steps(text: &str) -> Vec<(std::time::Duration, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("t0")?;
            let (offset, step) = match rest.strip_prefix('+') {
                Some(timed) => {
                    let (offset, step) = timed.split_once(' ')?;
                    let seconds: f64 = offset.strip_suffix('s')?.parse().ok()?;
                    (std::time::Duration::from_secs_f64(seconds), step)
                }
                None => (std::time::Duration::ZERO, rest),
            };
            Some((offset, step.trim().to_string()))
        })
        .collect()
}

/// With a pre-stop delay longer than the grace period less the cleanup timeout, the rest of the tree gets its
/// SIGTERM when the stop signal is forwarded, not before: the explained times are in order, and a run of the
/// same options does each step at its explained time (an exact lower bound, and common::LATE above it).
#[test]
fn the_explained_times_are_in_order_and_those_of_a_run() {
    let options = [
        "-t",
        "3s",
        "--cleanup-timeout",
        "2900ms",
        "--pre-stop-delay",
        "2s",
        "--final-signal",
        "QUIT",
        "--final-timeout",
        "500ms",
    ];
    let mut arguments = options.to_vec();
    arguments.push("--explain");
    let (status, text, errors) = explain(&arguments, &[]);
    assert_eq!(status, Some(0), "{errors}");
    let steps = explained_steps(&text);
    let offsets: Vec<std::time::Duration> = steps.iter().map(|(offset, _)| *offset).collect();
    let mut sorted = offsets.clone();
    sorted.sort();
    assert_eq!(offsets, sorted, "the timeline is out of order:\n{text}");

    // The same options, measured: a main child that takes every signal and exits on none, and a daemon
    // that ignores SIGTERM.
    let mut grace = Grace::new(Mode::Pid1).args(options).spawn(&child(&[
        "with-daemons",
        "worker:ignore",
        "--",
        "signals",
    ]));
    grace.wait_stdout("daemon worker pid");
    grace.wait_stdout("ready pid");
    let sent = common::stop(&grace);
    let finished = grace.finish();
    let output = finished.dump();
    // Each step of the timeline, and the log line that says it was done.
    let done = [
        (
            "forwarded to the main child",
            "pre-stop delay of 2s over: forwarded",
        ),
        (
            "SIGTERM and SIGCONT to every other process",
            "sending SIGTERM: ",
        ),
        ("the final signal, SIGQUIT", "final signal SIGQUIT to"),
        (
            "SIGKILL to everything that remains",
            "grace period of 3s expired: SIGKILL to",
        ),
    ];
    for (step, logged) in done {
        let explained = steps
            .iter()
            .find(|(_, text)| text.starts_with(step))
            .unwrap_or_else(|| panic!("no step {step:?} in\n{text}"))
            .0;
        let line = finished.line(common::Stream::Stderr, logged);
        common::assert_on_time(step, sent, line.at, explained, &format!("{text}\n{output}"));
    }
}

/// --explain warns of a stop signal forwarded as one that a process ignores, or is stopped by, unless it
/// handles it.
#[test]
fn explain_warns_of_a_stop_signal_forwarded_as_one_that_does_not_stop_by_default() {
    let (status, text, errors) = explain(&["-r", "TERM:WINCH", "--explain"], &[]);
    assert_eq!(status, Some(0), "{errors}");
    assert!(
        text.contains("warning: the stop signal SIGTERM is forwarded as SIGWINCH"),
        "{text}"
    );
    let (_, text, _) = explain(&["-r", "INT:TSTP", "--explain"], &[]);
    assert!(text.contains("forwarded as SIGTSTP"), "{text}");
    let (_, text, _) = explain(&["-r", "TERM:QUIT", "--explain"], &[]);
    assert!(!text.contains("warning"), "{text}");
}
