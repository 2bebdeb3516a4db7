//! Container tests: they run the static grace as PID 1 of a podman container built FROM scratch. Tests synchronise on lines the
//! container prints; the timeout only guards against hangs. Needs podman, runc and busybox-static
//! (apt-get install podman runc busybox-static), the x86_64-unknown-linux-musl target, and root.
//! The arm64 image (grace and busybox for aarch64) runs under qemu-user through binfmt_misc, and needs what
//! tools/setup installs: the aarch64-unknown-linux-musl target, qemu-user-static registered with
//! binfmt_misc, and Debian's busybox-static:arm64 unpacked in target/busybox-arm64.
//! Configuration: tests/container/{containers.conf,storage.conf,Containerfile}.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails as hung.
const TIMEOUT: Duration = Duration::from_secs(60);
const IMAGE: &str = "localhost/grace-test:latest";
const ARM64_IMAGE: &str = "localhost/grace-test-arm64:latest";

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/container")
}

/// Private podman state (images, containers, locks, events), reused across runs; see tests/container/podman.
fn podman_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("podman")
}

/// `podman` with the tests' private configuration and storage: never the machine's.
fn podman() -> Command {
    let root = podman_root();
    let mut command = Command::new("podman");
    command
        .arg("--tmpdir")
        .arg(root.join("tmp")) // containers.conf cannot take a $VAR path
        .env("CONTAINERS_CONF", config_dir().join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", config_dir().join("storage.conf"))
        .env("GRACE_PODMAN_ROOT", &root)
        .env("TMPDIR", root.join("build-tmp"))
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion and returns its stdout; panics with its stderr if it failed.
fn run_ok(command: &mut Command) -> String {
    let output = command
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

/// The static grace. CARGO_BIN_EXE_grace is the host (glibc, dynamic) build, which cannot run FROM scratch.
fn static_grace() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::build_static("x86_64-unknown-linux-musl"))
}

/// The static grace for arm64, cross-built (rust-lld, see .cargo/config.toml) the same way.
fn static_grace_arm64() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::build_static("aarch64-unknown-linux-musl"))
}

/// Builds the test image once per test binary (0.3–2 s).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_image(
            IMAGE,
            "linux/amd64",
            Path::new("/bin/busybox"),
            static_grace(),
        )
    });
    IMAGE
}

/// The same image for arm64: Debian's arm64 busybox-static, unpacked by tools/setup, and the aarch64 grace.
/// Building it runs nothing (no RUN step), so only running it needs the emulator.
fn arm64_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let busybox = common::target_dir().join("busybox-arm64/bin/busybox");
        assert!(
            busybox.exists(),
            "{} is missing: run tools/setup (it unpacks busybox-static:arm64)",
            busybox.display()
        );
        build_image(ARM64_IMAGE, "linux/arm64", &busybox, static_grace_arm64())
    });
    ARM64_IMAGE
}

/// `podman build` of tests/container/Containerfile for `platform`, from a context holding `busybox` and
/// `grace`.
fn build_image(tag: &str, platform: &str, busybox: &Path, grace: &Path) {
    let context = podman_root().join(format!(
        "context-{}-{}",
        std::process::id(),
        platform.replace('/', "-")
    ));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::create_dir_all(podman_root().join("build-tmp")).unwrap();
    std::fs::copy(busybox, context.join("busybox")).expect("busybox-static installed");
    std::fs::copy(grace, context.join("grace")).unwrap();
    run_ok(
        podman()
            .args([
                "build",
                "--quiet",
                "--platform",
                platform,
                "--tag",
                tag,
                "--file",
            ])
            .arg(config_dir().join("Containerfile"))
            .arg(&context),
    );
    std::fs::remove_dir_all(&context).unwrap();
    // The image a previous grace build was tagged with is now dangling: drop it (25 ms).
    run_ok(podman().args(["image", "prune", "--force"]));
}

/// A container name no other test, run or leftover uses.
fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "grace-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Each line of `stream`, without its line end (a pty adds \r), as it arrives.
fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line.trim_end_matches('\r').to_owned()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits for the line `wanted`, whole: grace's log quotes the child's command line (`started pid 6:
/// ... echo ready`), and on a tty it shares the stream with the child's output, so a `contains` match can
/// fire before the child has even run its `trap`. Returns every line read until then.
fn expect_line(receiver: &Receiver<String>, wanted: &str) -> Vec<String> {
    wait_for(receiver, wanted, |line| line == wanted)
}

