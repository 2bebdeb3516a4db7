//! Container tests: they run the static grace as PID 1 of a podman container built FROM scratch. Tests synchronise on lines the
//! container prints; the timeout only guards against hangs. Needs podman, runc and busybox-static
//! (apt-get install podman runc busybox-static), the x86_64-unknown-linux-musl target, and root.
//! The arm64 image (grace and busybox for aarch64) runs under qemu-user through binfmt_misc, and needs what
//! tools/setup installs: the aarch64-unknown-linux-musl target, qemu-user-static registered with
//! binfmt_misc, and Debian's busybox-static:arm64 unpacked in target/busybox-arm64.
//! Configuration: tests/container/{containers.conf,storage.conf,Containerfile}.
//! The example image with several services (docker/Dockerfile.services: a migration, memcached, gunicorn,
//! nginx) runs on the same image with the host's programs mounted read-only: Debian's nginx, memcached and
//! python3, the e2e venv's gunicorn (tests/e2e/setup.sh installs them, and curl), and nsenter (util-linux) to
//! send its requests from the container's network namespace.

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

/// The budget for the static binary: 768 KiB, every feature included (several services among them), as
/// tools/check-static holds the three release builds to.
const SIZE_BUDGET: u64 = 768 * 1024;

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

// ---- several services: the example image of docker/Dockerfile.services ----------------------------------

/// The example image with several services; the tests below run its instructions.
const EXAMPLE_DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/Dockerfile.services");

/// The shell script that starts the same services without an init: the baseline.
const WITHOUT_INIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/container/services-without-init.sh"
);

