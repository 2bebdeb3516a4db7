//! The validated configuration: the command line, its GRACE_* fallbacks, and tini's environment variables.

use std::ffi::OsString;
use std::time::Duration;

use crate::cli::{self, Cli, LogFormat, ServiceLog, UsageError};
use crate::shutdown::Timings;
use crate::signals::{RewriteMap, Signal};
use crate::wording::configured;

/// Everything grace needs to know to run, checked and in the form the supervisor uses.
#[derive(Clone, Debug)]
pub struct Config {
    pub command: Vec<OsString>,
    pub grace_period: Duration,
    pub cleanup_timeout: Duration,
    /// Received signals that start the shutdown.
    pub stop_signals: Vec<Signal>,
    pub rewrites: RewriteMap,
    pub process_group: bool,
    /// Index: exit status; `true`: report it as 0.
    pub success_exits: [bool; 256],
    pub parent_death_signal: Option<Signal>,
    pub warn_on_reap: bool,
    pub pre_stop_delay: Duration,
    /// The signal sent `final_timeout` before each SIGKILL; SIGKILL itself means no such step.
    pub final_signal: Signal,
    pub final_timeout: Duration,
    pub log_level: crate::logging::LevelFilter,
    pub log_format: LogFormat,
    /// The services' output where a service does not say (`--log-services`).
    pub log_services: ServiceLog,
    /// The signal that restarts the command, if any.
    pub restart_signal: Option<Signal>,
    /// When, and how soon, the command starts again after it exits.
    pub restart: crate::restart::Policy,
    pub restart_delay: Duration,
    pub max_restarts: Option<u32>,
    /// Stop signals grace was started with ignored: a background job of a non-interactive shell has
    /// SIGINT and SIGQUIT ignored (POSIX), and a `kill -INT` meant for nobody must not stop it. They are
    /// forwarded like any other signal instead. Bit N-1 for signal N; set by `main` from what it inherited.
    pub ignored_stop_signals: u64,
    /// Where each value came from, for `--explain` and the start line.
    pub sources: Sources,
    /// KUBERNETES_SERVICE_HOST was set: grace runs in a Kubernetes pod.
    pub in_kubernetes: bool,
    /// `--services FILE` (GRACE_SERVICES): several services, the command as the main one.
    pub services: Option<std::path::PathBuf>,
    /// The variables of [`VARIABLES`] set in grace's environment: the command does not get them.
    pub withheld: Vec<&'static str>,
}

/// The environment variables grace reads as its own settings. The command is started without them, so
/// that a grace it runs in turn (a script that starts grace itself) acts only on what is set for it, not on
/// the outer grace's policy; every other variable passes through. KUBERNETES_SERVICE_HOST is read too, but
/// it describes the pod, not grace, and passes through.
pub const VARIABLES: [&str; 18] = [
    "GRACE_PERIOD",
    "GRACE_CLEANUP_TIMEOUT",
    "GRACE_STOP_SIGNALS",
    "GRACE_REWRITE",
    "GRACE_PROCESS_GROUP",
    "GRACE_LOG",
    "GRACE_PRE_STOP_DELAY",
    "GRACE_FINAL_SIGNAL",
    "GRACE_FINAL_TIMEOUT",
    "GRACE_LOG_FORMAT",
    "GRACE_RESTART_SIGNAL",
    "GRACE_RESTART",
    "GRACE_RESTART_DELAY",
    "GRACE_MAX_RESTARTS",
    "GRACE_SERVICES",
    "GRACE_LOG_SERVICES",
    "TINI_KILL_PROCESS_GROUP",
    "TINI_VERBOSITY",
];

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    /// The environment variable of that name.
    Environment(&'static str),
    /// The default grace period in a Kubernetes pod (see [`KUBERNETES_GRACE_PERIOD`]).
    Kubernetes,
    Default,
}

impl Source {
    /// `flag`, `environment`, `kubernetes`, `default`: for the JSON `started` event.
    pub fn kind(self) -> &'static str {
        match self {
            Source::CommandLine => "flag",
            Source::Environment(_) => "environment",
            Source::Kubernetes => "kubernetes",
            Source::Default => "default",
        }
    }
}

