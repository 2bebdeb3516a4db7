//! Command-line options (hand-parsed: the bench keeps to one dependency, libc).

use crate::error::{bail, Context, Result};
use crate::inits::GraceChoice;
use crate::scenarios;
use std::path::PathBuf;
use std::time::Duration;

/// The usage text.
pub const USAGE: &str = "\
grace-bench: runs grace and each installed peer init (tini, tini-static, dumb-init, catatonit)
as PID 1 of fresh PID namespaces, interleaved trial by trial, and prints a markdown table.
Needs root (unshare --pid). The table goes to stdout, progress and notes to stderr.

usage: cargo run --release --manifest-path bench/Cargo.toml -- [OPTIONS]

options:
  --quick                 smoke run: 2 s idle window, few trials, 2,000 orphans, a tree of 200
  --grace PATH            grace binary (else $GRACE_BIN, else ../target/x86_64-unknown-linux-musl/
                          release/grace, then ../target/release/grace, relative to bench/)
  --no-grace              bench the peers only
  --previous VERSION      the release of grace run beside it (default: the last in bench/releases.txt),
                          built from its commit into the release cache
  --no-previous           run no release of grace beside it
  --release-cache DIR     where releases are built and kept (default: ~/.cache/grace-bench)
  --check-growth README   only compare grace's binary size and idle RSS with the release's: exits 1 when one
                          grew more than 5 % and README has no line `- ROW since VERSION: why` (tools/test)
  --inits LIST            only these, comma-separated (grace,previous,tini,tini-static,dumb-init,catatonit;
                          previous: the release of grace)
  --rows LIST             only these row groups, comma-separated
                          (size,idle,signals,reaping,startup,escalation,escalation-scale,
                          output,services; default all)
  --idle-window SECONDS   idle measurement window (default 10; quick 2)
  --idle-rounds N         idle windows, all inits side by side in each (default 3; quick 1)
  --signal-trials N       SIGTERM forwarding/shutdown trials per init (default 300; quick 30)
  --orphans N             orphans per reaping trial (default 20000; quick 2000)
  --reap-trials N         reaping trials per init (default 3; quick 1)
  --startup-trials N      start-up trials per init (default 200; quick 30)
  --escalation-trials N   grace escalation trials, about 1 s each (default 10; quick 2)
  --scale-processes N     children in the tree of the escalation at scale (default 1000; quick 200)
  --scale-trials N        rounds of the escalation at scale, 4 runs of about 1.5 s each
                          (default 5; quick 1)
  --output-lines N        lines of 100 bytes per run of the output rows (default 200000;
                          quick 20000)
  --output-trials N       rounds of the output rows, 4 runs each (default 5; quick 1)
  --services-rounds N     idle windows (--idle-window) of the services rows, grace and supervisord
                          side by side with three services each (default 3; quick 1)
  --services-trials N     SIGTERM trials of the services rows per init (default 50; quick 5)
  --stamp-child PATH      the child program (default: stamp-child beside grace-bench)
  --log-dir DIR           where each init's stderr is kept (default: a directory under /tmp)
  --samples FILE          also write every sample as CSV (metric,init,trial,value)
  -h, --help              this text
";

/// Validated options.
pub struct Options {
    /// The smoke-run defaults are in force.
    pub quick: bool,
    /// Where grace comes from.
    pub grace: GraceChoice,
    /// The release run beside grace (`None`: the last listed), unless `no_previous`.
    pub previous: Option<String>,
    /// Run no release beside grace.
    pub no_previous: bool,
    /// Where releases are built.
    pub release_cache: Option<PathBuf>,
    /// Only the growth check, against this README.
    pub check_growth: Option<PathBuf>,
    /// Only these inits.
    pub only: Option<Vec<String>>,
    /// Only these row groups (all when `None`).
    pub rows: Option<Vec<String>>,
    /// The idle measurement window.
    pub idle_window: Duration,
    /// How many idle windows.
    pub idle_rounds: usize,
    /// Signal forwarding trials per init.
    pub signal_trials: usize,
    /// Orphans per reaping trial.
    pub orphans: u32,
    /// Reaping trials per init.
    pub reap_trials: usize,
    /// Start-up trials per init.
    pub startup_trials: usize,
    /// Escalation trials (grace only).
    pub escalation_trials: usize,
    /// Children in the tree of the escalation at scale.
    pub scale_processes: u32,
    /// Rounds of the escalation at scale (grace and the baseline, as PID 1 and as a subreaper).
    pub scale_trials: usize,
    /// Lines per run of the output rows.
    pub output_lines: u32,
    /// Rounds of the output rows (the writer alone, and through grace three ways).
    pub output_trials: usize,
    /// Idle windows of the services rows (grace and supervisord side by side).
    pub services_rounds: usize,
    /// Stop trials of the services rows, per service manager.
    pub services_trials: usize,
    /// An explicit child program.
    pub stamp_child: Option<PathBuf>,
    /// An explicit directory for the inits' stderr.
    pub log_dir: Option<PathBuf>,
    /// Where to write every sample as CSV.
    pub samples: Option<PathBuf>,
}

