//! The validated configuration: the command line, its GRACE_* fallbacks, and tini's environment variables.

use std::ffi::OsString;
use std::time::Duration;

use crate::cli::Cli;
use crate::signals::{RewriteMap, Signal};

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
    pub log_level: log::LevelFilter,
}

/// The environment variables grace reads besides clap's `env` fallbacks; a seam for tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Config {
    pub fn new(cli: Cli, environment: &dyn Environment) -> Config {
        let mut rewrites = RewriteMap::default();
        for rewrite in &cli.rewrite {
            rewrites.set(rewrite.from, rewrite.to);
        }
        let mut success_exits = [false; 256];
        for code in &cli.success_exit {
            success_exits[usize::from(*code)] = true;
        }
        // tini enables these when the variable is set at all, whatever its value.
        let process_group =
            cli.process_group || environment.var("TINI_KILL_PROCESS_GROUP").is_some();
        let log_level = log_level(&cli, environment);
        Config {
            command: cli.command,
            grace_period: cli.grace_period,
            cleanup_timeout: cli.cleanup_timeout,
            stop_signals: cli.stop_signals,
            rewrites,
            process_group,
            success_exits,
            parent_death_signal: cli.parent_death_signal,
            warn_on_reap: cli.warn_on_reap,
            log_level,
        }
    }

    /// Whether receiving `signal` starts the shutdown.
    pub fn is_stop_signal(&self, signal: Signal) -> bool {
        self.stop_signals.contains(&signal)
    }
}

/// `-v`/`-q` first, then `GRACE_LOG`, then `TINI_VERBOSITY`, then the default, which shows lifecycle lines.
fn log_level(cli: &Cli, environment: &dyn Environment) -> log::LevelFilter {
    use log::LevelFilter;
    match (cli.quiet, cli.verbose) {
        (true, _) => return LevelFilter::Warn,
        (false, 1) => return LevelFilter::Debug,
        (false, 2..) => return LevelFilter::Trace,
        (false, 0) => {}
    }
    if let Some(level) = cli.log_level {
        return level;
    }
    // tini: 0 fatal only, 1 (its default) warnings, 2 info, 3 debug, 4 trace. Its default maps to grace's.
    match environment
        .var("TINI_VERBOSITY")
        .and_then(|value| value.trim().parse::<u32>().ok())
    {
        Some(0) => LevelFilter::Error,
        Some(1 | 2) | None => LevelFilter::Info,
        Some(3) => LevelFilter::Debug,
        Some(_) => LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
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

    fn config(args: &[&str], environment: &[(&'static str, &'static str)]) -> Config {
        let cli = Cli::try_parse_from(args).unwrap();
        Config::new(cli, &FakeEnvironment(environment.iter().copied().collect()))
    }

    #[test]
    fn tini_variables_enable_group_and_verbosity() {
        assert!(config(&["grace", "true"], &[("TINI_KILL_PROCESS_GROUP", "")]).process_group);
        assert!(!config(&["grace", "true"], &[]).process_group);
        assert_eq!(
            config(&["grace", "true"], &[("TINI_VERBOSITY", "3")]).log_level,
            log::LevelFilter::Debug
        );
        assert_eq!(
            config(&["grace", "true"], &[("TINI_VERBOSITY", "0")]).log_level,
            log::LevelFilter::Error
        );
        assert_eq!(
            config(&["grace", "-q", "true"], &[("TINI_VERBOSITY", "3")]).log_level,
            log::LevelFilter::Warn
        );
        assert_eq!(
            config(&["grace", "-vv", "true"], &[]).log_level,
            log::LevelFilter::Trace
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
