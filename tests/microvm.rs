//! grace as the first process of a machine: /init of an initramfs, booted in a virtual machine (Debian's
//! kernel under qemu-system-x86_64; tools/setup fetches both). There, and only there, kernel threads share
//! grace's PID namespace: /proc lists them (once the command mounts it), and kill(-1, 0) always finds
//! them. grace must never list, signal or count them, and must exit with its child's status — which the
//! kernel then reports as it panics ("Attempted to kill init! exitcode=0x00000700" for status 7).
//!
//! The machine runs under TCG (software emulation), which boots the same everywhere: under this host's
//! nested KVM the kernel stalls right after decompression. A boot takes about 8 s.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Debian kernel tools/setup unpacked.
fn kernel() -> PathBuf {
    let kernel = common::target_dir().join("microvm/vmlinuz");
    assert!(
        kernel.exists(),
        "{} is missing: run tools/setup (it unpacks Debian's linux-image)",
        kernel.display()
    );
    kernel
}

/// One file of the initramfs.
enum Entry<'a> {
    Directory(&'a str),
    File(&'a str, Vec<u8>, u32),
    /// A character device: path, major, minor.
    Device(&'a str, u32, u32),
}

/// An initramfs: a cpio archive in the "newc" format the kernel unpacks (Documentation/
/// driver-api/early-userspace/buffer-format.rst): per entry a 110-byte ASCII header, the name, the data,
/// each padded to 4 bytes; a TRAILER!!! entry ends it.
fn cpio(entries: &[Entry]) -> Vec<u8> {
    let mut archive = Vec::new();
    let mut push = |name: &str, mode: u32, data: &[u8], device: (u32, u32), inode: u32| {
        let header = format!(
            "070701{inode:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0, // uid
            0, // gid
            1, // links
            0, // mtime
            data.len(),
            0, // device of the file system: major, minor
            0,
            device.0,
            device.1,
            name.len() + 1,
            0, // checksum (newc has none)
        );
        archive.extend_from_slice(header.as_bytes());
        archive.extend_from_slice(name.as_bytes());
        archive.push(0);
        while archive.len() % 4 != 0 {
            archive.push(0);
        }
        archive.extend_from_slice(data);
        while archive.len() % 4 != 0 {
            archive.push(0);
        }
    };
    for (index, entry) in entries.iter().enumerate() {
        let inode = index as u32 + 1;
        match entry {
            Entry::Directory(path) => push(path, 0o040_755, &[], (0, 0), inode),
            Entry::File(path, data, permissions) => {
                push(path, 0o100_000 | permissions, data, (0, 0), inode)
            }
            Entry::Device(path, major, minor) => {
                push(path, 0o020_600, &[], (*major, *minor), inode)
            }
        }
    }
    push("TRAILER!!!", 0, &[], (0, 0), 0);
    archive
}

/// What the machine's console showed, and the status grace exited with.
struct Boot {
    console: String,
    status: Option<u32>,
}

impl Boot {
    /// grace's own log lines.
    fn log(&self) -> Vec<&str> {
        self.console
            .lines()
            .filter_map(|line| line.find("[grace ").map(|start| &line[start..]))
            .collect()
    }

    fn line(&self, needle: &str) -> &str {
        self.log()
            .into_iter()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no log line contains {needle:?}\n{}", self.console))
    }

    /// A log line's timestamp, in milliseconds of the day (the machine's clock).
    fn millis(line: &str) -> u64 {
        let time = line
            .split('T')
            .nth(1)
            .and_then(|rest| rest.split('Z').next())
            .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
        let parts: Vec<f64> = time
            .split(':')
            .map(|part| part.parse().expect("a number"))
            .collect();
        ((parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]) * 1000.0).round() as u64
    }
}

/// Boots a machine whose /init execs grace with `arguments` and `script` (run by busybox sh) as its
/// command, and returns once the kernel has panicked at grace's exit.
fn boot(grace_arguments: &str, script: &str) -> Boot {
    static GRACE: OnceLock<PathBuf> = OnceLock::new();
    let grace = GRACE.get_or_init(|| common::build_static("x86_64-unknown-linux-musl"));
    let init = format!(
        "#!/bin/busybox sh\nexec /grace {grace_arguments} -- /bin/busybox sh -c '{script}'\n"
    );
    let entries = [
        Entry::Directory("bin"),
        Entry::Directory("dev"),
        Entry::Directory("proc"),
        Entry::Directory("sys"),
        Entry::Device("dev/console", 5, 1),
        Entry::Device("dev/null", 1, 3),
        Entry::File("init", init.into_bytes(), 0o755),
        Entry::File(
            "grace",
            std::fs::read(grace).expect("the static grace"),
            0o755,
        ),
        Entry::File(
            "bin/busybox",
            std::fs::read("/bin/busybox").expect("busybox-static"),
            0o755,
        ),
    ];
    let directory = common::target_dir().join("microvm");
    std::fs::create_dir_all(&directory).expect("target/microvm");
    static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let boot = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let initramfs = directory.join(format!("initramfs-{}-{boot}.cpio", std::process::id()));
    std::fs::write(&initramfs, cpio(&entries)).expect("writing the initramfs");
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine",
        "accel=tcg",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(kernel())
    .arg("-initrd")
    .arg(&initramfs)
    .args(["-append", "console=ttyS0 panic=-1 quiet rdinit=/init"])
    .stdin(Stdio::null());
    let output = common::output_within(&mut qemu);
    let _ = std::fs::remove_file(&initramfs);
    let mut console = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut stderr = String::new();
    let _ = output.stderr.as_slice().read_to_string(&mut stderr);
    console.push_str(&stderr);
    let status = console.lines().find_map(|line| {
        let code = line.split("exitcode=0x").nth(1)?;
        u32::from_str_radix(code.trim(), 16).ok()
    });
    Boot {
        console,
        status: status.map(|code| code >> 8),
    }
}

/// The names kernel threads go by; none may appear among what grace signals or reports.
const KERNEL_THREADS: [&str; 6] = [
    "kthreadd",
    "kworker",
    "rcu_",
    "ksoftirqd",
    "migration",
    "kswapd",
];

fn assert_no_kernel_thread(boot: &Boot) {
    for line in boot.log() {
        for name in KERNEL_THREADS {
            assert!(
                !line.contains(name),
                "a kernel thread in {line:?}\n{}",
                boot.console
            );
        }
    }
}

/// The command mounts /proc and leaves two processes; a stop signal comes (from the command itself: there is
/// no kubelet here). grace sends SIGTERM to the two, SIGKILL to the one that ignores it and to the main
/// child, names only them, and exits with 137 as soon as they are gone, not after a give-up.
#[test]
fn as_a_machines_first_process_grace_leaves_kernel_threads_alone() {
    let boot = boot(
        "-t 3s --cleanup-timeout 1s",
        "/bin/busybox mount -t proc proc /proc; trap \"\" TERM; /bin/busybox sleep 1000 & \
         (trap - TERM; exec /bin/busybox sleep 2000) & echo children ready; kill -TERM 1; wait",
    );
    assert_no_kernel_thread(&boot);
    let terminating = boot.line("sending SIGTERM: ");
    assert!(
        terminating.contains("2 processes remain"),
        "{terminating}\n{}",
        boot.console
    );
    let kill = boot.line("SIGKILL to ");
    assert!(
        kill.contains("SIGKILL to 2 processes"),
        "{kill}\n{}",
        boot.console
    );
    assert!(!boot.console.contains("giving up"), "{}", boot.console);
    let exiting = boot.line("exiting with status 137");
    assert!(
        Boot::millis(exiting) < Boot::millis(kill) + 1000,
        "grace waited after the SIGKILL\n{}",
        boot.console
    );
    assert_eq!(boot.status, Some(137), "{}", boot.console);
}

/// Without /proc (the command never mounts it), grace cannot list anything, and kill(-1, 0) always finds the
/// kernel threads: it must still exit once its last child is gone, with the main child's status, not wait
/// out the cleanup timeout or for ever.
#[test]
fn without_proc_a_machines_first_process_exits_with_its_child() {
    let boot = boot(
        "--cleanup-timeout 5s",
        "/bin/busybox sleep 1000 & echo children ready; exit 7",
    );
    assert_no_kernel_thread(&boot);
    let exited = boot.line("exited with status 7");
    let exiting = boot.line("exiting with status 7");
    assert!(
        Boot::millis(exiting) < Boot::millis(exited) + 2000,
        "{}",
        boot.console
    );
    assert_eq!(boot.status, Some(7), "{}", boot.console);
}

#[test]
fn the_initramfs_is_what_the_kernel_reads() {
    let archive = cpio(&[Entry::File("a", b"xyz".to_vec(), 0o644)]);
    // One header, the name "a\0" padded to 4 with the header's 110 bytes, the 3 data bytes padded to 4,
    // then the trailer.
    assert!(archive.starts_with(b"07070100000001000081a4"));
    assert_eq!(&archive[110..112], b"a\0");
    assert_eq!(&archive[112..115], b"xyz");
    assert_eq!(archive.len() % 4, 0);
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is installed by tools/setup"
    );
}