/// What the command line asks for.
pub enum Parsed {
    /// Run the bench.
    Run(Box<Options>),
    /// Print the usage.
    Help,
}

/// Parses the arguments (without the program name). Explicit values win over `--quick`
/// wherever they appear.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed> {
    let mut quick = false;
    let mut grace = None;
    let mut no_grace = false;
    let mut only = None;
    let mut rows = None;
    let mut idle_window = None;
    let mut idle_rounds = None;
    let mut signal_trials = None;
    let mut orphans = None;
    let mut reap_trials = None;
    let mut startup_trials = None;
    let mut escalation_trials = None;
    let mut scale_processes = None;
    let mut scale_trials = None;
    let mut output_lines = None;
    let mut output_trials = None;
    let mut services_rounds = None;
    let mut services_trials = None;
    let mut stamp_child = None;
    let mut log_dir = None;
    let mut samples = None;
    let mut previous = None;
    let mut no_previous = false;
    let mut release_cache = None;
    let mut check_growth = None;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => args.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--quick" => quick = true,
            "--no-grace" => no_grace = true,
            "--grace" => grace = Some(PathBuf::from(value()?)),
            "--inits" => {
                let names: Vec<String> = value()?
                    .split(',')
                    .map(|name| name.trim().to_owned())
                    .collect();
                for name in &names {
                    if ![
                        "grace",
                        "previous",
                        "tini",
                        "tini-static",
                        "dumb-init",
                        "catatonit",
                    ]
                    .contains(&name.as_str())
                    {
                        bail!("--inits: unknown init {name:?}");
                    }
                }
                only = Some(names);
            }
            "--rows" => {
                let names: Vec<String> = value()?
                    .split(',')
                    .map(|name| name.trim().to_owned())
                    .collect();
                for name in &names {
                    if !scenarios::GROUPS.iter().any(|(group, _)| group == name) {
                        bail!("--rows: unknown row group {name:?}");
                    }
                }
                rows = Some(names);
            }
            "--idle-window" => idle_window = Some(parse_seconds(&value()?)?),
            "--idle-rounds" => idle_rounds = Some(parse_count(&flag, &value()?)?),
            "--signal-trials" => signal_trials = Some(parse_count(&flag, &value()?)?),
            "--orphans" => orphans = Some(parse_count(&flag, &value()?)? as u32),
            "--reap-trials" => reap_trials = Some(parse_count(&flag, &value()?)?),
            "--startup-trials" => startup_trials = Some(parse_count(&flag, &value()?)?),
            "--escalation-trials" => escalation_trials = Some(parse_count(&flag, &value()?)?),
            "--scale-processes" => scale_processes = Some(parse_count(&flag, &value()?)? as u32),
            "--scale-trials" => scale_trials = Some(parse_count(&flag, &value()?)?),
            "--output-lines" => output_lines = Some(parse_count(&flag, &value()?)? as u32),
            "--output-trials" => output_trials = Some(parse_count(&flag, &value()?)?),
            "--services-rounds" => services_rounds = Some(parse_count(&flag, &value()?)?),
            "--services-trials" => services_trials = Some(parse_count(&flag, &value()?)?),
            "--stamp-child" => stamp_child = Some(PathBuf::from(value()?)),
            "--log-dir" => log_dir = Some(PathBuf::from(value()?)),
            "--samples" => samples = Some(PathBuf::from(value()?)),
            "--previous" => previous = Some(value()?),
            "--no-previous" => no_previous = true,
            "--release-cache" => release_cache = Some(PathBuf::from(value()?)),
            "--check-growth" => check_growth = Some(PathBuf::from(value()?)),
            _ => bail!("unknown argument {arg:?} (see --help)"),
        }
    }

    let grace = if no_grace {
        GraceChoice::Skip
    } else if let Some(path) = grace {
        GraceChoice::Path(path)
    } else {
        match std::env::var_os("GRACE_BIN").filter(|value| !value.is_empty()) {
            Some(path) => GraceChoice::Path(PathBuf::from(path)),
            None => GraceChoice::Default,
        }
    };
    let pick = |explicit: Option<usize>, full: usize, smoke: usize| {
        explicit.unwrap_or(if quick { smoke } else { full })
    };
    Ok(Parsed::Run(Box::new(Options {
        quick,
        grace,
        previous,
        no_previous,
        release_cache,
        check_growth,
        only,
        rows,
        idle_window: idle_window.unwrap_or(Duration::from_secs(if quick { 2 } else { 10 })),
        idle_rounds: pick(idle_rounds, 3, 1),
        signal_trials: pick(signal_trials, 300, 30),
        orphans: orphans.unwrap_or(if quick { 2000 } else { 20_000 }),
        reap_trials: pick(reap_trials, 3, 1),
        startup_trials: pick(startup_trials, 200, 30),
        escalation_trials: pick(escalation_trials, 10, 2),
        scale_processes: scale_processes.unwrap_or(if quick { 200 } else { 1000 }),
        scale_trials: pick(scale_trials, 5, 1),
        output_lines: output_lines.unwrap_or(if quick { 20_000 } else { 200_000 }),
        output_trials: pick(output_trials, 5, 1),
        services_rounds: pick(services_rounds, 3, 1),
        services_trials: pick(services_trials, 50, 5),
        stamp_child,
        log_dir,
        samples,
    })))
}