/// Where the values of [`Config`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sources {
    pub grace_period: Source,
    pub cleanup_timeout: Source,
    pub stop_signals: Source,
    pub rewrites: Source,
    pub process_group: Source,
    pub pre_stop_delay: Source,
    pub final_signal: Source,
    pub final_timeout: Source,
    pub log_format: Source,
    pub log_services: Source,
    pub restart_signal: Source,
    pub restart: Source,
    pub restart_delay: Source,
    pub max_restarts: Source,
}

/// The environment variables grace reads; a seam for tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment's variables that grace may read (GRACE_*, TINI_*, KUBERNETES_SERVICE_HOST),
/// taken in one pass over the environment: a lookup per setting, each a scan of every variable, took a
/// quarter of grace's start-up instructions.
pub struct ProcessEnvironment {
    variables: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

impl ProcessEnvironment {
    pub fn read() -> ProcessEnvironment {
        ProcessEnvironment {
            variables: crate::sys::environment_variables(&[
                b"GRACE_",
                b"TINI_",
                b"KUBERNETES_SERVICE_HOST=",
            ]),
        }
    }
}

impl Environment for ProcessEnvironment {
    /// A value that is not UTF-8 comes back with U+FFFD in place of the bad bytes, so that it fails to parse
    /// and is reported, instead of being taken for unset. Of a variable set twice, the first, as getenv.
    fn var(&self, name: &str) -> Option<String> {
        let (_, value) = self
            .variables
            .iter()
            .find(|(variable, _)| variable == name)?;
        Some(value.to_string_lossy().into_owned())
    }
}

/// Outside Kubernetes: under the 10 s that `docker stop` and podman give, so that grace's escalation and its
/// log line come before theirs.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(8);
/// In a Kubernetes pod (KUBERNETES_SERVICE_HOST set: the kubelet injects it into every container, even with
/// `enableServiceLinks: false`): the kubelet's default terminationGracePeriodSeconds of 30 s, less 5 s for
/// grace's own SIGKILL and report to come first. A shorter default would cut off a server that the platform
/// would have let finish. grace cannot see the pod's period nor its preStop hook (whose time the kubelet
/// takes from that period): this default assumes 30 s or more and no hook, and says so when grace starts.
pub const KUBERNETES_GRACE_PERIOD: Duration = Duration::from_secs(25);
/// The first wait before a restart after an exit.
const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The kubelet's default terminationGracePeriodSeconds.
pub const KUBERNETES_TERMINATION_GRACE: Duration = Duration::from_secs(30);
/// What the pod default leaves between grace's SIGKILL and the kubelet's: room for grace's report and for
/// processes SIGKILL is slow to end. Any pod needs it: GRACE_PERIOD ≤ terminationGracePeriodSeconds − the
/// preStop hook's time − this.
pub const KUBERNETES_MARGIN: Duration =
    KUBERNETES_TERMINATION_GRACE.saturating_sub(KUBERNETES_GRACE_PERIOD);
const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_FINAL_TIMEOUT: Duration = Duration::from_secs(1);

impl Config {
    /// The command line first, then its environment variable, then the default. An empty variable counts
    /// as unset (a Helm value left blank); an invalid one is a usage error naming the variable.
    pub fn new(cli: Cli, environment: &dyn Environment) -> Result<Config, UsageError> {
        let in_kubernetes = environment
            .var("KUBERNETES_SERVICE_HOST")
            .is_some_and(|host| !host.is_empty());
        let services = cli
            .services
            .clone()
            .map(std::path::PathBuf::from)
            .or_else(|| {
                environment
                    .var("GRACE_SERVICES")
                    .filter(|path| !path.is_empty())
                    .map(std::path::PathBuf::from)
            });
        // With a services file the command may come from it (a main service with its own `command`).
        if cli.command.is_empty() && !cli.explain && services.is_none() {
            return Err(UsageError(format!("no command given: {}", cli::USAGE)));
        }
        let (grace_period, grace_period_source) = match setting(
            cli.grace_period,
            environment,
            "GRACE_PERIOD",
            cli::parse_duration,
            DEFAULT_GRACE_PERIOD,
        )? {
            (_, Source::Default) if in_kubernetes => (KUBERNETES_GRACE_PERIOD, Source::Kubernetes),
            other => other,
        };
        let (cleanup_timeout, cleanup_timeout_source) = setting(
            cli.cleanup_timeout,
            environment,
            "GRACE_CLEANUP_TIMEOUT",
            cli::parse_duration,
            DEFAULT_CLEANUP_TIMEOUT,
        )?;
        let (stop_signals, stop_signals_source) = setting(
            cli.stop_signals,
            environment,
            "GRACE_STOP_SIGNALS",
            cli::parse_stop_signals,
            vec![Signal::TERM, Signal::INT],
        )?;
        let (rewrite_list, rewrites_source) = setting(
            (!cli.rewrites.is_empty()).then_some(cli.rewrites),
            environment,
            "GRACE_REWRITE",
            cli::parse_rewrites,
            Vec::new(),
        )?;
        let mut rewrites = RewriteMap::default();
        for rewrite in rewrite_list {
            rewrites.set(rewrite.from, rewrite.to);
        }
        check_stop_rewrites(&stop_signals, &rewrites, rewrites_source)?;
        let mut success_exits = [false; 256];
        for code in cli.success_exits {
            if let Some(slot) = success_exits.get_mut(usize::from(code)) {
                *slot = true; // always there: a u8 indexes 256 slots
            }
        }
        // tini enables its variables when they are set at all, whatever the value.
        let (process_group, process_group_source) = if cli.process_group {
            (true, Source::CommandLine)
        } else if let Some(value) =
            from_environment(environment, "GRACE_PROCESS_GROUP", parse_bool)?
        {
            (value, Source::Environment("GRACE_PROCESS_GROUP"))
        } else if environment.var("TINI_KILL_PROCESS_GROUP").is_some() {
            (true, Source::Environment("TINI_KILL_PROCESS_GROUP"))
        } else {
            (false, Source::Default)
        };
        let log_level = match (cli.quiet, cli.verbose) {
            (true, _) => crate::logging::LevelFilter::Warn,
            (false, 1) => crate::logging::LevelFilter::Debug,
            (false, 2..) => crate::logging::LevelFilter::Trace,
            (false, 0) => match from_environment(environment, "GRACE_LOG", parse_level)? {
                Some(level) => level,
                None => tini_verbosity(environment),
            },
        };
        let (pre_stop_delay, pre_stop_delay_source) = setting(
            cli.pre_stop_delay,
            environment,
            "GRACE_PRE_STOP_DELAY",
            cli::parse_duration,
            Default::default(),
        )?;
        if !pre_stop_delay.is_zero() && pre_stop_delay >= grace_period {
            return Err(UsageError(format!(
                "the pre-stop delay ({}) must be shorter than the grace period ({}), which it counts against",
                configured(pre_stop_delay),
                configured(grace_period)
            )));
        }
        let (final_signal, final_signal_source) = setting(
            cli.final_signal,
            environment,
            "GRACE_FINAL_SIGNAL",
            cli::parse_final_signal,
            Signal::KILL,
        )?;
        let (final_timeout, final_timeout_source) = setting(
            cli.final_timeout,
            environment,
            "GRACE_FINAL_TIMEOUT",
            cli::parse_duration,
            DEFAULT_FINAL_TIMEOUT,
        )?;
        if final_signal != Signal::KILL {
            check_final_timeout(final_timeout, grace_period, pre_stop_delay, cleanup_timeout)?;
        }
        let (log_format, log_format_source) = setting(
            cli.log_format,
            environment,
            "GRACE_LOG_FORMAT",
            cli::parse_log_format,
            Default::default(),
        )?;
        let (log_services, log_services_source) = setting(
            cli.log_services,
            environment,
            "GRACE_LOG_SERVICES",
            cli::parse_service_log,
            ServiceLog::Inherit,
        )?;
        let (restart_signal, restart_signal_source) = setting(
            cli.restart_signal.map(Some),
            environment,
            "GRACE_RESTART_SIGNAL",
            |text| cli::parse_restart_signal(text).map(Some),
            None,
        )?;
        if let Some(signal) = restart_signal.filter(|signal| stop_signals.contains(signal)) {
            return Err(UsageError(format!(
                "--restart-signal {signal} is also a stop signal: a signal either stops grace or restarts its command"
            )));
        }
        let (restart, restart_source) = setting(
            cli.restart,
            environment,
            "GRACE_RESTART",
            crate::restart::Policy::parse,
            crate::restart::Policy::Never,
        )?;
        let (restart_delay, restart_delay_source) = setting(
            cli.restart_delay,
            environment,
            "GRACE_RESTART_DELAY",
            cli::parse_duration,
            DEFAULT_RESTART_DELAY,
        )?;
        let (max_restarts, max_restarts_source) = setting(
            cli.max_restarts.map(Some),
            environment,
            "GRACE_MAX_RESTARTS",
            |text| cli::parse_count(text).map(Some),
            None,
        )?;
        let sources = Sources {
            grace_period: grace_period_source,
            cleanup_timeout: cleanup_timeout_source,
            stop_signals: stop_signals_source,
            rewrites: rewrites_source,
            process_group: process_group_source,
            pre_stop_delay: pre_stop_delay_source,
            final_signal: final_signal_source,
            final_timeout: final_timeout_source,
            log_format: log_format_source,
            log_services: log_services_source,
            restart_signal: restart_signal_source,
            restart: restart_source,
            restart_delay: restart_delay_source,
            max_restarts: max_restarts_source,
        };
        Ok(Config {
            command: cli.command,
            grace_period,
            cleanup_timeout,
            stop_signals,
            rewrites,
            process_group,
            success_exits,
            parent_death_signal: cli.parent_death_signal,
            warn_on_reap: cli.warn_on_reap,
            pre_stop_delay,
            final_signal,
            final_timeout,
            log_level,
            log_format,
            log_services,
            restart_signal,
            restart,
            restart_delay,
            max_restarts,
            ignored_stop_signals: 0,
            sources,
            in_kubernetes,
            services,
            withheld: VARIABLES
                .into_iter()
                .filter(|name| environment.var(name).is_some())
                .collect(),
        })
    }

