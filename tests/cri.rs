//! Stopped the way the kubelet stops a container: through containerd's CRI (runtime.v1), with runc. The
//! kubelet never calls podman: it asks the runtime to `StopContainer(id, timeout)` with the pod's
//! terminationGracePeriodSeconds (T, less what a preStop exec hook took, at least 2 s), and containerd sends
//! the image's stop signal, waits, and SIGKILLs. This test drives Debian's containerd 1.6 exactly so, as a
//! kubelet would: pods on the host network, images imported with `ctr`, a pause program as the sandbox, the
//! container log in the CRI format that `kubectl logs` reads.
//!
//! Every scenario runs at once, each in its own pod, against one containerd the test starts with its own root,
//! state, sockets and cgroup parent (nothing of the machine's), and removes with everything it made, even when
//! a check fails. The whole run takes about 40 s: the T = 30 s scenarios set its length.
//!
//! Needs what tools/setup installs: containerd (Debian), podman, busybox-static, tini, a C compiler with a
//! static libc (for the pause program), and the CRI client's venv, target/cri-venv (tests/cri/setup.sh).
//! `GRACE_CRI_SCENARIOS=name,name` runs only the scenarios named.
//! Configuration and fixtures: tests/cri/ (containerd.toml, pause.c, the Containerfiles, cri.py).

mod common;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any one wait for a line may take before the test fails as hung.
const TIMEOUT: Duration = Duration::from_secs(60);
const IMAGE: &str = "localhost/grace-cri-test:latest";
/// tests/cri/containerd.toml names it as the sandbox image.
const PAUSE_IMAGE: &str = "localhost/grace-cri-pause:latest";
/// The CRI log of the one container of each pod, relative to the pod's log directory (the kubelet's
/// `CONTAINER/RESTARTS.log`).
const LOG_PATH: &str = "app/0.log";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri")
}

/// The test's own containerd directory: config, root, state, sockets, pod logs.
fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cri")
}

// ---------------------------------------------------------------------------------------------------------
// The scenarios

/// What runs as the container's PID 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Init {
    Grace,
    /// tini-static (Debian's, as Docker's `--init`), for the baseline.
    Tini,
    /// The server itself, as a chart without an init runs it.
    None,
}

/// One pod, stopped as the kubelet stops it.
struct Scenario {
    name: &'static str,
    init: Init,
    /// grace's options on its command line, before `--`.
    grace_options: &'static [&'static str],
    /// Variables beyond those the kubelet sets in every container (KUBERNETES_SERVICE_HOST, …).
    env: &'static [(&'static str, &'static str)],
    /// `sh -c` script of the server.
    server: &'static str,
    /// terminationGracePeriodSeconds.
    termination_grace: u64,
    /// A preStop exec hook of this many seconds (`sleep`), run by ExecSync before StopContainer.
    pre_stop_hook: Option<u64>,
    /// `shareProcessNamespace: true`: the pause process is PID 1 and grace a subreaper.
    shared_pid_namespace: bool,
    /// The checks, once the container has stopped.
    check: fn(&Stopped),
}

/// A `setsid` daemon that handles SIGTERM: it says so in the log, then exits. Without an init that sends it
/// SIGTERM, it dies in silence with the container.
macro_rules! daemon {
    () => {
        "setsid sh -c 'trap \"echo daemon got SIGTERM; exit 0\" TERM; echo daemon ready; \
         while :; do sleep 1000 & wait $!; done' & "
    };
}

/// A server that ignores SIGTERM (a shell, or a server that never expected to be PID 1), with a daemon.
const STUBBORN: &str = concat!(daemon!(), "trap '' TERM; echo ready; exec sleep 1000");

/// A well-behaved server: on SIGTERM it drains for 3 s and exits 0. With a daemon.
const DRAINS_3S: &str = concat!(
    daemon!(),
    "trap 'echo draining; sleep 3; echo drained; exit 0' TERM; echo ready; \
     while :; do sleep 1000 & wait $!; done"
);

/// A server that dies of SIGTERM, as a Java or Go server without a handler does (status 143).
const DIES_OF_SIGTERM: &str = "echo ready; exec sleep 1000";

