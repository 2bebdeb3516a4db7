//! Row group `services`: grace beside supervisord, each as PID 1 of a fresh namespace running the same three
//! services, `stamp-child service` (prints `ready`, idles blocked in read, exits 143 at once on SIGTERM):
//! `grace --services FILE` and `supervisord -n -c CONF`. The init's own RSS once all three said `ready`, its
//! context switches and CPU time over an idle window (both side by side, as the idle rows do), the time from
//! SIGTERM to the init's exit and its exit status, in rounds that rotate the two. supervisord is the peer of
//! these rows: its figure is in the label, grace's cell is divided by it, the other inits' cells read —.

use super::Bench;
use crate::error::{bail, Context, Result};
use crate::inits;
use crate::namespace::{self, Event, Namespace};
use crate::procfs;
use crate::report::{Cell, Row, Unit};
use crate::stats::median;
use crate::sys;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// The services, in start order (each stops in reverse under both).
const SERVICES: [&str; 3] = ["one", "two", "three"];

/// How long a stop may take before it counts as hung (supervisord's `stopwaitsecs` is 10 s a program).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

const GRACE: usize = 0;
const SUPERVISORD: usize = 1;

/// A service manager under test: how it is started.
struct Manager {
    name: &'static str,
    argv: Vec<OsString>,
    log: PathBuf,
}

/// grace's services file: the three services, the last the main one (no CMD is given).
fn grace_file(stamp_child: &Path) -> String {
    let mut file = String::new();
    for (index, name) in SERVICES.iter().enumerate() {
        file.push_str(&format!(
            "[{name}]\ncommand = [\"{}\", \"service\"]\n",
            stamp_child.display()
        ));
        if index == SERVICES.len() - 1 {
            file.push_str("main = true\n");
        }
    }
    file
}

/// supervisord's configuration for the same three programs, as an image would run it: in the foreground
/// (`nodaemon`), its own log discarded (`silent`: not on stdout either, the pipe the bench reads), no control
/// socket, the programs' output on its stdout and stderr, each RUNNING at once (`startsecs=0`: no state change
/// a second later, in the idle window) and not restarted; every stop setting its default (TERM,
/// `stopwaitsecs=10`).
fn supervisord_conf(stamp_child: &Path, directory: &Path) -> String {
    let mut conf = format!(
        "[supervisord]\nnodaemon=true\nsilent=true\nuser=root\nlogfile=/dev/null\nlogfile_maxbytes=0\n\
         pidfile={}\nchildlogdir={}\n",
        directory.join("supervisord.pid").display(),
        directory.display()
    );
    for name in SERVICES {
        conf.push_str(&format!(
            "\n[program:{name}]\ncommand={} service\nstartsecs=0\nautorestart=false\n\
             stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n\
             stderr_logfile=/dev/stderr\nstderr_logfile_maxbytes=0\n",
            stamp_child.display()
        ));
    }
    conf
}

/// Starts `manager` in a fresh namespace and waits until each of the three services has said `ready`.
fn start(manager: &Manager) -> Result<Namespace> {
    let mut namespace = Namespace::start(manager.name, &manager.argv, &manager.log)?;
    for _ in 1..SERVICES.len() {
        let line = namespace.read_line(namespace::READY_TIMEOUT)?;
        if line != "ready" {
            bail!(
                "{}: expected `ready`, got {line:?}{}",
                manager.name,
                namespace.stderr_tail()
            );
        }
    }
    Ok(namespace)
}

/// SIGTERM to the init (its pidfd) → the init's pidfd readable: the time in ns, and its exit status.
fn stop(manager: &Manager, mut namespace: Namespace) -> Result<(f64, ExitStatus)> {
    let sent = sys::monotonic_ns();
    namespace.signal_init(libc::SIGTERM)?;
    let deadline = sent + STOP_TIMEOUT.as_nanos() as u64;
    let exited = loop {
        match namespace.next_event(true, deadline)? {
            // The services' `term` stamps (supervisord copies them too while it still runs).
            Event::Line(line) if line.starts_with("term ") => {}
            Event::Line(line) => bail!("{}: unexpected line {line:?}", manager.name),
            Event::InitExited { at_ns } => break at_ns,
        }
    };
    let status = namespace.finish_with_status()?;
    Ok((exited.saturating_sub(sent) as f64, status))
}

/// An exit status as the cell shows it: the code, or the signal that killed the init.
fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}