    /// The shutdown's durations.
    pub fn timings(&self) -> Timings {
        Timings {
            grace_period: self.grace_period,
            cleanup_timeout: self.cleanup_timeout,
            pre_stop_delay: self.pre_stop_delay,
            final_timeout: (self.final_signal != Signal::KILL).then_some(self.final_timeout),
        }
    }

    /// Whether receiving `signal` starts the shutdown: a stop signal grace was not started with ignored.
    pub fn is_stop_signal(&self, signal: Signal) -> bool {
        self.stop_signals.contains(&signal) && !self.inherited_ignore(signal)
    }

    /// Whether `signal` is a stop signal grace was started with ignored (and so forwards instead).
    pub fn inherited_ignore(&self, signal: Signal) -> bool {
        self.ignored_stop_signals & (1 << (signal.number() - 1)) != 0
    }
}

/// A stop signal must reach the main child as something that can stop it: not SIGCHLD, which tells a process
/// that a child of its changed state (a handler would go and reap), nor SIGCONT, which grace sends with every
/// forwarded stop signal anyway. Either would turn every stop into nothing until the SIGKILL. A signal that a
/// process ignores or is stopped by unless it handles it (SIGWINCH is Apache httpd's graceful stop) is
/// accepted: `--explain` warns of it, and so does the stop when the main child does not handle it.
fn check_stop_rewrites(
    stop_signals: &[Signal],
    rewrites: &RewriteMap,
    source: Source,
) -> Result<(), UsageError> {
    for &from in stop_signals {
        let Some(to) = rewrites.apply(from).filter(|&to| to != from) else {
            continue;
        };
        let why = match to {
            Signal::CHLD => {
                "which tells a process that a child of its changed state, never to stop"
            }
            Signal::CONT => "which grace sends with every forwarded stop signal anyway",
            _ => continue,
        };
        // GRACE_REWRITE is the one variable for rewrites.
        let given = match source {
            Source::Environment(_) => "GRACE_REWRITE",
            _ => "--rewrite",
        };
        return Err(UsageError(format!(
            "{given} rewrites the stop signal {from} to {to}, {why}: every stop would do nothing until the \
             SIGKILL (forward a signal the command stops on, or {from}:0 to forward nothing)"
        )));
    }
    Ok(())
}

/// The final signal comes between a SIGTERM and the SIGKILL that follows it, so that a process has had its
/// chance to stop before it is asked for a dump: `--final-timeout` must be shorter than the part of the
/// grace period after the pre-stop delay (else it would go out with the forwarded stop signal, or before it),
/// and shorter than the cleanup timeout (else the rest of the tree would get it before its SIGTERM).
fn check_final_timeout(
    final_timeout: Duration,
    grace_period: Duration,
    pre_stop_delay: Duration,
    cleanup_timeout: Duration,
) -> Result<(), UsageError> {
    let after_delay = grace_period.saturating_sub(pre_stop_delay);
    if final_timeout >= after_delay {
        let what = if pre_stop_delay.is_zero() {
            format!("the grace period ({})", configured(grace_period))
        } else {
            format!(
                "the grace period less the pre-stop delay ({} − {})",
                configured(grace_period),
                configured(pre_stop_delay)
            )
        };
        return Err(UsageError(format!(
            "--final-timeout ({}) must be shorter than {what}: the final signal would go out with the \
             forwarded stop signal, leaving the child no time to stop",
            configured(final_timeout)
        )));
    }
    if final_timeout >= cleanup_timeout {
        return Err(UsageError(format!(
            "--final-timeout ({}) must be shorter than --cleanup-timeout ({}): the rest of the tree would get \
             the final signal before its SIGTERM",
            configured(final_timeout),
            configured(cleanup_timeout)
        )));
    }
    Ok(())
}

/// The command line's value if it gave one, else variable `name`'s, else `default`; and which it was.
fn setting<T>(
    given: Option<T>,
    environment: &dyn Environment,
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
    default: T,
) -> Result<(T, Source), UsageError> {
    if let Some(value) = given {
        return Ok((value, Source::CommandLine));
    }
    Ok(match from_environment(environment, name, parse)? {
        Some(value) => (value, Source::Environment(name)),
        None => (default, Source::Default),
    })
}

/// The value of variable `name`, parsed; `None` when it is unset or empty.
fn from_environment<T>(
    environment: &dyn Environment,
    name: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, UsageError> {
    match environment.var(name).filter(|value| !value.is_empty()) {
        Some(value) => parse(&value)
            .map(Some)
            .map_err(|reason| UsageError(format!("invalid value '{value}' in {name}: {reason}"))),
        None => Ok(None),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (use 1/0, true/false, yes/no or on/off)".to_string()),
    }
}

fn parse_level(text: &str) -> Result<crate::logging::LevelFilter, String> {
    match text.to_ascii_lowercase().as_str() {
        "error" => Ok(crate::logging::LevelFilter::Error),
        "warn" | "warning" => Ok(crate::logging::LevelFilter::Warn),
        "info" => Ok(crate::logging::LevelFilter::Info),
        "debug" => Ok(crate::logging::LevelFilter::Debug),
        "trace" => Ok(crate::logging::LevelFilter::Trace),
        _ => Err("not a log level (error, warn, info, debug or trace)".to_string()),
    }
}

/// tini: 0 fatal only, 1 (its default) warnings, 2 info, 3 debug, 4 trace. Its default maps to grace's,
/// which shows the lifecycle lines.
fn tini_verbosity(environment: &dyn Environment) -> crate::logging::LevelFilter {
    match environment
        .var("TINI_VERBOSITY")
        .and_then(|value| value.trim().parse::<u32>().ok())
    {
        Some(0) => crate::logging::LevelFilter::Error,
        Some(1 | 2) | None => crate::logging::LevelFilter::Info,
        Some(3) => crate::logging::LevelFilter::Debug,
        Some(_) => crate::logging::LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Request;
    use std::collections::HashMap;

    fn signal(name: &str) -> Signal {
        name.parse().unwrap()
    }

    struct FakeEnvironment(HashMap<&'static str, &'static str>);

    impl Environment for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|value| value.to_string())
        }
    }