/// Waits for a line of grace's log containing `fragment`.
fn expect_log(receiver: &Receiver<String>, fragment: &str) -> Vec<String> {
    wait_for(receiver, fragment, |line| {
        line.starts_with("[grace ") && line.contains(fragment)
    })
}

fn wait_for(
    receiver: &Receiver<String>,
    wanted: &str,
    matches: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    loop {
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let found = matches(&line);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(error) => panic!("no line {wanted:?} ({error}); read {seen:#?}"),
        }
    }
}

/// The exit status of `child`, from a thread, so that the test can wait with a bound.
fn exit_of(mut child: Child) -> Receiver<ExitStatus> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait().expect("waiting for podman"));
    });
    receiver
}

/// `podman run --rm` attached (no -d): the container's stdout and stderr are the client's, and so is its exit
/// code. Both streams are piped separately (conmon relays them apart: no order across the two).
struct Container {
    name: String,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    exit: Receiver<ExitStatus>,
}

impl Container {
    /// `podman run --rm`: the container is gone once it exits.
    fn run(options: &[&str], command: &[&str]) -> Container {
        let mut all = vec!["--rm"];
        all.extend_from_slice(options);
        Container::run_kept(&all, command)
    }

    /// `podman run` without `--rm`: the container stays (for `podman logs`) until the test drops it.
    fn run_kept(options: &[&str], command: &[&str]) -> Container {
        Container::run_image(image(), options, command)
    }

    /// `podman run --name NAME OPTIONS IMAGE COMMAND`.
    fn run_image(image: &str, options: &[&str], command: &[&str]) -> Container {
        let name = unique_name();
        let mut client = podman()
            .args(["run", "--name", &name])
            .args(options)
            .arg(image)
            .args(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning podman run");
        let stdout = lines(client.stdout.take().unwrap());
        let stderr = lines(client.stderr.take().unwrap());
        Container {
            name,
            stdout,
            stderr,
            exit: exit_of(client),
        }
    }

    /// `podman stop --time SECONDS`: the stop signal to PID 1, SIGKILL after SECONDS; returns when the
    /// container has exited, with how long that took.
    fn stop(&self, seconds: u32) -> Duration {
        let start = Instant::now();
        run_ok(podman().args(["stop", "--time", &seconds.to_string(), &self.name]));
        start.elapsed()
    }

    /// The container's exit code (podman's own failures: 125, or 126/127 when it cannot start the entrypoint).
    fn exit_code(&self) -> Option<i32> {
        self.exit
            .recv_timeout(TIMEOUT)
            .expect("container did not exit")
            .code()
    }
}

impl Drop for Container {
    /// Never leave a container behind; `--time 0`, or `rm --force` waits out the 10 s stop timeout.
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", "--ignore", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Quotes one word for `sh -c`.
fn shell_quote(word: &OsStr) -> String {
    format!("'{}'", word.to_string_lossy().replace('\'', r"'\''"))
}

/// `command` run on a fresh pty by `script`, whose stdin is relayed to the pty: writing \x03 to it is a
/// Ctrl-C typed at the terminal. `--return` makes script exit with the command's status.
fn in_a_pty(command: &Command) -> Command {
    let words: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(shell_quote)
        .collect();
    let mut script = Command::new("script");
    script.args([
        "--quiet",
        "--flush",
        "--return",
        "--command",
        &words.join(" "),
        "/dev/null",
    ]);
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            script.env(key, value);
        }
    }
    script
}

/// A child that says `ready`, then ends on SIGTERM (status 3) or SIGINT (status 4). SIGTERM reaches the
/// shell alone (grace forwards to its child, not the group), so it may idle in a foreground `sleep`.
const POLITE_CHILD: &str = r#"trap 'echo got TERM; exit 3' TERM; trap 'echo got INT; exit 4' INT
echo ready; while :; do sleep 0.1; done"#;

/// The same for Ctrl-C, which the tty sends to the whole foreground process group: a foreground `sleep`
/// dies of SIGINT too, and busybox sh then sometimes dies of SIGINT itself instead of running its trap
/// (2 runs in 40). A background job of a non-interactive shell ignores SIGINT, and the trap interrupts
/// `wait`; the sleep left behind is grace's cleanup. It says whether its process group is the terminal's
/// foreground group (fields 5 and 8 of /proc/PID/stat, pgrp and tpgid): grace would forward a SIGINT it got
/// itself, so "got INT" alone cannot tell that the terminal was handed over.
const CTRL_C_CHILD: &str = "trap 'echo got INT; exit 4' INT; sleep 1000 & \
    set -- $(cat /proc/$$/stat); \
    if [ \"$5\" = \"$8\" ]; then echo ready foreground=yes; else echo ready foreground=no; fi; wait";