/// The statuses seen, each once, with how often when they differ (`143`, or `143 (4×), 1 (1×)`).
fn statuses_text(statuses: &[String]) -> Option<String> {
    let mut distinct: Vec<(&str, usize)> = Vec::new();
    for status in statuses {
        match distinct.iter_mut().find(|(seen, _)| seen == status) {
            Some((_, count)) => *count += 1,
            None => distinct.push((status, 1)),
        }
    }
    match distinct.as_slice() {
        [] => None,
        [(status, _)] => Some((*status).to_owned()),
        _ => Some(
            distinct
                .iter()
                .map(|(status, count)| format!("{status} ({count}×)"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// One measured series of a manager's samples.
type Series = fn(&Samples) -> &Vec<f64>;

/// Samples of one manager.
#[derive(Default)]
struct Samples {
    failed: bool,
    rss: Vec<f64>,
    switches: Vec<f64>,
    cpu: Vec<f64>,
    stop: Vec<f64>,
    statuses: Vec<String>,
}

/// One idle round: every manager started, side by side; RSS once all are ready, then switches and CPU time
/// over the same window; then each stopped (not timed: the stop trials time it alone).
fn idle_round(bench: &mut Bench, managers: &[Manager], samples: &mut [Samples], round: usize) {
    let window = bench.options.idle_window;
    let mut running = Vec::new();
    for slot in (0..managers.len()).map(|offset| (offset + round) % managers.len()) {
        if samples[slot].failed {
            continue;
        }
        match start(&managers[slot]) {
            Ok(namespace) => running.push((slot, namespace)),
            Err(err) => {
                samples[slot].failed = true;
                bench.fail_named(managers[slot].name, "services: idle start", &err);
            }
        }
    }
    let read = |pid: i32| -> Result<(u64, u64, u64)> {
        Ok((
            procfs::memory_bytes(pid)?.0,
            procfs::context_switches(pid)?,
            procfs::cpu_time_ns(pid)?,
        ))
    };
    let mut opened = Vec::new();
    for (slot, namespace) in running {
        match read(namespace.init_pid()) {
            Ok(reading) => opened.push((slot, namespace, reading)),
            Err(err) => {
                samples[slot].failed = true;
                bench.fail_named(managers[slot].name, "services: idle reading", &err);
            }
        }
    }
    std::thread::sleep(window); // the measurement window, not a synchronisation
    for (slot, namespace, (rss, switches, cpu)) in opened {
        let manager = &managers[slot];
        let outcome = read(namespace.init_pid()).and_then(|(_, switches_end, cpu_end)| {
            stop(manager, namespace)?;
            Ok((switches_end, cpu_end))
        });
        match outcome {
            Ok((switches_end, cpu_end)) => {
                let samples = &mut samples[slot];
                samples.rss.push(rss as f64);
                samples
                    .switches
                    .push(switches_end.saturating_sub(switches) as f64);
                samples.cpu.push(cpu_end.saturating_sub(cpu) as f64);
            }
            Err(err) => {
                samples[slot].failed = true;
                bench.fail_named(manager.name, "services: idle reading or stop", &err);
            }
        }
    }
}

/// RSS, idle wake-ups and CPU, stop time and exit status of grace and supervisord running three services.
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let Some(grace) = bench.current_grace() else {
        return Vec::new();
    };
    let directory = bench.log_dir.join("services");
    let supervisord = inits::find_program("supervisord");
    let version = supervisord
        .as_deref()
        .and_then(|path| inits::program_version(path, Duration::from_secs(10)));
    let written = (|| -> Result<()> {
        std::fs::create_dir_all(&directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        std::fs::write(
            directory.join("services.toml"),
            grace_file(&bench.stamp_child),
        )
        .context("writing services.toml")?;
        std::fs::write(
            directory.join("supervisord.conf"),
            supervisord_conf(&bench.stamp_child, &directory),
        )
        .context("writing supervisord.conf")
    })();
    if let Err(err) = written {
        bench.fail_named("grace", "services: files", &err);
        return Vec::new();
    }
    let mut managers = vec![Manager {
        name: "grace",
        argv: vec![
            grace.into_os_string(),
            "--services".into(),
            directory.join("services.toml").into_os_string(),
        ],
        log: bench.log_dir.join("services-grace.stderr"),
    }];
    match &supervisord {
        Some(path) => managers.push(Manager {
            name: "supervisord",
            argv: vec![
                path.clone().into_os_string(),
                "-n".into(),
                "-c".into(),
                directory.join("supervisord.conf").into_os_string(),
            ],
            log: bench.log_dir.join("services-supervisord.stderr"),
        }),
        None => bench.notes.push(
            "supervisord: not installed (Debian: supervisor), the services rows have no peer"
                .to_owned(),
        ),
    }
    let rounds = bench.options.services_rounds;
    let trials = bench.options.services_trials;
    let mut samples: Vec<Samples> = managers.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        eprintln!(
            "services: idle round {}/{rounds}, {:?} window, grace and supervisord side by side",
            round + 1,
            bench.options.idle_window
        );
        idle_round(bench, &managers, &mut samples, round);
    }
    eprintln!("services: {trials} stop trials each, alternating");
    for trial in 0..trials {
        for slot in (0..managers.len()).map(|offset| (offset + trial) % managers.len()) {
            if samples[slot].failed {
                continue;
            }
            let manager = &managers[slot];
            match start(manager).and_then(|namespace| stop(manager, namespace)) {
                Ok((took, status)) => {
                    samples[slot].stop.push(took);
                    samples[slot].statuses.push(status_text(status));
                }
                Err(err) => {
                    samples[slot].failed = true;
                    bench.fail_named(manager.name, "services: stop", &err);
                }
            }
        }
    }
    for (manager, samples) in managers.iter().zip(&samples) {
        bench.keep_series("services.rss_bytes", manager.name, &samples.rss);
        bench.keep_series("services.context_switches", manager.name, &samples.switches);
        bench.keep_series("services.cpu_ns", manager.name, &samples.cpu);
        bench.keep_series("services.stop_ns", manager.name, &samples.stop);
    }
    rows(
        bench,
        &samples,
        version.as_deref().unwrap_or("version unknown"),
    )
}

/// The rows: grace's cell against supervisord's figure, quoted in the label.
fn rows(bench: &Bench, samples: &[Samples], version: &str) -> Vec<Row> {
    let figure = |slot: usize, series: Series| -> Option<f64> {
        let samples = samples.get(slot)?;
        if samples.failed {
            return None;
        }
        median(series(samples))
    };
    let peer_text = |slot: usize, unit: Unit, series: Series| -> String {
        match (samples.get(slot), figure(slot, series)) {
            (None, _) => "not installed".to_owned(),
            (Some(_), None) => "failed".to_owned(),
            (Some(_), Some(value)) => crate::report::format_value(value, unit),
        }
    };
    let cells = |grace_cell: Cell| -> Vec<Cell> {
        bench
            .inits
            .iter()
            .map(|init| {
                if init.is_current_grace() {
                    grace_cell.clone()
                } else {
                    Cell::Text("—".to_owned())
                }
            })
            .collect()
    };
    let against = |series: Series| -> Cell {
        match (figure(GRACE, series), figure(SUPERVISORD, series)) {
            (Some(value), Some(baseline)) => Cell::AgainstBaseline { value, baseline },
            (Some(value), None) => Cell::Value(value),
            (None, _) => Cell::Failed,
        }
    };
    let seconds = bench.options.idle_window.as_secs_f64();
    let count = SERVICES.len();
    let mut rows = Vec::new();
    let measured: [(String, Unit, Series); 4] = [
        (
            format!("services ({count}): RSS of the init once all are ready (VmRSS)"),
            Unit::Bytes,
            |samples| &samples.rss,
        ),
        (
            format!(
                "services ({count}): idle wake-ups of the init, context switches in {seconds} s"
            ),
            Unit::Count,
            |samples| &samples.switches,
        ),
        (
            format!("services ({count}): idle CPU time of the init in {seconds} s"),
            Unit::Nanos,
            |samples| &samples.cpu,
        ),
        (
            format!(
                "services ({count}): SIGTERM → init exits (each service exits at once), median"
            ),
            Unit::Nanos,
            |samples| &samples.stop,
        ),
    ];
    for (index, (label, unit, series)) in measured.into_iter().enumerate() {
        // The first row names the peer once: its version, and that it is a Python program.
        let peer = if index == 0 {
            format!("supervisord {version}, Python")
        } else {
            "supervisord".to_owned()
        };
        rows.push(Row {
            label: format!("{label} ({peer}: {})", peer_text(SUPERVISORD, unit, series)),
            unit,
            cells: cells(against(series)),
        });
    }
    let status = |slot: usize| -> Option<String> {
        let samples = samples.get(slot)?;
        if samples.failed {
            return None;
        }
        statuses_text(&samples.statuses)
    };
    let peer_status = match (samples.get(SUPERVISORD), status(SUPERVISORD)) {
        (None, _) => "not installed".to_owned(),
        (Some(_), None) => "failed".to_owned(),
        (Some(_), Some(text)) => text,
    };
    rows.push(Row {
        label: format!(
            "services ({count}): exit status of the init after SIGTERM, the main service exiting 143 \
             (supervisord: {peer_status})"
        ),
        unit: Unit::Count,
        cells: cells(status(GRACE).map_or(Cell::Failed, Cell::Text)),
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_once_or_with_their_counts() {
        let texts = |list: &[&str]| list.iter().map(|text| text.to_string()).collect::<Vec<_>>();
        assert_eq!(statuses_text(&[]), None);
        assert_eq!(
            statuses_text(&texts(&["143", "143"])).as_deref(),
            Some("143")
        );
        assert_eq!(
            statuses_text(&texts(&["143", "0", "143"])).as_deref(),
            Some("143 (2×), 0 (1×)")
        );
    }

    #[test]
    fn both_files_name_the_three_services() {
        let stamp_child = Path::new("/bench/stamp-child");
        let file = grace_file(stamp_child);
        assert_eq!(
            file.matches("command = [\"/bench/stamp-child\", \"service\"]")
                .count(),
            3
        );
        assert_eq!(file.matches("main = true").count(), 1);
        assert!(file.trim_end().ends_with("main = true"), "{file}");
        let conf = supervisord_conf(stamp_child, Path::new("/tmp/x"));
        assert_eq!(
            conf.matches("command=/bench/stamp-child service\n").count(),
            3
        );
        assert!(conf.contains("[program:three]"), "{conf}");
        assert!(conf.contains("nodaemon=true"), "{conf}");
    }
}