fn scenarios() -> Vec<Scenario> {
    let base = |name, init, server, termination_grace, check| Scenario {
        name,
        init,
        grace_options: &[],
        env: &[],
        server,
        termination_grace,
        pre_stop_hook: None,
        shared_pid_namespace: false,
        check,
    };
    vec![
        base(
            "stubborn-30s-grace",
            Init::Grace,
            STUBBORN,
            30,
            stubborn_30s_grace,
        ),
        base(
            "stubborn-30s-tini",
            Init::Tini,
            STUBBORN,
            30,
            killed_by_the_runtime,
        ),
        base(
            "stubborn-30s-no-init",
            Init::None,
            STUBBORN,
            30,
            killed_by_the_runtime,
        ),
        base(
            "stubborn-10s-grace-default",
            Init::Grace,
            STUBBORN,
            10,
            stubborn_10s_grace_default,
        ),
        Scenario {
            env: &[("GRACE_PERIOD", "8s")],
            ..base(
                "stubborn-10s-grace-8s",
                Init::Grace,
                STUBBORN,
                10,
                stubborn_10s_grace_8s,
            )
        },
        base("drains-grace", Init::Grace, DRAINS_3S, 30, drains_grace),
        base("drains-no-init", Init::None, DRAINS_3S, 30, drains_no_init),
        Scenario {
            env: &[("GRACE_PERIOD", "3s"), ("GRACE_LOG_FORMAT", "json")],
            ..base("json-logs", Init::Grace, STUBBORN, 10, json_logs)
        },
        Scenario {
            pre_stop_hook: Some(6),
            ..base(
                "pre-stop-hook-default",
                Init::Grace,
                STUBBORN,
                30,
                pre_stop_hook_default,
            )
        },
        Scenario {
            pre_stop_hook: Some(6),
            // The rule: GRACE_PERIOD ≤ T − preStop − 5 s = 30 − 6 − 5.
            env: &[("GRACE_PERIOD", "19s")],
            ..base(
                "pre-stop-hook-rule",
                Init::Grace,
                STUBBORN,
                30,
                pre_stop_hook_rule,
            )
        },
        Scenario {
            env: &[("GRACE_PRE_STOP_DELAY", "6s")],
            ..base("pre-stop-delay", Init::Grace, STUBBORN, 30, pre_stop_delay)
        },
        Scenario {
            env: &[("GRACE_PERIOD", "3s")],
            shared_pid_namespace: true,
            ..base(
                "shared-pid-namespace",
                Init::Grace,
                STUBBORN,
                10,
                shared_pid_namespace,
            )
        },
        Scenario {
            grace_options: &["-e", "143"],
            ..base(
                "success-exit-143",
                Init::Grace,
                DIES_OF_SIGTERM,
                30,
                success_exit_143,
            )
        },
    ]
}

#[test]
fn stopped_through_containerds_cri_as_the_kubelet_stops_it() {
    let wanted: Option<Vec<String>> = std::env::var("GRACE_CRI_SCENARIOS")
        .ok()
        .map(|names| names.split(',').map(str::to_owned).collect());
    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|scenario| {
            wanted
                .as_ref()
                .map_or(true, |names| names.iter().any(|name| name == scenario.name))
        })
        .collect();
    assert!(
        !scenarios.is_empty(),
        "no scenario named in GRACE_CRI_SCENARIOS"
    );
    let started = Instant::now();
    let images = Images::build();
    let containerd = Containerd::start(&work_dir(), &images);
    let ready = started.elapsed();
    // Every pod at once: containerd serves them in parallel, and most of each one's time is a wait.
    let failures: Vec<String> = thread::scope(|scope| {
        let runs: Vec<_> = scenarios
            .iter()
            .map(|scenario| {
                let containerd = &containerd;
                scope.spawn(move || {
                    let stopped = stop_like_the_kubelet(containerd, scenario);
                    (scenario.check)(&stopped);
                })
            })
            .collect();
        scenarios
            .iter()
            .zip(runs)
            .filter_map(|(scenario, run)| {
                run.join().err().map(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                        .unwrap_or_default();
                    format!("{}: {message}", scenario.name)
                })
            })
            .collect()
    });
    eprintln!(
        "figures: {} pods, ready {ready:.1?} after the start (images, containerd), all stopped {:.1?} after it",
        scenarios.len(),
        started.elapsed()
    );
    if !failures.is_empty() {
        containerd.keep_logs();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------------------
// The checks: what grace controls (when the runtime's call returned, the status, what grace logged, whether
// the daemon got SIGTERM), beside the baselines' runs in the same test.

/// T = 30 s and grace's default in a pod (25 s): grace's SIGKILL and its report, 5 s before the runtime's.
fn stubborn_30s_grace(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(25), Duration::from_secs(30));
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(23)));
    stopped.assert_report("grace period of 25s expired: SIGKILL");
    stopped.assert_last_grace_line("exiting with status 137");
}

/// tini and no init: only the runtime's SIGKILL at T, and the daemon never hears of the stop.
fn killed_by_the_runtime(stopped: &Stopped) {
    let timeout = stopped.stop_timeout;
    stopped.assert_took(timeout, timeout + Duration::from_secs(15));
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(None);
}

/// T = 10 s with the pod default of 25 s: the runtime's SIGKILL at 10 s, before grace did anything but
/// forward; no report, and grace's last line still promises a SIGKILL of its own. Its start line, the first of
/// the container's log, said what the default assumes.
fn stubborn_10s_grace_default(stopped: &Stopped) {
    killed_by_the_runtime(stopped);
    stopped.assert_no_report();
    stopped.assert_last_grace_line("grace period 25s, SIGKILL of what remains in");
    let start = stopped.grace_line("started pid");
    for wanted in [
        "grace period 25s",
        "assumes terminationGracePeriodSeconds of 30s or more and no preStop hook",
        "GRACE_PERIOD",
    ] {
        assert!(start.contains(wanted), "{wanted:?} not in {start:?}");
    }
}

/// T = 10 s and GRACE_PERIOD=8s, as the rule says (≤ T − 5 s): grace's SIGKILL and report, before the runtime's.
fn stubborn_10s_grace_8s(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(8), Duration::from_secs(10));
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(6)));
    stopped.assert_report("grace period of 8s expired: SIGKILL");
}

/// The server drains for 3 s and exits 0: `Completed`, and grace then stops the daemon with SIGTERM.
fn drains_grace(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(3), Duration::from_secs(10));
    stopped.assert_status(0, "Completed");
    stopped.assert_output("drained");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(3)));
    stopped.assert_last_grace_line("exiting with status 0");
}