/// What a container of the example image needs from docker/Dockerfile.services. The image cannot be built
/// here (its base is in a registry), so the tests run its instructions on the test image (FROM scratch,
/// grace): its COPY lines become read-only mounts of the same files, its VOLUME a tmpfs, and the host's
/// Debian programs, mounted read-only, stand in for its base image and its `apt-get`/`pip install`.
struct Example {
    /// `COPY SRC DEST` (not `--from`): SRC, under docker/, and DEST.
    copies: Vec<(PathBuf, String)>,
    volumes: Vec<String>,
    /// `ENV K=V …`, each `K=V`.
    env: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn example() -> Example {
    let text =
        std::fs::read_to_string(EXAMPLE_DOCKERFILE).expect("reading the example's Dockerfile");
    let docker = Path::new(EXAMPLE_DOCKERFILE).parent().unwrap();
    let mut example = Example {
        copies: Vec::new(),
        volumes: Vec::new(),
        env: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
    };
    for line in text.lines() {
        let Some((instruction, rest)) = line.split_once(' ') else {
            continue;
        };
        match instruction {
            "COPY" if !rest.starts_with("--") => {
                let (source, destination) = rest.split_once(' ').expect("COPY SRC DEST");
                example.copies.push((
                    docker.join(source.trim_end_matches('/')),
                    destination.trim_end_matches('/').to_string(),
                ));
            }
            "VOLUME" => example.volumes.push(rest.to_string()),
            "ENV" => example
                .env
                .extend(rest.split_whitespace().map(str::to_string)),
            "ENTRYPOINT" => example.entrypoint = exec_form(rest),
            "CMD" => example.cmd = exec_form(rest),
            _ => {}
        }
    }
    assert!(
        !example.copies.is_empty() && !example.entrypoint.is_empty() && !example.cmd.is_empty(),
        "{EXAMPLE_DOCKERFILE}: no COPY, ENTRYPOINT or CMD found"
    );
    example
}

/// A Dockerfile's exec form, a JSON array of strings, read as the TOML array it also is.
fn exec_form(json: &str) -> Vec<String> {
    let table: toml::Table = format!("words = {json}")
        .parse()
        .unwrap_or_else(|error| panic!("not an exec form: {json}: {error}"));
    table["words"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|word| word.as_str().expect("a string").to_string())
        .collect()
}

/// `["a", "b"]`, as podman's `--entrypoint` takes an exec form.
fn json_array(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|word| format!("{word:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The venv of the e2e tests (tests/e2e/setup.sh): gunicorn, for the example's CMD.
fn e2e_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-venv");
    assert!(
        venv.join("bin/gunicorn").is_file(),
        "{} has no gunicorn: run tools/setup (tests/e2e/setup.sh creates it)",
        venv.display()
    );
    venv
}

/// `podman run` options that give the test image what the example image has, from the host, read-only:
/// /usr (nginx, memcached, python3 and their libraries) with /lib and /lib64, the users nginx's and
/// memcached's processes switch to (/etc/passwd, /etc/group), and the e2e venv at its own path (its scripts'
/// `#!` lines name it) with the interpreter it was made from, first in PATH as the image's `pip install`
/// is. The root is read-only (`--read-only`: podman mounts a tmpfs on /tmp and /run).
fn host_programs(example: &Example) -> Vec<String> {
    let venv = e2e_venv();
    let mut options: Vec<String> = vec!["--read-only".into()];
    let mut mount = |source: &Path, destination: &str| {
        options.push("--volume".into());
        options.push(format!("{}:{destination}:ro", source.display()));
    };
    for system in ["/usr", "/lib", "/lib64", "/etc/passwd", "/etc/group"] {
        mount(Path::new(system), system);
    }
    mount(&venv, &venv.display().to_string());
    // The venv's python3 links to the interpreter it was made with (`home` in pyvenv.cfg): outside /usr
    // (pyenv, a /opt Python), its installation is needed too.
    let config = std::fs::read_to_string(venv.join("pyvenv.cfg")).expect("reading pyvenv.cfg");
    let home = config
        .lines()
        .find_map(|line| line.strip_prefix("home = "))
        .expect("pyvenv.cfg names its home");
    let installation = Path::new(home).parent().expect("home is a bin directory");
    if !installation.starts_with("/usr") {
        mount(installation, &installation.display().to_string());
    }
    for (source, destination) in &example.copies {
        mount(source, destination);
    }
    for volume in &example.volumes {
        options.push("--tmpfs".into());
        options.push(volume.clone());
    }
    options.push("--env".into());
    options.push(format!(
        "PATH={}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        venv.display()
    ));
    for variable in &example.env {
        options.push("--env".into());
        options.push(variable.clone());
    }
    options
}

/// Waits until a line containing each of `fragments` has been read, in any order; returns every line read.
fn wait_all(receiver: &Receiver<String>, fragments: &[&str]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for fragment in fragments {
        if !seen.iter().any(|line| line.contains(fragment)) {
            seen.extend(wait_for(receiver, fragment, |line| line.contains(fragment)));
        }
    }
    seen
}

/// Every line still to come from `receiver`, until its stream is closed.
fn rest_of(receiver: &Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut lines = Vec::new();
    loop {
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(error) => panic!("the stream did not end ({error}); read {lines:#?}"),
        }
    }
}

/// A child process killed if the test drops it while it still runs (a failing test).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What curl got.
#[derive(Debug)]
struct CurlResult {
    /// 0 when no response came.
    status: u16,
    body: String,
    /// curl's exit code (0: the whole response arrived).
    exit: Option<i32>,
    /// When curl printed its result.
    at: Instant,
}

/// `GET http://127.0.0.1:8080{path}` from inside the container's network namespace (podman runs it with
/// loopback only), by curl on the host: nsenter enters the network namespace alone, so curl is no process
/// of the container and grace never sees it.
fn curl_in(container_pid: &str, path: &str) -> (KillOnDrop, Receiver<String>) {
    let mut child = Command::new("nsenter")
        .args(["--target", container_pid, "--net", "--"])
        .args([
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "60",
            "--write-out",
            "\ncurl: status=%{http_code}\n",
        ])
        .arg(format!("http://127.0.0.1:8080{path}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning nsenter curl (util-linux, curl)");
    let output = lines(child.stdout.take().unwrap());
    (KillOnDrop(child), output)
}

/// Reads curl's output to its result line, then its exit code.
fn curl_result(mut curl: KillOnDrop, output: &Receiver<String>) -> CurlResult {
    let read = wait_for(output, "curl: status=", |line| {
        line.starts_with("curl: status=")
    });
    let at = Instant::now();
    let (result, body) = read.split_last().unwrap();
    let status = result["curl: status=".len()..].parse().unwrap_or(0);
    let exit = curl.0.wait().expect("waiting for curl").code();
    CurlResult {
        status,
        body: body.join("\n").trim().to_string(),
        exit,
        at,
    }
}

/// One stop of the example's services with a slow request in flight through nginx.
struct StoppedExample {
    response: CurlResult,
    /// The container's stderr, in order: grace's log and the services' (one stream, so the order is real).
    stderr: Vec<String>,
    /// The container's stdout: nginx's access log.
    stdout: Vec<String>,
    /// When `podman stop` was started, and how long it took to return (the container had exited).
    stop_sent: Instant,
    took: Duration,
    /// `podman run`'s exit code, and `podman inspect`'s `.State.ExitCode`.
    exit_code: Option<i32>,
    inspected: String,
}

impl StoppedExample {
    /// All of stderr and stdout, for a failure message.
    fn dump(&self) -> String {
        format!(
            "curl: {:?}\n--- stderr:\n{}\n--- stdout:\n{}",
            self.response,
            self.stderr.join("\n"),
            self.stdout.join("\n")
        )
    }

    /// The index of the first line of stderr containing `fragment`.
    fn index(&self, fragment: &str) -> usize {
        self.stderr
            .iter()
            .position(|line| line.contains(fragment))
            .unwrap_or_else(|| panic!("no line contains {fragment:?}\n{}", self.dump()))
    }

    /// That line.
    fn line(&self, fragment: &str) -> &str {
        &self.stderr[self.index(fragment)]
    }

    /// Fails unless the lines containing `fragments` came in this order.
    fn assert_order(&self, fragments: &[&str]) {
        let indexes: Vec<usize> = fragments
            .iter()
            .map(|fragment| self.index(fragment))
            .collect();
        for (pair, names) in indexes.windows(2).zip(fragments.windows(2)) {
            assert!(
                pair[0] < pair[1],
                "{:?} came before {:?}\n{}",
                names[1],
                names[0],
                self.dump()
            );
        }
    }

    /// Seconds from grace's stop line to the log line containing `fragment`, by grace's timestamps.
    fn after_stop(&self, fragment: &str) -> f64 {
        let time = |line: &str| log_time(line).unwrap_or_else(|| panic!("no timestamp: {line}"));
        let seconds =
            time(self.line(fragment)) - time(self.line("stopping the services in reverse order"));
        seconds.rem_euclid(86_400.0) // across midnight
    }
}

/// The time of day, in seconds, of a grace log line (`[grace 2026-01-02T03:04:05.678Z] …`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.strip_prefix("[grace ")?.split(']').next()?;
    let (_, time) = stamp.split_once('T')?;
    let mut parts = time.trim_end_matches('Z').split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Runs the example's services with `entrypoint` (and the image's CMD), waits until gunicorn and nginx
/// listen, sends `GET /slow?s=SECONDS` through nginx, and once the app has started on it, `podman stop
/// STOP_OPTIONS`. Returns when the container has exited and its streams have ended.
fn stop_example_during_request(
    entrypoint: &[String],
    extra_options: &[&str],
    stop_options: &[&str],
    seconds: u32,
) -> StoppedExample {
    let example = example();
    let mut options = host_programs(&example);
    options.extend(extra_options.iter().map(|option| option.to_string()));
    options.push("--entrypoint".into());
    options.push(json_array(entrypoint));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let command: Vec<&str> = example.cmd.iter().map(String::as_str).collect();
    let container = Container::run_kept(&options, &command);

    let mut stderr = wait_all(
        &container.stderr,
        &[
            "Listening at: http://127.0.0.1:8000",
            "start worker processes",
        ],
    );
    let pid = run_ok(podman().args(["inspect", "--format", "{{.State.Pid}}", &container.name]));
    let (curl, output) = curl_in(pid.trim(), &format!("/slow?s={seconds}"));
    stderr.extend(wait_for(
        &container.stderr,
        "slow request started",
        |line| line.contains("app: slow request started"),
    ));
    let stop_sent = Instant::now();
    let stop = podman()
        .arg("stop")
        .args(stop_options)
        .arg(&container.name)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawning podman stop");
    let stopped = ended_at(stop);
    let response = curl_result(curl, &output);
    let (status, stop_returned) = stopped.recv_timeout(TIMEOUT).expect("podman stop hung");
    assert!(status.success(), "podman stop: {status}");
    let took = stop_returned.duration_since(stop_sent);
    let exit_code = container.exit_code();
    stderr.extend(rest_of(&container.stderr));
    let stdout = rest_of(&container.stdout);
    let inspected = run_ok(podman().args([
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.name,
    ]));
    StoppedExample {
        response,
        stderr,
        stdout,
        stop_sent,
        took,
        exit_code,
        inspected: inspected.trim().to_string(),
    }
}

/// The exit status of `child` and when it came, from a thread.
fn ended_at(mut child: Child) -> Receiver<(ExitStatus, Instant)> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let status = child.wait().expect("waiting for a child");
        let _ = sender.send((status, Instant::now()));
    });
    receiver
}