    fn try_config(
        args: &[&str],
        environment: &[(&'static str, &'static str)],
    ) -> Result<Config, UsageError> {
        let Ok(Request::Run(cli)) = cli::parse(args.iter().skip(1)) else {
            panic!("{args:?}")
        };
        Config::new(
            *cli,
            &FakeEnvironment(environment.iter().copied().collect()),
        )
    }

    fn config(args: &[&str], environment: &[(&'static str, &'static str)]) -> Config {
        try_config(args, environment).unwrap()
    }

    #[test]
    fn a_command_is_needed_unless_a_services_file_may_give_one() {
        let err = try_config(&["grace"], &[]).unwrap_err();
        assert!(err.0.contains("no command given"), "{err}");
        assert!(try_config(&["grace", "--explain"], &[]).is_ok());
        let from_file = config(&["grace", "--services", "/etc/grace/services.toml"], &[]);
        assert_eq!(
            from_file.services.as_deref(),
            Some(std::path::Path::new("/etc/grace/services.toml"))
        );
        let from_environment = config(&["grace"], &[("GRACE_SERVICES", "/s.toml")]);
        assert_eq!(
            from_environment.services.as_deref(),
            Some(std::path::Path::new("/s.toml"))
        );
        assert!(from_environment.withheld.contains(&"GRACE_SERVICES"));
    }

