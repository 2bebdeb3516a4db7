//! The command line: clap definitions and the value parsers for durations, signals and `FROM:TO` rewrites.

use std::ffi::OsString;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::signals::Signal;

/// The longest duration accepted anywhere: 366 days. Longer values are almost certainly a typo (a
/// millisecond count given as seconds) and would overflow the clock arithmetic they feed.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// A PID 1 for containers: forwards every signal, reaps every zombie, and shuts the whole process tree
/// down inside a grace period.
#[derive(Debug, Parser)]
#[command(
    name = "grace",
    version,
    about,
    override_usage = "grace [OPTIONS] [--] COMMAND [ARG]...",
    after_help = "DURATION: 500ms, 10s, 2m, 1m30s, or a bare number of seconds (at most 366 days).\n\
                  SIGNAL: a name (TERM, SIGTERM, term, RTMIN+3) or a number from 1 to 64."
)]
pub struct Cli {
    /// From the first stop signal to SIGKILL of everything that remains
    #[arg(short = 't', long, env = "GRACE_PERIOD", value_name = "DURATION", default_value = "8s",
          value_parser = parse_duration)]
    pub grace_period: Duration,

    /// Signals that start the shutdown
    #[arg(long, env = "GRACE_STOP_SIGNALS", value_name = "LIST", default_value = "TERM,INT",
          value_delimiter = ',', value_parser = parse_stop_signal)]
    pub stop_signals: Vec<Signal>,

    /// After the main child exits, how long the rest of the tree gets between SIGTERM and SIGKILL
    #[arg(long, env = "GRACE_CLEANUP_TIMEOUT", value_name = "DURATION", default_value = "2s",
          value_parser = parse_duration)]
    pub cleanup_timeout: Duration,

    /// Translate a received signal before forwarding it (TO of 0 drops it); repeatable
    #[arg(short = 'r', long, env = "GRACE_REWRITE", value_name = "FROM:TO", value_delimiter = ',',
          action = ArgAction::Append, value_parser = parse_rewrite)]
    pub rewrite: Vec<Rewrite>,

    /// Forward signals to the child's process group instead of the child alone
    #[arg(short = 'g', long, env = "GRACE_PROCESS_GROUP")]
    pub process_group: bool,

    /// Report exit status CODE as 0; repeatable
    #[arg(short = 'e', long, value_name = "CODE", action = ArgAction::Append)]
    pub success_exit: Vec<u8>,

    /// Signal grace receives when its parent exits (PR_SET_PDEATHSIG)
    #[arg(short = 'p', long, value_name = "SIGNAL", value_parser = parse_any_signal)]
    pub parent_death_signal: Option<Signal>,

    /// Accepted for tini compatibility: grace always becomes a subreaper when it is not PID 1
    #[arg(short = 's', long)]
    pub subreaper: bool,

    /// Log each reaped process other than the main child
    #[arg(short = 'w', long)]
    pub warn_on_reap: bool,

    /// More detail in the log; repeat for more
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Log level: error, warn, info, debug or trace (-v and -q take precedence)
    #[arg(
        long = "log-level",
        env = "GRACE_LOG",
        value_name = "LEVEL",
        hide = true
    )]
    pub log_level: Option<log::LevelFilter>,

    /// The command to run, and its arguments
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true, allow_hyphen_values = true,
          num_args = 1..)]
    pub command: Vec<OsString>,
}

/// One `--rewrite FROM:TO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub from: Signal,
    /// `None` drops the signal (TO of `0`).
    pub to: Option<Signal>,
}

/// `500ms`, `10s`, `2m`, `1m30s`, or a bare number of seconds; at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        let seconds: u64 = text.parse().map_err(|_| format!("'{text}' is too large"))?;
        Duration::from_secs(seconds)
    } else {
        humantime::parse_duration(text)
            .map_err(|_| format!("'{text}' is not a duration (use e.g. 500ms, 10s, 2m, 1m30s, or a number of seconds)"))?
    };
    if duration > MAX_DURATION {
        return Err(format!("'{text}' is longer than the maximum of 366 days"));
    }
    Ok(duration)
}

/// Any signal grace can send (SIGKILL included, as for `-p KILL`).
fn parse_any_signal(text: &str) -> Result<Signal, String> {
    text.parse::<Signal>().map_err(|err| err.to_string())
}

/// A signal grace can receive and forward: not SIGKILL or SIGSTOP, which never arrive, nor SIGCHLD, which
/// grace keeps for reaping.
fn parse_receivable_signal(text: &str) -> Result<Signal, String> {
    let signal = parse_any_signal(text)?;
    if !signal.is_catchable() {
        return Err(format!(
            "{signal} cannot be caught, so grace never receives it"
        ));
    }
    if signal == Signal::CHLD {
        return Err("SIGCHLD is how grace learns of exits; it is never forwarded".to_string());
    }
    Ok(signal)
}

fn parse_stop_signal(text: &str) -> Result<Signal, String> {
    parse_receivable_signal(text)
}

/// `FROM:TO`: FROM a signal grace receives, TO a signal to forward or `0` to drop.
fn parse_rewrite(text: &str) -> Result<Rewrite, String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not FROM:TO (e.g. TERM:QUIT, or HUP:0 to drop)"))?;
    let from = parse_receivable_signal(from)?;
    if to == "0" {
        return Ok(Rewrite { from, to: None });
    }
    if to.is_empty() {
        return Err(format!("'{text}' has no TO signal (use 0 to drop {from})"));
    }
    let to = parse_any_signal(to)?;
    if !to.is_catchable() {
        return Err(format!(
            "{to} cannot be a rewrite target: the child could not handle it"
        ));
    }
    Ok(Rewrite { from, to: Some(to) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(name: &str) -> Signal {
        name.parse().unwrap()
    }

    #[test]
    fn durations() {
        let cases = [
            ("0", 0),
            ("10", 10_000),
            ("500ms", 500),
            ("10s", 10_000),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in [
            "",
            "-1",
            "-1s",
            "1e9s",
            "10x",
            "s",
            "1.5.2s",
            "99999999999999999999",
            "367d",
            "1 fortnight",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
        assert!(parse_duration("366d").is_ok());
    }

    #[test]
    fn rewrites() {
        assert_eq!(
            parse_rewrite("TERM:QUIT"),
            Ok(Rewrite {
                from: Signal::TERM,
                to: Some(signal("QUIT"))
            })
        );
        assert_eq!(
            parse_rewrite("hup:0"),
            Ok(Rewrite {
                from: signal("HUP"),
                to: None
            })
        );
        assert_eq!(
            parse_rewrite("15:3"),
            Ok(Rewrite {
                from: Signal::TERM,
                to: Some(signal("QUIT"))
            })
        );
        for text in [
            "TERM",
            "TERM:",
            ":QUIT",
            "KILL:TERM",
            "TERM:KILL",
            "STOP:TERM",
            "TERM:STOP",
            "CHLD:TERM",
            "0:TERM",
            "TERM:65",
        ] {
            assert!(parse_rewrite(text).is_err(), "{text}");
        }
    }

    #[test]
    fn stop_signals_must_be_receivable() {
        assert!(parse_stop_signal("QUIT").is_ok());
        for text in ["KILL", "STOP", "CHLD", "0"] {
            assert!(parse_stop_signal(text).is_err(), "{text}");
        }
        assert_eq!(parse_any_signal("KILL"), Ok(Signal::KILL));
    }
}