/// How long the slow request takes under `podman stop`'s 10 s: started just before the stop, it is in flight
/// for most of the drain. The margins are wide for a loaded machine: 3 s for the stop signal to arrive while
/// it runs, and about 3 s more for gunicorn's own exit (0.25 s here idle, 2.7 s once under load) before grace
/// period − cleanup timeout (6 s), when the cache would get its signal without waiting for its turn.
const SLOW_REQUEST: u32 = 3;

/// The example's services under grace (`--services`, docker/services/services.toml), stopped by `podman stop
/// STOP_OPTIONS` with a request of `seconds` in flight through nginx: everything grace promises for several
/// services, with real programs.
fn example_stops_in_order(
    extra_options: &[&str],
    stop_options: &[&str],
    grace_period: &str,
    seconds: u32,
) -> StoppedExample {
    let example = example();
    let run =
        stop_example_during_request(&example.entrypoint, extra_options, stop_options, seconds);
    let output = run.dump();
    let calls = seconds * 10;

    // Start: the migration completed before the cache started; the app started once the cache accepted,
    // nginx once gunicorn did.
    run.assert_order(&[
        &format!("(grace period {grace_period}, as PID 1)"),
        "migrate: completed",
        "cache: started pid",
        "cache: ready (tcp:127.0.0.1:11211)",
        "app: started pid",
        "app: ready (tcp:127.0.0.1:8000)",
        "nginx: started pid",
        "all 4 services started",
    ]);
    // The request in flight completed, 200 with the whole body, after the stop: every one of the app's
    // calls to the cache was answered, the last ones during the stop.
    assert_eq!(run.response.status, 200, "{output}");
    assert_eq!(run.response.exit, Some(0), "{output}");
    assert_eq!(
        run.response.body,
        format!("slept {seconds} s: {calls} of {calls} cache calls answered"),
        "{output}"
    );
    assert!(
        run.response.at > run.stop_sent,
        "answered before the stop\n{output}"
    );
    assert!(
        !run.stderr
            .iter()
            .any(|line| line.contains("slow request failed")),
        "{output}"
    );
    // nginx got SIGQUIT first (declared last), finished the request (its access log says 200), and exited;
    // only then did the app get SIGTERM, and the cache only once the app had exited.
    let nginx_pid = common::pid_in(run.line("nginx: started pid "));
    let nginx_exit = format!("nginx: pid {nginx_pid} exited with status 0");
    let done = format!("app: slow request done: {calls} of {calls} cache calls answered");
    // (grace logs a turn once it has sent the signal: the program's own line may come first.)
    run.assert_order(&[
        "stopping the services in reverse order",
        "stop order: nginx, app, cache",
        &format!("nginx: its turn to stop: SIGQUIT to pid {nginx_pid}"),
    ]);
    run.assert_order(&[
        "stop order: nginx, app, cache",
        "signal 3 (SIGQUIT) received from 1, shutting down",
        &done,
        &nginx_exit,
        "Handling signal: term",
        "Shutting down: Master",
        "app: pid ",
        "cache: its turn to stop: SIGTERM to pid",
        "cache: pid ",
        "exiting with status",
    ]);
    run.assert_order(&[
        &nginx_exit,
        "app: its turn to stop: SIGTERM to pid",
        "app: pid ",
    ]);
    let access = format!("\"GET /slow?s={seconds} HTTP/1.1\" 200 ");
    assert!(
        run.stdout.iter().any(|line| line.contains(&access)),
        "no {access:?} in nginx's access log\n{output}"
    );
    // Nothing was left for grace to kill: each service ended on its own signal, inside the grace period.
    for unwanted in [
        "SIGKILL to ",
        "of the grace period left",
        "stop-timeout of ",
    ] {
        assert!(
            !run.stderr
                .iter()
                .any(|line| line.starts_with("[grace ") && line.contains(unwanted)),
            "{unwanted:?} in grace's log\n{output}"
        );
    }
    // The container's status is the main service's (gunicorn's), as podman reports it both ways.
    let app_exit = run.line("app: pid ");
    let status = app_exit
        .split_once(" exited with status ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_else(|| panic!("not an exit: {app_exit}"));
    assert!(
        run.line("exiting with status").contains(&format!(
            "exiting with status {status} (the main service's status"
        )),
        "{output}"
    );
    assert_eq!(
        run.exit_code.map(|code| code.to_string()),
        Some(status.to_string()),
        "{output}"
    );
    assert_eq!(run.inspected, status, "{output}");
    run
}

/// The figures of a stop, by grace's clock, from its stop line.
fn stop_figures(run: &StoppedExample) -> String {
    format!(
        "podman stop took {:.3}s; request {} after {:.3}s from the stop ({}); nginx exited +{:.3}s, app's turn \
         +{:.3}s, app exited +{:.3}s, cache's turn +{:.3}s, cache exited +{:.3}s, grace exited +{:.3}s with \
         status {}",
        run.took.as_secs_f64(),
        run.response.status,
        run.response.at.duration_since(run.stop_sent).as_secs_f64(),
        run.response.body,
        run.after_stop("nginx: pid "),
        run.after_stop("app: its turn to stop"),
        run.after_stop("app: pid "),
        run.after_stop("cache: its turn to stop"),
        run.after_stop("cache: pid "),
        run.after_stop("exiting with status"),
        run.inspected,
    )
}

/// `podman stop` with its default 10 s, the image's GRACE_PERIOD of 8 s.
#[test]
fn the_example_services_stop_in_order_under_podman_stop() {
    let run = example_stops_in_order(&[], &[], "8s", SLOW_REQUEST);
    eprintln!(
        "figures: example services, podman stop (10 s), grace period 8s: {}",
        stop_figures(&run)
    );
    assert!(
        run.took < Duration::from_secs(10),
        "podman's SIGKILL, not grace's exit: {:?}\n{}",
        run.took,
        run.dump()
    );
}

/// `podman stop --time 7`: the grace period set under it (GRACE_PERIOD=6s), and the cleanup timeout to 1 s,
/// with a 2 s request: the drain fits before grace period − cleanup timeout (5 s), when every service still
/// waiting for its turn would get its stop signal (the cache too, under the app's last calls).
#[test]
fn the_example_services_stop_in_order_under_podman_stop_time() {
    let run = example_stops_in_order(
        &[
            "--env",
            "GRACE_PERIOD=6s",
            "--env",
            "GRACE_CLEANUP_TIMEOUT=1s",
        ],
        &["--time", "7"],
        "6s",
        2,
    );
    eprintln!(
        "figures: example services, podman stop --time 7, grace period 6s: {}",
        stop_figures(&run)
    );
    assert!(
        run.took < Duration::from_secs(7),
        "podman's SIGKILL, not grace's exit: {:?}\n{}",
        run.took,
        run.dump()
    );
}

/// The baseline: the same services started by a shell script as PID 1 (tests/container/services-without-init.sh),
/// which stops each with its own graceful signal, but all at once: the cache dies under the app, and the
/// request in flight fails.
#[test]
fn without_an_init_the_cache_dies_under_the_request_in_flight() {
    let script = [
        "/usr/bin/sh".to_string(),
        "/services-without-init.sh".to_string(),
    ];
    let mount = format!("{WITHOUT_INIT}:/services-without-init.sh:ro");
    let run = stop_example_during_request(&script, &["--volume", &mount], &[], SLOW_REQUEST);
    let output = run.dump();
    assert_eq!(run.response.status, 503, "{output}");
    assert!(
        run.response.body.starts_with("cache unavailable after "),
        "{output}"
    );
    run.assert_order(&[
        "script: stopping every service",
        "signal 3 (SIGQUIT) received from 1, shutting down",
        "app: slow request failed",
        "script: exiting",
    ]);
    eprintln!(
        "figures: example services under a shell script, podman stop (10 s): took {:.3}s; request {} after \
         {:.3}s from the stop ({}); status {}",
        run.took.as_secs_f64(),
        run.response.status,
        run.response.at.duration_since(run.stop_sent).as_secs_f64(),
        run.response.body,
        run.inspected
    );
}