    #[test]
    fn command_line_beats_environment_beats_default() {
        assert_eq!(
            config(&["grace", "x"], &[]).grace_period,
            DEFAULT_GRACE_PERIOD
        );
        assert_eq!(
            config(&["grace", "x"], &[("GRACE_PERIOD", "3s")]).grace_period,
            Duration::from_secs(3)
        );
        assert_eq!(
            config(&["grace", "x"], &[("GRACE_PERIOD", "")]).grace_period,
            DEFAULT_GRACE_PERIOD
        );
        assert_eq!(
            config(&["grace", "-t", "1", "x"], &[("GRACE_PERIOD", "3s")]).grace_period,
            Duration::from_secs(1)
        );
        let with_env = config(
            &["grace", "x"],
            &[
                ("GRACE_STOP_SIGNALS", "QUIT"),
                ("GRACE_CLEANUP_TIMEOUT", "1s"),
            ],
        );
        assert_eq!(with_env.stop_signals, [signal("QUIT")]);
        assert_eq!(with_env.cleanup_timeout, Duration::from_secs(1));
        assert!(config(&["grace", "x"], &[("GRACE_PROCESS_GROUP", "yes")]).process_group);
        assert_eq!(
            config(&["grace", "x"], &[("GRACE_LOG", "debug")]).log_level,
            crate::logging::LevelFilter::Debug
        );
        let services = |args: &[&str], environment: &[(&'static str, &'static str)]| {
            let config = config(args, environment);
            (config.log_services, config.sources.log_services)
        };
        assert_eq!(
            services(&["grace", "x"], &[]),
            (ServiceLog::Inherit, Source::Default)
        );
        assert_eq!(
            services(&["grace", "x"], &[("GRACE_LOG_SERVICES", "prefix")]),
            (
                ServiceLog::Prefix,
                Source::Environment("GRACE_LOG_SERVICES")
            )
        );
        assert_eq!(
            services(
                &["grace", "--log-services", "inherit", "x"],
                &[("GRACE_LOG_SERVICES", "prefix")]
            ),
            (ServiceLog::Inherit, Source::CommandLine)
        );
    }