/// The same without an init: `Completed` too, but the daemon is SIGKILLed in silence when PID 1 exits.
fn drains_no_init(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(3), Duration::from_secs(10));
    stopped.assert_status(0, "Completed");
    stopped.assert_output("drained");
    stopped.assert_daemon_got_sigterm(None);
}

/// GRACE_LOG_FORMAT=json: each of grace's lines is one whole record of the CRI log, and one JSON object.
fn json_logs(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(3), Duration::from_secs(10));
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(1)));
    let lines = stopped.grace_lines();
    let events: Vec<&str> = lines
        .iter()
        .map(|line| {
            assert!(
                line.starts_with("{\"ts\":\"") && line.ends_with('}'),
                "not one JSON object: {line:?}"
            );
            let start = line.find("\"event\":\"").expect("an event field") + 9;
            let end = start + line[start..].find('"').expect("the event's end");
            &line[start..end]
        })
        .collect();
    let wanted = [
        "started",
        "stop_signal",
        "deadline",
        "survivor",
        "escalated",
        "main_exited",
        "exiting",
    ];
    let mut rest = events.iter();
    for event in wanted {
        assert!(
            rest.any(|seen| *seen == event),
            "event {event:?} missing or out of order in {events:?}"
        );
    }
}

/// A 6 s preStop hook leaves StopContainer 24 s of T = 30 s, under the pod default of 25 s: the runtime's
/// SIGKILL at 24 s, and no report. (The daemon got its SIGTERM at 23 s, before it.)
fn pre_stop_hook_default(stopped: &Stopped) {
    // 24 s, or less where the hook's exec took over 7 s: under grace's 25 s either way.
    assert!(
        stopped.stop_timeout < Duration::from_secs(25),
        "{}",
        stopped.dump()
    );
    let timeout = stopped.stop_timeout;
    stopped.assert_took(timeout, timeout + Duration::from_secs(15));
    stopped.assert_status(137, "Error");
    stopped.assert_no_report();
}

/// The same hook with GRACE_PERIOD=19s (T − preStop − 5 s): grace's SIGKILL and report at 19 s of 24.
fn pre_stop_hook_rule(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(19), stopped.stop_timeout);
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(17)));
    stopped.assert_report("grace period of 19s expired: SIGKILL");
}

/// GRACE_PRE_STOP_DELAY=6s instead of the hook: the delay counts inside grace's 25 s, and the margin stays.
fn pre_stop_delay(stopped: &Stopped) {
    stopped.assert_took(Duration::from_secs(25), Duration::from_secs(30));
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(23)));
    stopped.assert_report("grace period of 25s expired: SIGKILL");
    let (received, forwarded) = (
        stopped.grace_time("received SIGTERM"),
        stopped.grace_time("forwarded SIGTERM"),
    );
    assert!(
        forwarded - received >= 6.0,
        "forwarded {:.3} s after the stop signal, before the 6 s delay",
        forwarded - received
    );
}

/// `shareProcessNamespace: true`: the pause process is PID 1, grace a subreaper. The daemon, orphaned,
/// comes to grace, which SIGTERMs it and SIGKILLs the server, and leaves the pod's PID 1 alone.
fn shared_pid_namespace(stopped: &Stopped) {
    assert!(
        stopped.grace_line("started pid").contains("as a subreaper"),
        "{}",
        stopped.grace_line("started pid")
    );
    stopped.assert_took(Duration::from_secs(3), Duration::from_secs(10));
    stopped.assert_status(137, "Error");
    stopped.assert_daemon_got_sigterm(Some(Duration::from_secs(1)));
    stopped.assert_report("grace period of 3s expired: SIGKILL");
    assert_eq!(
        stopped.sandbox_state_after, "SANDBOX_READY",
        "the pod's pause process did not outlive grace"
    );
}

/// `-e 143`: a server that dies of SIGTERM ends `Completed`, status 0.
fn success_exit_143(stopped: &Stopped) {
    stopped.assert_took(Duration::ZERO, Duration::from_secs(5));
    stopped.assert_status(0, "Completed");
    assert!(
        stopped
            .grace_line("was killed by SIGTERM")
            .contains("status 143"),
        "{}",
        stopped.grace_line("was killed by SIGTERM")
    );
}

// ---------------------------------------------------------------------------------------------------------
// One pod, as the kubelet runs and stops it

/// What the runtime and the container's log say once a scenario's container has stopped.
struct Stopped {
    name: &'static str,
    /// StopContainer's timeout: T, less the preStop hook's whole seconds (at least 2).
    stop_timeout: Duration,
    hook_took: Option<Duration>,
    /// How long StopContainer took, timed around the call by the client.
    took: Duration,
    exit_code: i64,
    reason: String,
    /// The container's CRI log, record by record.
    records: Vec<Record>,
    /// The pod sandbox's state once the container has stopped.
    sandbox_state_after: String,
}

