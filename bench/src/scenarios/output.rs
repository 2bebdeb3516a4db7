//! Row group `output` (grace only): what a prefixed service's line costs. A writer, `stamp-child lines
//! N LEN`, writes N lines of LEN bytes, one write(2) each, to a pipe the bench reads: alone as PID 1 of a
//! fresh namespace (the direct write, the baseline), and as the main service of `grace --services FILE`
//! with `log = "inherit"` (the same direct write, grace only watching), `log = "prefix"`, and `log =
//! "prefix"` with `--log-format json`. The time from `go` to the last line read, per line; and the CPU
//! time the namespace's PID 1 took meanwhile, per line: the writer's own (alone), or grace's (the cost of
//! a line to grace, which runs beside the writer on another core). Rounds interleaved, medians. The peers
//! have no services: their cells read —.

use super::Bench;
use crate::error::{bail, Context, Result};
use crate::procfs;
use crate::report::{Cell, Row, Unit};
use crate::stats::median;
use crate::sys;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bytes per line, newline included: a typical log line.
const LINE_BYTES: u32 = 100;

/// How long one run may take before it counts as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One way the writer runs.
struct Way {
    label: &'static str,
    /// `None`: the writer alone; else grace's services file and options.
    grace: Option<(&'static str, &'static [&'static str])>,
}

const WAYS: [Way; 4] = [
    Way {
        label: "the writer alone",
        grace: None,
    },
    Way {
        label: "`log = \"inherit\"`",
        grace: Some(("[app]\nmain = true\nlog = \"inherit\"\n", &[])),
    },
    Way {
        label: "`log = \"prefix\"`, text",
        grace: Some(("[app]\nmain = true\nlog = \"prefix\"\n", &[])),
    },
    Way {
        label: "`log = \"prefix\"`, `--log-format json`",
        grace: Some((
            "[app]\nmain = true\nlog = \"prefix\"\n",
            &["--log-format", "json"],
        )),
    },
];

/// One run, per line: nanoseconds from `go` to the last of `lines` lines read, and nanoseconds of CPU the
/// namespace's PID 1 took meanwhile.
fn run(bench: &Bench, way: &Way, grace: &Path, lines: u32, log: &Path) -> Result<(f64, f64)> {
    let writer = bench.child(&["lines", &lines.to_string(), &LINE_BYTES.to_string()]);
    let mut argv: Vec<OsString> = Vec::new();
    if let Some((file, options)) = way.grace {
        let services = bench.log_dir.join(format!("output-{}.toml", way_slug(way)));
        std::fs::write(&services, file)
            .with_context(|| format!("writing {}", services.display()))?;
        argv.push(grace.into());
        argv.push("--services".into());
        argv.push(services.into_os_string());
        argv.extend(options.iter().map(OsString::from));
        argv.push("--".into());
    }
    argv.extend(writer);
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(&argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    sys::kill_when_parent_dies(&mut command);
    let mut process = command.spawn().context("starting unshare")?;
    let unshare = process.id() as i32;
    let outcome = (|| -> Result<(f64, f64)> {
        let mut stdin = process.stdin.take().context("no stdin")?;
        let mut stdout = process.stdout.take().context("no stdout")?;
        let mut buffer = vec![0u8; 64 * 1024];
        let deadline = sys::monotonic_ns() + RUN_TIMEOUT.as_nanos() as u64;
        // Up to the end of the line that says `ready` (prefixed or not): what follows is the payload.
        let mut seen = Vec::new();
        let mut rest = loop {
            let read = read_some(&mut stdout, &mut buffer, deadline)?;
            seen.extend_from_slice(&buffer[..read]);
            if let Some(at) = find(&seen, b"ready") {
                if let Some(end) = seen[at..].iter().position(|&byte| byte == b'\n') {
                    break seen.split_off(at + end + 1);
                }
            }
        };
        let init = *procfs::children(unshare)?
            .first()
            .context("unshare has no child")?;
        let cpu_before = procfs::cpu_time_ns(init)?;
        let started = sys::monotonic_ns();
        stdin.write_all(b"go\n").context("writing go")?;
        let mut counted = rest.iter().filter(|&&byte| byte == b'\n').count() as u64;
        rest.clear();
        while counted < u64::from(lines) {
            let read = read_some(&mut stdout, &mut buffer, deadline)?;
            counted += buffer[..read].iter().filter(|&&byte| byte == b'\n').count() as u64;
        }
        let took = sys::monotonic_ns() - started;
        let cpu = procfs::cpu_time_ns(init)?.saturating_sub(cpu_before);
        drop(stdin); // EOF: the writer exits, and grace with it
        Ok((
            took as f64 / f64::from(lines),
            cpu as f64 / f64::from(lines),
        ))
    })();
    let exited = wait_exit(&mut process, Duration::from_secs(10));
    let per_line = outcome?;
    if !exited? {
        bail!("did not exit once its stdin closed");
    }
    Ok(per_line)
}

/// Waits for `process` to exit within `timeout`; kills it if it does not.
fn wait_exit(process: &mut std::process::Child, timeout: Duration) -> Result<bool> {
    let pidfd = sys::pidfd_open(process.id() as i32).context("pidfd_open(unshare)")?;
    let exited = sys::poll_readable(&[pidfd.as_fd()], timeout)?[0];
    if !exited {
        let _ = process.kill();
    }
    let _ = process.wait();
    Ok(exited)
}

fn way_slug(way: &Way) -> &'static str {
    match way.grace {
        None => "alone",
        Some((file, options)) if file.contains("inherit") && options.is_empty() => "inherit",
        Some((_, [])) => "prefix",
        Some(_) => "json",
    }
}

/// Reads what the pipe has (at least one byte), before CLOCK_MONOTONIC `deadline`.
fn read_some(stdout: &mut impl ReadFd, buffer: &mut [u8], deadline: u64) -> Result<usize> {
    let remaining = deadline.saturating_sub(sys::monotonic_ns());
    if remaining == 0 || !sys::poll_readable(&[stdout.fd()], Duration::from_nanos(remaining))?[0] {
        bail!("no output within {RUN_TIMEOUT:?}");
    }
    match stdout.read(buffer) {
        Ok(0) => bail!("stdout closed early"),
        Ok(read) => Ok(read),
        Err(err) => Err(err.into()),
    }
}

/// A pipe to read and poll.
trait ReadFd: Read {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl ReadFd for std::process::ChildStdout {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Time and CPU per line for each way, grace's against the writer alone.
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let Some(grace) = bench.current_grace() else {
        return Vec::new();
    };
    let lines = bench.options.output_lines;
    let rounds = bench.options.output_trials;
    eprintln!(
        "output: {rounds} rounds of {lines} lines of {LINE_BYTES} bytes, the writer alone and through grace"
    );
    // [way] → per-line times and CPU times.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    let mut failed = vec![false; WAYS.len()];
    for round in 0..rounds {
        for slot in (0..WAYS.len()).map(|offset| (offset + round) % WAYS.len()) {
            if failed[slot] {
                continue;
            }
            let way = &WAYS[slot];
            let log = bench
                .log_dir
                .join(format!("output-{}.stderr", way_slug(way)));
            match run(bench, way, &grace, lines, &log) {
                Ok((time, cpu_time)) => {
                    times[slot].push(time);
                    cpu[slot].push(cpu_time);
                }
                Err(err) => {
                    failed[slot] = true;
                    bench.fail_named(way.label, "output", &err);
                }
            }
        }
    }
    for (index, way) in WAYS.iter().enumerate() {
        let slug = way_slug(way);
        bench.keep_series(
            &format!("output.ns_per_line.{slug}"),
            "grace",
            &times[index],
        );
        bench.keep_series(
            &format!("output.cpu_ns_per_line.{slug}"),
            "grace",
            &cpu[index],
        );
    }
    let (Some(baseline), Some(writer_cpu)) = (median(&times[0]), median(&cpu[0])) else {
        return Vec::new();
    };
    let cells = |series: &[f64], baseline: f64| -> Vec<Cell> {
        bench
            .inits
            .iter()
            .map(|init| match (init.is_current_grace(), median(series)) {
                (true, Some(value)) => Cell::AgainstBaseline { value, baseline },
                (true, None) => Cell::Failed,
                (false, _) => Cell::Text("—".to_owned()),
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (index, way) in WAYS.iter().enumerate().skip(1) {
        let rate =
            median(&times[index]).map_or_else(|| "?".to_owned(), |ns| format!("{:.0}", 1e9 / ns));
        rows.push(Row {
            label: format!(
                "output: time per {LINE_BYTES}-byte line through grace, {} ({rate} lines/s; the writer alone: \
                 {:.0} lines/s)",
                way.label,
                1e9 / baseline
            ),
            unit: Unit::Nanos,
            cells: cells(&times[index], baseline),
        });
    }
    for (index, way) in WAYS.iter().enumerate().skip(1) {
        rows.push(Row {
            label: format!(
                "output: grace's CPU per line, {} (against the writer's own CPU per line, {:.0} ns)",
                way.label, writer_cpu
            ),
            unit: Unit::Nanos,
            cells: cells(&cpu[index], writer_cpu),
        });
    }
    rows
}