    #[test]
    fn in_a_kubernetes_pod_the_grace_period_defaults_to_25_seconds() {
        let pod = ("KUBERNETES_SERVICE_HOST", "10.96.0.1");
        let in_pod = config(&["grace", "x"], &[pod]);
        assert_eq!(in_pod.grace_period, KUBERNETES_GRACE_PERIOD);
        assert_eq!(in_pod.sources.grace_period, Source::Kubernetes);
        assert!(in_pod.in_kubernetes);
        let set = config(&["grace", "x"], &[pod, ("GRACE_PERIOD", "12s")]);
        assert_eq!(set.grace_period, Duration::from_secs(12));
        assert_eq!(
            set.sources.grace_period,
            Source::Environment("GRACE_PERIOD")
        );
        let flag = config(&["grace", "-t", "3s", "x"], &[pod, ("GRACE_PERIOD", "12s")]);
        assert_eq!(flag.grace_period, Duration::from_secs(3));
        assert_eq!(flag.sources.grace_period, Source::CommandLine);
        let empty = config(&["grace", "x"], &[("KUBERNETES_SERVICE_HOST", "")]);
        assert_eq!(empty.grace_period, DEFAULT_GRACE_PERIOD);
        assert_eq!(empty.sources.grace_period, Source::Default);
    }