#[test]
fn podman_stop_reaches_the_child_and_its_status_is_the_containers() {
    // Not --rm: `podman logs` is read after the exit (the container is removed on drop).
    let container = Container::run_kept(&[], &["/bin/busybox", "sh", "-c", POLITE_CHILD]);
    expect_line(&container.stdout, "ready");
    let took = container.stop(10);
    expect_line(&container.stdout, "got TERM");
    assert_eq!(container.exit_code(), Some(3));
    eprintln!("figures: podman stop -t 10 of a child that handles SIGTERM took {took:?}");
    assert!(took < Duration::from_secs(5), "podman stop took {took:?}");
    expect_log(&container.stderr, "exiting with status 3");
    let logs = run_ok(podman().args(["logs", &container.name]));
    let logs_stderr = String::from_utf8_lossy(
        &podman()
            .args(["logs", &container.name])
            .output()
            .expect("podman logs")
            .stderr,
    )
    .into_owned();
    let all = format!("{logs}{logs_stderr}");
    for wanted in [
        "got TERM",
        "[grace ",
        "received SIGTERM",
        "exiting with status 3",
    ] {
        assert!(all.contains(wanted), "podman logs lacks {wanted:?}:\n{all}");
    }
}

#[test]
fn grace_kills_a_child_that_ignores_sigterm_before_podman_would() {
    let container = Container::run(
        &["--env", "GRACE_PERIOD=2s"],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "trap '' TERM; echo ready; exec sleep 1000",
        ],
    );
    expect_line(&container.stdout, "ready");
    let took = container.stop(10);
    assert_eq!(container.exit_code(), Some(137));
    eprintln!("figures: podman stop -t 10 of a child that ignores SIGTERM, GRACE_PERIOD=2s, took {took:?}");
    assert_ended_by_grace_not_podman(took);
    expect_log(&container.stderr, "grace period of 2s expired");
}

/// A `podman stop -t 10` of a container with GRACE_PERIOD=2s that took `took`: not before grace's period,
/// and before podman's own SIGKILL.
fn assert_ended_by_grace_not_podman(took: Duration) {
    assert!(
        took >= Duration::from_secs(2),
        "killed before the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "podman's SIGKILL, not grace's: {took:?}"
    );
}

/// The same shutdown in an arm64 container, which runs under qemu-user here: grace (emulated, as PID 1)
/// sends its SIGKILL and logs it at the end of its 2 s grace period, long before podman's 10 s.
#[test]
fn in_an_arm64_container_grace_kills_a_child_that_ignores_sigterm_before_podman_would() {
    let image = arm64_image();
    let architecture =
        run_ok(podman().args(["image", "inspect", "--format", "{{.Architecture}}", image]));
    assert_eq!(architecture.trim(), "arm64", "{image}");
    let started = Instant::now();
    let container = Container::run_image(
        image,
        &[
            "--rm",
            "--platform",
            "linux/arm64",
            "--env",
            "GRACE_PERIOD=2s",
        ],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "trap '' TERM; echo machine $(uname -m); echo ready; exec sleep 1000",
        ],
    );
    // uname answers what the emulator says: the container's processes are aarch64 ones.
    expect_line(&container.stdout, "machine aarch64");
    expect_line(&container.stdout, "ready");
    let ready = started.elapsed();
    let stop = Instant::now();
    let took = container.stop(10);
    // grace's log line, and the kill, before `podman stop` returns: at the end of grace's period.
    let kill = expect_log(&container.stderr, "grace period of 2s expired: SIGKILL");
    let logged = stop.elapsed();
    assert_eq!(container.exit_code(), Some(137));
    eprintln!(
        "figures: arm64 container under qemu-user: ready {ready:?} after podman run; podman stop -t 10 of a \
         child that ignores SIGTERM, GRACE_PERIOD=2s, took {took:?} (grace's SIGKILL line read {logged:?} after \
         the stop)"
    );
    assert_ended_by_grace_not_podman(took);
    // The one process left, the main child, killed by grace. (Under qemu-user the kernel names it after the
    // file it executed, busybox, and /proc shows qemu's handlers: grace's diagnosis line reads differently.)
    assert!(
        kill.last()
            .is_some_and(|line| line.contains("SIGKILL to 1 process: ")),
        "{kill:#?}"
    );
}