impl Options {
    /// Whether the row group `name` is to be measured.
    pub fn wants(&self, name: &str) -> bool {
        self.rows
            .as_ref()
            .map_or(true, |rows| rows.iter().any(|row| row == name))
    }
}

fn parse_count(flag: &str, value: &str) -> Result<usize> {
    value
        .parse::<usize>()
        .with_context(|| format!("{flag}: {value:?} is not a count"))
}

/// Seconds, optionally suffixed with `s` (`10`, `2.5`, `10s`).
fn parse_seconds(value: &str) -> Result<Duration> {
    let number = value.strip_suffix('s').unwrap_or(value);
    let seconds: f64 = number
        .parse()
        .with_context(|| format!("--idle-window: {value:?} is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds.is_finite()) {
        bail!("--idle-window must be positive");
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        match parse(args.iter().map(|arg| arg.to_string())).unwrap() {
            Parsed::Run(options) => *options,
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn explicit_values_win_over_quick_in_any_order() {
        let quick = options(&["--signal-trials", "7", "--quick", "--idle-window=3s"]);
        assert!(quick.quick);
        assert_eq!(quick.signal_trials, 7);
        assert_eq!(quick.idle_window, Duration::from_secs(3));
        assert_eq!(quick.orphans, 2000);
        assert_eq!((quick.scale_processes, quick.scale_trials), (200, 1));
        let full = options(&[]);
        assert_eq!(
            (full.signal_trials, full.orphans, full.idle_rounds),
            (300, 20_000, 3)
        );
        assert_eq!((full.scale_processes, full.scale_trials), (1000, 5));
        assert_eq!((full.services_rounds, full.services_trials), (3, 50));
        assert_eq!((quick.services_rounds, quick.services_trials), (1, 5));
        let explicit = options(&["--quick", "--scale-processes=50", "--scale-trials", "3"]);
        assert_eq!((explicit.scale_processes, explicit.scale_trials), (50, 3));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse(["--signal-trials".to_owned()]).is_err());
        assert!(parse(["--inits=tini,runit".to_owned()]).is_err());
        assert!(parse(["--idle-window=0".to_owned()]).is_err());
        assert!(parse(["--frobnicate".to_owned()]).is_err());
        assert!(parse(["--rows=idle,latency".to_owned()]).is_err());
        assert!(options(&["--rows", "idle,reaping"]).wants("reaping"));
        assert!(!options(&["--rows", "idle"]).wants("signals"));
        assert!(options(&[]).wants("signals"));
    }
}