    #[test]
    fn pre_stop_delay_must_fit_in_the_grace_period() {
        assert!(try_config(&["grace", "-t", "5s", "--pre-stop-delay", "5s", "x"], &[]).is_err());
        let config = config(
            &["grace", "-t", "5s", "x"],
            &[("GRACE_PRE_STOP_DELAY", "2s")],
        );
        assert_eq!(config.timings().pre_stop_delay, Duration::from_secs(2));
        assert_eq!(
            config.timings().final_timeout,
            None,
            "SIGKILL as the final signal means no final step"
        );
        let config = super::tests::config(&["grace", "--final-signal", "QUIT", "x"], &[]);
        assert_eq!(config.timings().final_timeout, Some(DEFAULT_FINAL_TIMEOUT));
    }

    #[test]
    fn the_final_timeout_must_fit_between_sigterm_and_sigkill() {
        let error = |args: &[&str]| try_config(args, &[]).unwrap_err().0;
        // The default final timeout (1s) against a 1s grace period.
        let message = error(&["grace", "-t", "1s", "--final-signal", "QUIT", "x"]);
        assert!(message.contains("--final-timeout (1s)"), "{message}");
        assert!(error(&[
            "grace",
            "-t",
            "5s",
            "--pre-stop-delay",
            "4s",
            "--final-signal",
            "QUIT",
            "x"
        ])
        .contains("less the pre-stop delay"));
        let message = error(&[
            "grace",
            "--cleanup-timeout",
            "1s",
            "--final-signal",
            "QUIT",
            "x",
        ]);
        assert!(message.contains("--cleanup-timeout (1s)"), "{message}");
        // Fits: 8s, 2s cleanup, 1s final; and any final timeout with SIGKILL as the final signal.
        assert!(try_config(&["grace", "--final-signal", "QUIT", "x"], &[]).is_ok());
        assert!(try_config(&["grace", "-t", "1s", "--final-timeout", "5s", "x"], &[]).is_ok());
        let from_environment = try_config(
            &["grace", "-t", "2s", "x"],
            &[
                ("GRACE_FINAL_SIGNAL", "QUIT"),
                ("GRACE_FINAL_TIMEOUT", "2s"),
            ],
        );
        assert!(from_environment.unwrap_err().0.contains("--final-timeout"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        for (name, value) in [
            ("GRACE_PERIOD", "1x"),
            ("GRACE_STOP_SIGNALS", "KILL"),
            ("GRACE_REWRITE", "TERM"),
            ("GRACE_PROCESS_GROUP", "maybe"),
            ("GRACE_LOG", "loud"),
            ("GRACE_LOG_SERVICES", "tee"),
        ] {
            let err = try_config(&["grace", "x"], &[(name, value)]).unwrap_err();
            assert!(err.0.contains(name) && err.0.contains(value), "{err}");
        }
    }

    #[test]
    fn tini_variables_enable_group_and_verbosity() {
        assert!(config(&["grace", "true"], &[("TINI_KILL_PROCESS_GROUP", "")]).process_group);
        assert!(!config(&["grace", "true"], &[]).process_group);
        assert_eq!(
            config(&["grace", "true"], &[("TINI_VERBOSITY", "3")]).log_level,
            crate::logging::LevelFilter::Debug
        );
        assert_eq!(
            config(&["grace", "true"], &[("TINI_VERBOSITY", "0")]).log_level,
            crate::logging::LevelFilter::Error
        );
        assert_eq!(
            config(&["grace", "-q", "true"], &[("TINI_VERBOSITY", "3")]).log_level,
            crate::logging::LevelFilter::Warn
        );
        assert_eq!(
            config(&["grace", "-vv", "true"], &[]).log_level,
            crate::logging::LevelFilter::Trace
        );
    }

    #[test]
    fn rewrites_and_success_codes_are_applied() {
        let config = config(
            &[
                "grace",
                "-r",
                "TERM:QUIT",
                "-r",
                "HUP:0",
                "-e",
                "143",
                "--",
                "x",
            ],
            &[],
        );
        assert_eq!(config.rewrites.apply(Signal::TERM), Some(signal("QUIT")));
        assert_eq!(config.rewrites.apply(signal("HUP")), None);
        assert!(config.success_exits[143] && !config.success_exits[0]);
        assert!(config.is_stop_signal(Signal::TERM) && config.is_stop_signal(signal("INT")));
        assert!(!config.is_stop_signal(signal("QUIT")));
    }

    /// Every variable grace reads, but the pod's KUBERNETES_SERVICE_HOST, is one the command does not get:
    /// a setting added without its name in VARIABLES would reach a nested grace again.
    #[test]
    fn the_variables_withheld_are_those_grace_reads() {
        struct Recording(std::cell::RefCell<Vec<String>>);
        impl Environment for Recording {
            fn var(&self, name: &str) -> Option<String> {
                self.0.borrow_mut().push(name.to_string());
                None
            }
        }
        let Ok(Request::Run(cli)) = cli::parse(["x"]) else {
            panic!("`x` is a valid command line")
        };
        let recording = Recording(std::cell::RefCell::new(Vec::new()));
        let config = Config::new(*cli, &recording).unwrap();
        assert!(config.withheld.is_empty());
        let mut read: Vec<String> = recording.0.take();
        read.retain(|name| name != "KUBERNETES_SERVICE_HOST");
        read.sort();
        read.dedup();
        let mut variables: Vec<String> = VARIABLES.iter().map(|name| name.to_string()).collect();
        variables.sort();
        assert_eq!(read, variables);
        let set = config_with(&[
            ("GRACE_PERIOD", "3s"),
            ("TINI_VERBOSITY", ""),
            ("GRACE_OTHER", "1"),
        ]);
        assert_eq!(set.withheld, ["GRACE_PERIOD", "TINI_VERBOSITY"]);
    }

    fn config_with(environment: &[(&'static str, &'static str)]) -> Config {
        config(&["grace", "x"], environment)
    }

    #[test]
    fn option_parsing_stops_at_the_first_operand() {
        let without_separator = config(&["grace", "ls", "-l", "--grace-period", "x"], &[]);
        assert_eq!(
            without_separator.command,
            ["ls", "-l", "--grace-period", "x"]
        );
        let with_separator = config(&["grace", "--", "-weird", "-t"], &[]);
        assert_eq!(with_separator.command, ["-weird", "-t"]);
    }
}

/// Properties over arbitrary environments: building the configuration never panics, an error is one line
/// that names the variable, and what is accepted is consistent.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::cli::Request;
    use proptest::prelude::*;

    const VARIABLES: [&str; 12] = [
        "GRACE_PERIOD",
        "GRACE_CLEANUP_TIMEOUT",
        "GRACE_STOP_SIGNALS",
        "GRACE_REWRITE",
        "GRACE_PROCESS_GROUP",
        "GRACE_LOG",
        "GRACE_PRE_STOP_DELAY",
        "GRACE_FINAL_SIGNAL",
        "GRACE_FINAL_TIMEOUT",
        "GRACE_LOG_FORMAT",
        "GRACE_LOG_SERVICES",
        "TINI_VERBOSITY",
    ];

    struct Variables(Vec<(&'static str, String)>);

    impl Environment for Variables {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| value.clone())
        }
    }

    /// Plausible values and their near misses, or anything at all.
    fn value() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(
            &[
                "",
                "0",
                "1",
                "5",
                "s",
                "ms",
                "m",
                "-",
                ":",
                ",",
                "TERM",
                "QUIT",
                "KILL",
                "STOP",
                "RTMIN+",
                "yes",
                "no",
                "debug",
                "json",
                "prefix",
                "\n",
                "\u{fffd}",
                "99999999999999999999",
            ][..],
        );
        prop_oneof![
            3 => prop::collection::vec(pieces, 0..4).prop_map(|pieces| pieces.concat()),
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_environment_gives_a_config_or_one_line(
            values in prop::collection::vec((prop::sample::select(&VARIABLES[..]), value()), 0..6)
        ) {
            let Ok(Request::Run(cli)) = cli::parse(["x"]) else {
                return Err(TestCaseError::fail("`x` is a valid command line"));
            };
            match Config::new(*cli, &Variables(values.clone())) {
                Ok(config) => {
                    prop_assert!(config.pre_stop_delay.is_zero() || config.pre_stop_delay < config.grace_period);
                    prop_assert!(config.grace_period <= cli::MAX_DURATION);
                    prop_assert!(!config.stop_signals.is_empty());
                }
                Err(error) => {
                    let line = error.to_string();
                    prop_assert!(!line.contains(['\n', '\r']), "{line:?}");
                    prop_assert!(
                        values.iter().any(|(name, _)| line.contains(name))
                            || line.contains("pre-stop delay")
                            || line.contains("--final-timeout"),
                        "the error does not name the variable: {line:?}"
                    );
                }
            }
        }
    }
}