#[test]
fn an_orphaned_daemon_gets_sigterm_then_sigkill_after_the_main_child() {
    let daemon = "setsid sh -c \"trap '' TERM; exec sleep 1000\" &";
    let child = format!(
        "{daemon} trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    );
    let container = Container::run(
        &["--env", "GRACE_CLEANUP_TIMEOUT=1s"],
        &["/bin/busybox", "sh", "-c", &child],
    );
    expect_line(&container.stdout, "ready");
    let took = container.stop(10);
    assert_eq!(container.exit_code(), Some(0));
    eprintln!("figures: podman stop with a setsid daemon that ignores SIGTERM took {took:?}");
    // The daemon is named when it gets its SIGTERM, and again when it is SIGKILLed a second later.
    let term = expect_log(&container.stderr, "sending SIGTERM");
    assert!(
        term.last().is_some_and(|line| line.contains("(sleep)")),
        "{term:#?}"
    );
    let kill = expect_log(&container.stderr, "cleanup timeout of 1s expired: SIGKILL");
    assert!(
        kill.last().is_some_and(|line| line.contains("(sleep)")),
        "{kill:#?}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "SIGKILL before the cleanup timeout: {took:?}"
    );
}

#[test]
fn podman_init_path_runs_grace_with_a_leading_dash_dash() {
    let init_path = static_grace().to_str().unwrap();
    let container = Container::run(
        &[
            "--init",
            "--init-path",
            init_path,
            "--entrypoint",
            "/bin/busybox",
        ],
        &["sh", "-c", "xargs -0 < /proc/1/cmdline; exit 7"], // PID 1's argv, space-separated
    );
    expect_line(
        &container.stdout,
        "/run/podman-init -- /bin/busybox sh -c xargs -0 < /proc/1/cmdline; exit 7",
    );
    assert_eq!(container.exit_code(), Some(7));
}

#[test]
fn ctrl_c_on_a_tty_reaches_the_child() {
    let mut run = podman();
    run.args([
        "run",
        "--rm",
        "--interactive",
        "--tty",
        "--name",
        &unique_name(),
        image(),
    ])
    .args(["/bin/busybox", "sh", "-c", CTRL_C_CHILD]);
    let mut script = in_a_pty(&run)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning script (util-linux)");
    let mut keyboard = script.stdin.take().unwrap(); // kept open: EOF would type Ctrl-D
    let screen = lines(script.stdout.take().unwrap()); // one stream: the pty merges stdout and stderr
    let exit = exit_of(script);
    let seen = wait_for(&screen, "ready foreground=…", |line| {
        line.starts_with("ready foreground=")
    });
    let ready = seen.last().expect("the ready line");
    assert_eq!(
        ready, "ready foreground=yes",
        "the child does not have the terminal's foreground"
    );
    keyboard.write_all(b"\x03").unwrap();
    // The tty echoes the keystroke as "^C" (no newline) between whatever lines are being written.
    wait_for(&screen, "got INT", |line| {
        line.replace("^C", "") == "got INT"
    });
    assert_eq!(exit.recv_timeout(TIMEOUT).unwrap().code(), Some(4));
}

/// The budget for the static binary: 700 KiB, every feature included.
const SIZE_BUDGET: u64 = 700 * 1024;

#[test]
fn the_static_binary_is_static_small_and_runs_with_no_environment() {
    let binary = std::fs::read(static_grace()).expect("reading the static grace");
    eprintln!("figures: static grace is {} bytes", binary.len());
    assert!(
        binary.len() as u64 <= SIZE_BUDGET,
        "{} bytes, over the {SIZE_BUDGET}-byte budget",
        binary.len()
    );
    // An ELF program header of type PT_INTERP (3) names a dynamic loader: there must be none.
    let field = |offset: usize, width: usize| -> u64 {
        binary[offset..offset + width]
            .iter()
            .rev()
            .fold(0, |value, &byte| value << 8 | u64::from(byte))
    };
    let (table, entry_size, entries) = (
        field(0x20, 8) as usize,
        field(0x36, 2) as usize,
        field(0x38, 2) as usize,
    );
    let interpreters = (0..entries)
        .filter(|index| field(table + index * entry_size, 4) == 3)
        .count();
    assert_eq!(interpreters, 0, "the binary asks for a dynamic loader");
    let output = Command::new(static_grace())
        .env_clear()
        .args(["--", "/bin/busybox", "true"])
        .output()
        .expect("running grace");
    assert!(output.status.success(), "{output:?}");
}