fn stop_like_the_kubelet(containerd: &Containerd, scenario: &Scenario) -> Stopped {
    let pod = Pod::run(containerd, scenario);
    let container = pod.create_container(scenario);
    containerd.call(
        "StartContainer",
        &format!(r#"{{"container_id":{}}}"#, json(&container)),
    );
    let log = pod.log_dir.join(LOG_PATH);
    let mut ready = vec!["ready"];
    if scenario.server.contains("daemon ready") {
        ready.push("daemon ready");
    }
    for line in ready {
        wait_for_output(&log, line);
    }
    let termination_grace = Duration::from_secs(scenario.termination_grace);
    // The kubelet runs the preStop exec hook first, then stops with what is left of T in whole seconds,
    // at least 2 (pkg/kubelet/kuberuntime: killContainer, executePreStopHook).
    let hook_took = scenario.pre_stop_hook.map(|seconds| {
        let reply = containerd.call(
            "ExecSync",
            &format!(
                r#"{{"container_id":{},"cmd":["/bin/busybox","sleep","{seconds}"],"timeout":{}}}"#,
                json(&container),
                scenario.termination_grace
            ),
        );
        assert_eq!(reply.get("exit_code"), "0", "the preStop hook failed");
        reply.seconds()
    });
    let stop_timeout = hook_took.map_or(termination_grace, |took| {
        termination_grace
            .saturating_sub(Duration::from_secs(took.as_secs()))
            .max(Duration::from_secs(2))
    });
    let stop = containerd.call(
        "StopContainer",
        &format!(
            r#"{{"container_id":{},"timeout":{}}}"#,
            json(&container),
            stop_timeout.as_secs()
        ),
    );
    let status = containerd.call(
        "ContainerStatus",
        &format!(r#"{{"container_id":{}}}"#, json(&container)),
    );
    assert_eq!(status.get("status.state"), "CONTAINER_EXITED");
    assert_eq!(status.get("status.log_path"), log.to_str().unwrap());
    let sandbox = containerd.call(
        "PodSandboxStatus",
        &format!(r#"{{"pod_sandbox_id":{}}}"#, json(&pod.id)),
    );
    let stopped = Stopped {
        name: scenario.name,
        stop_timeout,
        hook_took,
        took: stop.seconds(),
        exit_code: status.get("status.exit_code").parse().unwrap(),
        reason: status.get("status.reason").to_owned(),
        records: read_cri_log(&log),
        sandbox_state_after: sandbox.get("status.state").to_owned(),
    };
    eprintln!("figures: {}", stopped.summary());
    stopped
}

/// A pod sandbox, stopped and removed when dropped (with its container), whatever happened.
struct Pod<'a> {
    containerd: &'a Containerd,
    id: String,
    /// The sandbox config, JSON, as CreateContainer takes it again.
    config: String,
    log_dir: PathBuf,
}

impl<'a> Pod<'a> {
    fn run(containerd: &'a Containerd, scenario: &Scenario) -> Pod<'a> {
        let (name, uid) = (
            format!("grace-{}", scenario.name),
            format!("uid-{}", scenario.name),
        );
        // The kubelet's layout: /var/log/pods/NAMESPACE_NAME_UID/CONTAINER/RESTARTS.log.
        let log_dir = containerd.dir.join(format!("pods/grace-test_{name}_{uid}"));
        let _ = fs::remove_dir_all(&log_dir);
        fs::create_dir_all(&log_dir).unwrap();
        // Host network (no CNI here), so no hostname: runc cannot set one without a UTS namespace.
        let config = format!(
            r#"{{"metadata":{{"name":{},"uid":{},"namespace":"grace-test","attempt":0}},"log_directory":{},"linux":{{"cgroup_parent":{},"security_context":{{"namespace_options":{}}}}}}}"#,
            json(&name),
            json(&uid),
            json(log_dir.to_str().unwrap()),
            json(&format!("/{}", containerd.cgroup_parent)),
            namespace_options(scenario)
        );
        let reply = containerd.call("RunPodSandbox", &format!(r#"{{"config":{config}}}"#));
        Pod {
            containerd,
            id: reply.get("pod_sandbox_id").to_owned(),
            config,
            log_dir,
        }
    }

    fn create_container(&self, scenario: &Scenario) -> String {
        let script = ["/bin/busybox", "sh", "-c", scenario.server];
        let command: Vec<&str> = match scenario.init {
            Init::Grace => ["/grace"]
                .iter()
                .chain(scenario.grace_options)
                .chain(&["--"])
                .chain(&script)
                .copied()
                .collect(),
            Init::Tini => ["/tini", "--"].iter().chain(&script).copied().collect(),
            Init::None => script.to_vec(),
        };
        // What the kubelet puts in every container's environment (the service links of the API server).
        let mut env = vec![
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ];
        env.extend_from_slice(scenario.env);
        let config = format!(
            r#"{{"metadata":{{"name":"app","attempt":0}},"image":{{"image":{}}},"command":[{}],"envs":[{}],"log_path":{},"linux":{{"security_context":{{"namespace_options":{}}}}}}}"#,
            json(IMAGE),
            command
                .iter()
                .map(|word| json(word))
                .collect::<Vec<_>>()
                .join(","),
            env.iter()
                .map(|(key, value)| format!(r#"{{"key":{},"value":{}}}"#, json(key), json(value)))
                .collect::<Vec<_>>()
                .join(","),
            json(LOG_PATH),
            namespace_options(scenario)
        );
        let reply = self.containerd.call(
            "CreateContainer",
            &format!(
                r#"{{"pod_sandbox_id":{},"config":{config},"sandbox_config":{}}}"#,
                json(&self.id),
                self.config
            ),
        );
        reply.get("container_id").to_owned()
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        self.containerd.remove_pod(&self.id);
    }
}

/// The kubelet's namespace options: the node's network; the pod's PID namespace with
/// `shareProcessNamespace`, else the container's own (each container says it again: its own options, not the
/// sandbox's, decide where it runs).
fn namespace_options(scenario: &Scenario) -> String {
    let pid = if scenario.shared_pid_namespace {
        "POD"
    } else {
        "CONTAINER"
    };
    format!(r#"{{"network":"NODE","pid":"{pid}","ipc":"POD"}}"#)
}

impl Stopped {
    fn summary(&self) -> String {
        let daemon = match self.daemon_sigterm_after_stop() {
            Some(after) => format!("the daemon got SIGTERM {after:.2} s after the stop"),
            None if self.output_has("daemon ready") => "the daemon got no SIGTERM".to_string(),
            None => "no daemon".to_string(),
        };
        let hook = self
            .hook_took
            .map(|took| format!("preStop hook {took:.2?}, "))
            .unwrap_or_default();
        format!(
            "{}: {hook}StopContainer(timeout {}) took {:.2?}; exit {} {}; {daemon}; {} lines of grace",
            self.name,
            self.stop_timeout.as_secs(),
            self.took,
            self.exit_code,
            self.reason,
            self.grace_lines().len()
        )
    }

    /// Exact lower bound, generous upper bound.
    fn assert_took(&self, at_least: Duration, under: Duration) {
        assert!(
            self.took >= at_least && self.took < under,
            "StopContainer took {:?}, not in [{at_least:?}, {under:?})\n{}",
            self.took,
            self.dump()
        );
    }

    fn assert_status(&self, code: i64, reason: &str) {
        assert_eq!(
            (self.exit_code, self.reason.as_str()),
            (code, reason),
            "the CRI's exit code and reason\n{}",
            self.dump()
        );
    }

    /// The daemon got SIGTERM (`Some`: and grace logged sending it, this long or longer after the stop
    /// signal, by grace's own clock), or never did (`None`).
    fn assert_daemon_got_sigterm(&self, at_least: Option<Duration>) {
        match at_least {
            None => assert!(
                !self.output_has("daemon got SIGTERM"),
                "the daemon got SIGTERM\n{}",
                self.dump()
            ),
            Some(at_least) => {
                assert!(
                    self.output_has("daemon got SIGTERM"),
                    "the daemon got no SIGTERM\n{}",
                    self.dump()
                );
                let received = self.grace_time("received SIGTERM");
                let sent = self.grace_time("sending SIGTERM");
                assert!(
                    sent - received >= at_least.as_secs_f64(),
                    "grace sent the rest SIGTERM {:.3} s after the stop signal, before {at_least:?}\n{}",
                    sent - received,
                    self.dump()
                );
            }
        }
    }

    /// grace's report at its deadline: who was still alive and why, then the SIGKILL, named.
    fn assert_report(&self, kill: &str) {
        for wanted in ["1 process still alive", "ignores SIGTERM", kill] {
            assert!(
                self.grace_lines().iter().any(|line| line.contains(wanted)),
                "no line of grace with {wanted:?}\n{}",
                self.dump()
            );
        }
    }

    fn assert_no_report(&self) {
        assert!(
            !self
                .grace_lines()
                .iter()
                .any(|line| line.contains("expired") || line.contains("exiting")),
            "grace reported, so its SIGKILL came first\n{}",
            self.dump()
        );
    }

    fn assert_last_grace_line(&self, fragment: &str) {
        let lines = self.grace_lines();
        assert!(
            lines.last().is_some_and(|line| line.contains(fragment)),
            "grace's last line lacks {fragment:?}\n{}",
            self.dump()
        );
    }

    fn assert_output(&self, line: &str) {
        assert!(self.output_has(line), "no line {line:?}\n{}", self.dump());
    }

    /// The log as `kubectl logs` shows it: partial records joined, one line per full record.
    fn kubectl_logs(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut partial = String::new();
        for record in &self.records {
            partial.push_str(&record.text);
            if record.full {
                lines.push(std::mem::take(&mut partial));
            }
        }
        lines
    }

    /// grace's lines (its log, on stderr), each checked to be one whole record of the CRI log: a reader of
    /// the log files (a log shipper, `kubectl logs`) gets each line as one entry, never cut.
    fn grace_lines(&self) -> Vec<String> {
        let lines: Vec<String> = self
            .records
            .iter()
            .filter(|record| {
                record.text.starts_with("[grace ") || record.text.starts_with("{\"ts\":")
            })
            .map(|record| {
                assert!(
                    record.full,
                    "a line of grace split across records: {record:?}"
                );
                assert_eq!(record.stream, "stderr", "{record:?}");
                record.text.clone()
            })
            .collect();
        assert!(
            lines.iter().all(|line| self.kubectl_logs().contains(line)),
            "kubectl logs would not show grace's lines whole"
        );
        lines
    }

    fn grace_line(&self, fragment: &str) -> String {
        self.grace_lines()
            .into_iter()
            .find(|line| line.contains(fragment))
            .unwrap_or_else(|| panic!("no line of grace with {fragment:?}\n{}", self.dump()))
    }

    /// The time stamp of grace's first line with `fragment`, from grace's own clock, in seconds.
    fn grace_time(&self, fragment: &str) -> f64 {
        let line = self.grace_line(fragment);
        let stamp = line
            .strip_prefix("[grace ")
            .and_then(|rest| rest.split(']').next())
            .or_else(|| {
                line.strip_prefix("{\"ts\":\"")
                    .and_then(|rest| rest.split('"').next())
            })
            .unwrap_or_else(|| panic!("no time stamp in {line:?}"));
        epoch_seconds(stamp).unwrap_or_else(|| panic!("bad time stamp in {line:?}"))
    }

    fn output_has(&self, line: &str) -> bool {
        self.kubectl_logs().iter().any(|seen| seen == line)
    }

    /// Between the runtime's stamps of grace's stop line and of the daemon's `got SIGTERM`: a figure.
    fn daemon_sigterm_after_stop(&self) -> Option<f64> {
        let stamp = |wanted: &dyn Fn(&str) -> bool| {
            self.records
                .iter()
                .find(|record| wanted(&record.text))
                .and_then(|record| epoch_seconds(&record.time))
        };
        let daemon = stamp(&|text| text == "daemon got SIGTERM")?;
        let stop = stamp(&|text| text.contains("received SIGTERM"))?;
        Some(daemon - stop)
    }

    fn dump(&self) -> String {
        format!(
            "{}\ncontainer log:\n{}",
            self.summary(),
            self.kubectl_logs().join("\n")
        )
    }
}

// ---------------------------------------------------------------------------------------------------------
// The CRI log

/// One record of a CRI container log: `TIME STREAM P|F TEXT`.
#[derive(Debug)]
struct Record {
    time: String,
    stream: String,
    /// F: the record ends a line; P: the line goes on in the next record.
    full: bool,
    text: String,
}

fn read_cri_log(path: &Path) -> Vec<Record> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(4, ' ');
            let mut field = || fields.next().unwrap_or_default().to_owned();
            let (time, stream, tag, text) = (field(), field(), field(), field());
            assert!(tag == "F" || tag == "P", "not a CRI log record: {line:?}");
            Record {
                time,
                stream,
                full: tag == "F",
                text,
            }
        })
        .collect()
}

/// Waits until the container has printed `line`. The log is a file that containerd appends to: it is read
/// again every 50 ms until the line is there (synchronised on the line; the timeout only guards hangs).
fn wait_for_output(log: &Path, line: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if fs::read_to_string(log).is_ok_and(|text| {
            text.lines()
                .any(|record| record.ends_with(&format!(" F {line}")))
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line {line:?} in {} within {TIMEOUT:?}: {}",
            log.display(),
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time stamp (`2026-12-06T07:04:34.808106048Z`, or with
/// milliseconds as grace writes them).
fn epoch_seconds(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':');
    let (hours, minutes) = (
        time.next()?.parse::<f64>().ok()?,
        time.next()?.parse::<f64>().ok()?,
    );
    let seconds = time.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days as f64 * 86_400.0 + hours * 3_600.0 + minutes * 60.0 + seconds)
}

#[test]
fn epoch_seconds_reads_both_kinds_of_time_stamp() {
    assert_eq!(epoch_seconds("1970-01-01T00:00:01Z"), Some(1.0));
    assert_eq!(epoch_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
    let runtime = epoch_seconds("2026-12-06T07:04:34.808106048Z").unwrap();
    let grace = epoch_seconds("2026-12-06T07:04:34.808Z").unwrap();
    assert!(
        (runtime - grace - 0.000106048).abs() < 1e-5,
        "{runtime} {grace}"
    );
    assert_eq!(epoch_seconds("yesterday"), None);
}

// ---------------------------------------------------------------------------------------------------------
// The images

struct Images {
    pause: PathBuf,
    test: PathBuf,
}

impl Images {
    /// The pause program compiled static, grace's static build, busybox-static and tini-static, each image
    /// built FROM scratch by podman (the container tests' private configuration and store) and saved as a
    /// docker-archive for `ctr images import`.
    fn build() -> Images {
        let dir = work_dir().join("images");
        let _ = fs::remove_dir_all(&dir);
        let (pause_context, test_context) = (dir.join("pause"), dir.join("test"));
        fs::create_dir_all(&pause_context).unwrap();
        fs::create_dir_all(&test_context).unwrap();
        run_ok(
            Command::new("cc")
                .args(["-static", "-Os", "-s", "-o"])
                .arg(pause_context.join("pause"))
                .arg(fixtures().join("pause.c")),
        );
        let grace = common::build_static("x86_64-unknown-linux-musl");
        for (from, to) in [
            (Path::new("/bin/busybox"), "busybox"),
            (grace.as_path(), "grace"),
            (Path::new("/usr/bin/tini-static"), "tini"),
        ] {
            fs::copy(from, test_context.join(to))
                .unwrap_or_else(|error| panic!("{}: {error} (run tools/setup)", from.display()));
        }
        let images = Images {
            pause: dir.join("pause.tar"),
            test: dir.join("test.tar"),
        };
        for (tag, containerfile, context, archive) in [
            (
                PAUSE_IMAGE,
                "Containerfile.pause",
                &pause_context,
                &images.pause,
            ),
            (IMAGE, "Containerfile", &test_context, &images.test),
        ] {
            run_ok(
                podman()
                    .args(["build", "--quiet", "--tag", tag, "--file"])
                    .arg(fixtures().join(containerfile))
                    .arg(context),
            );
            run_ok(
                podman()
                    .args(["save", "--quiet", "--format", "docker-archive", "--output"])
                    .arg(archive)
                    .arg(tag),
            );
        }
        // The images a previous build was tagged with are now dangling.
        run_ok(podman().args(["image", "prune", "--force"]));
        images
    }
}

/// `podman` with the container tests' private configuration and storage (tests/container/): never the
/// machine's.
fn podman() -> Command {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("podman");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/container");
    fs::create_dir_all(root.join("build-tmp")).unwrap();
    let mut command = Command::new("podman");
    command
        .arg("--tmpdir")
        .arg(root.join("tmp"))
        .env("CONTAINERS_CONF", config.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", config.join("storage.conf"))
        .env("GRACE_PODMAN_ROOT", &root)
        .env("TMPDIR", root.join("build-tmp"))
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion and returns its stdout; panics with its stderr if it failed.
fn run_ok(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------------------
// containerd, its CRI client, and the cleanup

/// The test's containerd: started with tests/cri/containerd.toml in a directory of its own. Dropped, it
/// removes every pod (and so every container and shim), stops, and leaves no process, mount or cgroup.
struct Containerd {
    dir: PathBuf,
    process: Child,
    /// Under every cgroup hierarchy's root: the pods' cgroups go below it.
    cgroup_parent: String,
    keep_logs: AtomicBool,
}

impl Containerd {
    fn start(dir: &Path, images: &Images) -> Containerd {
        let cgroup_parent = cgroup_parent_for(dir);
        // What a run killed before it could clean up left behind (its pods, shims, mounts, cgroups).
        sweep(dir, &cgroup_parent);
        let _ = fs::remove_dir_all(dir.join("root"));
        let _ = fs::remove_dir_all(dir.join("state"));
        let _ = fs::remove_dir_all(dir.join("pods"));
        fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock.ttrpc");
        assert!(
            socket.as_os_str().len() < 100,
            "{}: a unix socket path must stay under 108 bytes; set CARGO_TARGET_DIR to a shorter path",
            socket.display()
        );
        let template = fs::read_to_string(fixtures().join("containerd.toml")).unwrap();
        let config = dir.join("config.toml");
        fs::write(&config, template.replace("@DIR@", dir.to_str().unwrap())).unwrap();
        // setpriv: containerd dies with the test (the thread that started it) rather than outlive a killed
        // run; the next run's sweep then removes what its shims kept running.
        let mut process = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "containerd", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting containerd (apt-get install containerd, or run tools/setup)");
        let log = process.stderr.take().unwrap();
        let mut log_file = fs::File::create(dir.join("containerd.log")).unwrap();
        let (booted, booted_seen) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                if line.contains("containerd successfully booted") {
                    let _ = booted.send(());
                }
            }
        });
        let containerd = Containerd {
            dir: dir.to_path_buf(),
            process,
            cgroup_parent,
            keep_logs: AtomicBool::new(false),
        };
        if booted_seen.recv_timeout(TIMEOUT).is_err() {
            containerd.keep_logs();
            panic!(
                "containerd did not boot within {TIMEOUT:?}: see {}",
                dir.join("containerd.log").display()
            );
        }
        let version = containerd.call("Version", r#"{"version":"v1"}"#);
        eprintln!(
            "figures: {} {} serves the CRI {}",
            version.get("runtime_name"),
            version.get("runtime_version"),
            version.get("runtime_api_version")
        );
        for archive in [&images.pause, &images.test] {
            run_ok(
                Command::new("ctr")
                    .arg("--address")
                    .arg(dir.join("containerd.sock"))
                    .args(["--namespace", "k8s.io", "images", "import"])
                    .arg(archive),
            );
        }
        containerd
    }

    /// One call of the CRI's RuntimeService, through tests/cri/cri.py.
    fn call(&self, method: &str, request: &str) -> Reply {
        let python = common::target_dir().join("cri-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run tools/setup (its tests/cri/setup.sh creates the venv and the CRI stubs)",
            python.display()
        );
        let output = Command::new(python)
            .arg(fixtures().join("cri.py"))
            .arg(self.dir.join("containerd.sock"))
            .args([method, request])
            .stdin(Stdio::null())
            .output()
            .expect("running the CRI client");
        assert!(
            output.status.success(),
            "{method} {request}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let fields = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(path, value)| (path.to_owned(), value.to_owned()))
            .collect();
        Reply {
            method: method.to_owned(),
            fields,
        }
    }

    /// StopPodSandbox then RemovePodSandbox, as the kubelet does: the runtime kills what still runs in the
    /// pod, its shim exits and its mounts go. Errors are left to the final sweep.
    fn remove_pod(&self, id: &str) {
        for method in ["StopPodSandbox", "RemovePodSandbox"] {
            let _ = Command::new(common::target_dir().join("cri-venv/bin/python"))
                .arg(fixtures().join("cri.py"))
                .arg(self.dir.join("containerd.sock"))
                .args([method, &format!(r#"{{"pod_sandbox_id":{}}}"#, json(id))])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .output();
        }
    }

    /// Keep the logs (containerd's, the pods') for a failed run; processes, mounts and cgroups still go.
    fn keep_logs(&self) {
        self.keep_logs.store(true, Ordering::Relaxed);
        eprintln!(
            "logs kept for the failure: {} (containerd.log, pods/)",
            self.dir.display()
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Ok(output) = Command::new(common::target_dir().join("cri-venv/bin/python"))
            .arg(fixtures().join("cri.py"))
            .arg(self.dir.join("containerd.sock"))
            .args(["ListPodSandbox", "{}"])
            .stdin(Stdio::null())
            .output()
        {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if let Some((path, id)) = line.split_once('\t') {
                    if path.starts_with("items.") && path.ends_with(".id") {
                        self.remove_pod(id);
                    }
                }
            }
        }
        // SIGTERM: containerd shuts down in a few milliseconds; SIGKILL if it has not within 10 s.
        let pid = self.process.id() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.process.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        sweep(&self.dir, &self.cgroup_parent);
        // containerd 1.6 makes /run/containerd/s for its shims' sockets whatever its state directory is: the
        // shims have removed theirs; the directories go too if nothing else uses them.
        for made in ["/run/containerd/s", "/run/containerd"] {
            let _ = fs::remove_dir(made);
        }
        if !self.keep_logs.load(Ordering::Relaxed) {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            let _ = fs::remove_dir_all(self.dir.join("root"));
            let _ = fs::remove_dir_all(self.dir.join("state"));
        }
    }
}

/// One answer of the CRI client: `path → value`.
struct Reply {
    method: String,
    fields: HashMap<String, String>,
}

impl Reply {
    fn get(&self, path: &str) -> &str {
        self.fields
            .get(path)
            .unwrap_or_else(|| panic!("{}'s answer has no {path}: {:?}", self.method, self.fields))
    }

    /// How long the call took, timed by the client around the call alone.
    fn seconds(&self) -> Duration {
        Duration::from_secs_f64(self.get("seconds").parse().unwrap())
    }
}

/// A cgroup parent named after the directory: a run finds what an earlier run there left, and two
/// checkouts never share one.
fn cgroup_parent_for(dir: &Path) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike std's hasher.
    let hash = dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("grace-cri-{:08x}", hash as u32)
}

/// Removes whatever a containerd run from `dir` left: every process in the pods' cgroups, the shims and the
/// containerd serving `dir`'s socket, every mount under `dir`, and the cgroups. Nothing else is touched.
fn sweep(dir: &Path, cgroup_parent: &str) {
    let cgroups = cgroups_under(cgroup_parent);
    for cgroup in &cgroups {
        for pid in fs::read_to_string(cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|pid| pid.parse::<i32>().ok())
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let socket = dir.join("containerd.sock");
    let config = dir.join("config.toml");
    for pid in fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
    {
        let arguments: Vec<Vec<u8>> = fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|byte| *byte == 0)
            .map(<[u8]>::to_vec)
            .collect();
        let follows = |flag: &str, value: &Path| {
            arguments
                .windows(2)
                .any(|pair| pair[0] == flag.as_bytes() && pair[1] == value.as_os_str().as_bytes())
        };
        // A shim: `containerd-shim-runc-v2 -namespace k8s.io -id ID -address SOCKET`; containerd itself.
        if follows("-address", &socket) || follows("--config", &config) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // A shim killed leaves its socket, /run/containerd/s/SHA256(ADDRESS/NAMESPACE/ID) (containerd 1.6's
        // shim.SocketAddress).
        let value = |flag: &str| {
            let position = arguments
                .iter()
                .position(|argument| argument == flag.as_bytes())?;
            String::from_utf8(arguments.get(position + 1)?.clone()).ok()
        };
        if let (true, Some(namespace), Some(id)) = (
            follows("-address", &socket),
            value("-namespace"),
            value("-id"),
        ) {
            let key = format!("{}/{namespace}/{id}", socket.display());
            // Never a panic here: this runs in a Drop, perhaps while a failure unwinds.
            let digest = Command::new("sh")
                .args(["-c", "printf %s \"$1\" | sha256sum", "-", &key])
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                .unwrap_or_default();
            if let Some(digest) = digest.split_whitespace().next() {
                let _ = fs::remove_file(Path::new("/run/containerd/s").join(digest));
            }
        }
    }
    let mut mounts: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
    for point in mounts {
        let path = CString::new(point.as_os_str().as_bytes()).unwrap();
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
    // The deepest first; a cgroup whose last process is still exiting refuses for a moment.
    for cgroup in cgroups.iter().rev() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::remove_dir(cgroup).is_err() && cgroup.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The cgroup directories named `parent` under each hierarchy (cgroup v1 has one per controller, v2 one),
/// with everything below them, parents before children.
fn cgroups_under(parent: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found: Vec<PathBuf> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|hierarchy| hierarchy.path().join(parent))
        .chain(std::iter::once(root.join(parent)))
        .filter(|path| path.is_dir())
        .collect();
    let mut next = 0;
    while next < found.len() {
        let children: Vec<PathBuf> = fs::read_dir(&found[next])
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .collect();
        found.extend(children);
        next += 1;
    }
    found
}

/// `text` as a JSON string.
fn json(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            character if (character as u32) < 0x20 => {
                quoted.push_str(&format!("\\u{:04x}", character as u32))
            }
            character => quoted.push(character),
        }
    }
    quoted.push('"');
    quoted
}
