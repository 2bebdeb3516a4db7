//! The command line: options as typed (lexopt does the tokenising: `-t5s`, `-t 5s`, `--grace-period=5s`,
//! `-vv`, `--`), the help text, and the value parsers for durations, signals and `FROM:TO` rewrites.
//!
//! lexopt rather than clap: clap alone added ~120 KiB of code to a static binary whose whole budget is
//! 768 KiB, for a fixed set of options that fits in one screen of help.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use crate::signals::Signal;

/// The longest duration accepted anywhere: 366 days. Longer values are almost certainly a typo (a
/// millisecond count given as seconds) and would overflow the clock arithmetic they feed.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

pub const USAGE: &str = "grace [OPTIONS] [--] COMMAND [ARG]...";

pub const HELP: &str = "\
grace: a PID 1 for containers. Forwards every signal, reaps every zombie, and shuts the whole
process tree down inside a grace period.

Usage: grace [OPTIONS] [--] COMMAND [ARG]...
       grace [OPTIONS] --explain [[--] COMMAND [ARG]...]

Options (each also read from the environment variable shown):
  -t, --grace-period DURATION    from the first stop signal to SIGKILL of everything left [GRACE_PERIOD]
                                 (8s; 25s in a Kubernetes pod, where KUBERNETES_SERVICE_HOST is set)
      --stop-signals LIST        signals that start the shutdown [GRACE_STOP_SIGNALS] (TERM,INT)
      --cleanup-timeout DURATION after the main child exits, SIGTERM to SIGKILL of the rest [GRACE_CLEANUP_TIMEOUT] (2s)
  -r, --rewrite FROM:TO          forward signal FROM as TO (TO 0 drops it); repeatable [GRACE_REWRITE, comma-separated]
  -g, --process-group            forward to the child's process group [GRACE_PROCESS_GROUP, TINI_KILL_PROCESS_GROUP]
  -e, --success-exit CODE        report exit status CODE as 0; repeatable
  -p, --parent-death-signal SIG  signal grace gets when its parent exits (PR_SET_PDEATHSIG)
  -s, --subreaper                accepted for tini compatibility: grace is a subreaper whenever it is not PID 1
  -w, --warn-on-reap             log every reaped process other than the main child
      --pre-stop-delay DURATION  wait this long before forwarding the first stop signal, inside the grace
                                 period (load balancers stop routing meanwhile) [GRACE_PRE_STOP_DELAY] (0s)
      --final-signal SIGNAL      sent to what remains --final-timeout before each SIGKILL, e.g. QUIT for a
                                 thread dump; KILL means none [GRACE_FINAL_SIGNAL] (KILL)
      --final-timeout DURATION   how long before SIGKILL the final signal goes out [GRACE_FINAL_TIMEOUT] (1s)
      --log-format FORMAT        text or json (JSON Lines, one object per event) [GRACE_LOG_FORMAT] (text)
      --services FILE            run several services from FILE, the command as the main one; see
                                 docs/services.md [GRACE_SERVICES]
      --log-services MODE        the services' output: inherit (untouched) or prefix (each line as
                                 `NAME | line`, or JSON with --log-format json); a service's `log` key
                                 wins [GRACE_LOG_SERVICES] (inherit)
      --restart-signal SIGNAL    on this signal, end the command's tree as a shutdown would, then start the
                                 command again [GRACE_RESTART_SIGNAL] (none)
      --restart POLICY           when the main child exits on its own: never, on-failure or always start it
                                 again [GRACE_RESTART] (never)
      --restart-delay DURATION   wait before a restart after an exit; doubles while runs stay under 10s, to
                                 1m at most, 1s at least after the first [GRACE_RESTART_DELAY] (1s)
      --max-restarts N           after N restarts after exits, exit with the last status [GRACE_MAX_RESTARTS]
  -v, --verbose                  more detail; repeat for more [GRACE_LOG=error|warn|info|debug|trace, TINI_VERBOSITY]
  -q, --quiet                    warnings and errors only
      --explain                  print the configuration, where each value came from, and the shutdown
                                 timeline it implies, then exit (0, or 2 for a configuration grace refuses)
  -h, --help                     this help
  -V, --version                  the version

DURATION: 500ms, 10s, 2m, 1m30s, or a bare number of seconds; 0 to 366 days.
SIGNAL: a name (TERM, SIGTERM, term, RTMIN+3) or a number from 1 to 64.
Exit status: the main child's, or 128+N if signal N killed it; 2 usage, 126 not executable, 127 not found.
";

/// The options as given on the command line; `None` where an option was not given (the environment or
/// the default then decides, see [`crate::config`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cli {
    pub grace_period: Option<Duration>,
    pub stop_signals: Option<Vec<Signal>>,
    pub cleanup_timeout: Option<Duration>,
    pub rewrites: Vec<Rewrite>,
    pub process_group: bool,
    pub success_exits: Vec<u8>,
    pub parent_death_signal: Option<Signal>,
    pub warn_on_reap: bool,
    pub pre_stop_delay: Option<Duration>,
    pub final_signal: Option<Signal>,
    pub final_timeout: Option<Duration>,
    pub log_format: Option<LogFormat>,
    pub log_services: Option<ServiceLog>,
    pub restart_signal: Option<Signal>,
    pub restart: Option<crate::restart::Policy>,
    pub restart_delay: Option<Duration>,
    pub max_restarts: Option<u32>,
    pub verbose: u8,
    pub quiet: bool,
    /// Print the configuration and its timeline instead of running anything.
    pub explain: bool,
    /// `--services FILE`: several services, the command as the main one.
    pub services: Option<OsString>,
    /// The command and its arguments, byte-exact.
    pub command: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Boxed: the options are large, and the other requests carry nothing.
    Run(Box<Cli>),
    Help,
    Version,
}

/// A bad command line: one line naming the problem; grace exits with status 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    /// Always one line: a newline in a value the user gave is shown escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::logging::one_line(&self.0))
    }
}

impl std::error::Error for UsageError {}

/// One `--rewrite FROM:TO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub from: Signal,
    /// `None` drops the signal (TO of `0`).
    pub to: Option<Signal>,
}

/// Parses grace's arguments (without the program name). Option parsing stops at the first operand, so
/// `grace ls -l` and `grace -- ls -l` both run `ls -l`.
pub fn parse<I>(arguments: I) -> Result<Request, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(arguments);
    let mut cli = Cli::default();
    loop {
        let argument = parser.next().map_err(|err| UsageError(err.to_string()))?;
        let Some(argument) = argument else { break };
        match argument {
            Short('t') | Long("grace-period") => {
                cli.grace_period = Some(value(&mut parser, "--grace-period", parse_duration)?)
            }
            Long("stop-signals") => {
                cli.stop_signals = Some(value(&mut parser, "--stop-signals", parse_stop_signals)?)
            }
            Long("cleanup-timeout") => {
                cli.cleanup_timeout = Some(value(&mut parser, "--cleanup-timeout", parse_duration)?)
            }
            Short('r') | Long("rewrite") => {
                cli.rewrites
                    .extend(value(&mut parser, "--rewrite", parse_rewrites)?)
            }
            Short('g') | Long("process-group") => cli.process_group = true,
            Short('e') | Long("success-exit") => {
                cli.success_exits
                    .push(value(&mut parser, "--success-exit", parse_exit_code)?)
            }
            Short('p') | Long("parent-death-signal") => {
                cli.parent_death_signal = Some(value(
                    &mut parser,
                    "--parent-death-signal",
                    parse_any_signal,
                )?)
            }
            Short('s') | Long("subreaper") => {} // grace is always a subreaper when it is not PID 1
            Short('w') | Long("warn-on-reap") => cli.warn_on_reap = true,
            Long("pre-stop-delay") => {
                cli.pre_stop_delay = Some(value(&mut parser, "--pre-stop-delay", parse_duration)?)
            }
            Long("final-signal") => {
                cli.final_signal = Some(value(&mut parser, "--final-signal", parse_final_signal)?)
            }
            Long("final-timeout") => {
                cli.final_timeout = Some(value(&mut parser, "--final-timeout", parse_duration)?)
            }
            Long("log-format") => {
                cli.log_format = Some(value(&mut parser, "--log-format", parse_log_format)?)
            }
            Long("log-services") => {
                cli.log_services = Some(value(&mut parser, "--log-services", parse_service_log)?)
            }
            Long("restart-signal") => {
                cli.restart_signal = Some(value(
                    &mut parser,
                    "--restart-signal",
                    parse_restart_signal,
                )?)
            }
            Long("restart") => {
                cli.restart = Some(value(
                    &mut parser,
                    "--restart",
                    crate::restart::Policy::parse,
                )?)
            }
            Long("restart-delay") => {
                cli.restart_delay = Some(value(&mut parser, "--restart-delay", parse_duration)?)
            }
            Long("max-restarts") => {
                cli.max_restarts = Some(value(&mut parser, "--max-restarts", parse_count)?)
            }
            Short('v') | Long("verbose") => cli.verbose = cli.verbose.saturating_add(1),
            Short('q') | Long("quiet") => cli.quiet = true,
            Long("explain") => cli.explain = true,
            Long("services") => {
                cli.services = Some(parser.value().map_err(|err| UsageError(err.to_string()))?)
            }
            Short('h') | Long("help") => return Ok(Request::Help),
            Short('V') | Long("version") => return Ok(Request::Version),
            Value(program) => {
                cli.command.push(program);
                cli.command.extend(
                    parser
                        .raw_args()
                        .map_err(|err| UsageError(err.to_string()))?,
                );
                break;
            }
            _ => return Err(UsageError(argument.unexpected().to_string())),
        }
    }
    if cli.quiet && cli.verbose > 0 {
        return Err(UsageError(
            "--quiet and --verbose contradict each other".to_string(),
        ));
    }
    Ok(Request::Run(Box::new(cli)))
}

/// The option's value, parsed; the error names the option and the value.
fn value<T>(
    parser: &mut lexopt::Parser,
    option: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, UsageError> {
    let raw = parser.value().map_err(|err| UsageError(err.to_string()))?;
    let text = raw.to_str().ok_or_else(|| {
        UsageError(format!(
            "invalid value {raw:?} for {option}: not valid UTF-8"
        ))
    })?;
    parse(text)
        .map_err(|reason| UsageError(format!("invalid value '{text}' for {option}: {reason}")))
}

/// `500ms`, `10s`, `2m`, `1m30s`, or a bare number of seconds; at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        let seconds: u64 = text
            .parse()
            .map_err(|_| "too large (at most 366 days)".to_string())?;
        Duration::from_secs(seconds)
    } else {
        crate::time_text::parse_duration(text).ok_or_else(|| {
            "not a duration (use e.g. 500ms, 10s, 2m, 1m30s, or a number of seconds)".to_string()
        })?
    };
    if duration > MAX_DURATION {
        return Err("too large (at most 366 days)".to_string());
    }
    Ok(duration)
}

/// Any signal grace can send (SIGKILL included, as for `-p KILL`).
pub fn parse_any_signal(text: &str) -> Result<Signal, String> {
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

/// The restart signal: one grace receives and keeps for itself (it is never forwarded).
pub fn parse_restart_signal(text: &str) -> Result<Signal, String> {
    parse_receivable_signal(text)
}

/// A count, 0 to 4,294,967,295.
pub fn parse_count(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| "not a count (a whole number from 0)".to_string())
}

/// `TERM,INT`.
pub fn parse_stop_signals(text: &str) -> Result<Vec<Signal>, String> {
    text.split(',').map(parse_receivable_signal).collect()
}

/// `TERM:QUIT,HUP:0`.
pub fn parse_rewrites(text: &str) -> Result<Vec<Rewrite>, String> {
    text.split(',').map(parse_rewrite).collect()
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
        return Err(format!(
            "no TO signal (use {}:0 to drop {from})",
            text.trim_end_matches(':')
        ));
    }
    let to = parse_any_signal(to)?;
    if !to.is_catchable() {
        return Err(format!(
            "{to} cannot be a rewrite target: the child could not handle it"
        ));
    }
    Ok(Rewrite { from, to: Some(to) })
}

/// The signal sent before SIGKILL: any that can end or inform a process (SIGKILL itself means none);
/// not SIGSTOP, which would only freeze what is about to be killed.
pub fn parse_final_signal(text: &str) -> Result<Signal, String> {
    let signal = parse_any_signal(text)?;
    if signal == Signal::STOP {
        return Err("SIGSTOP would only freeze the processes about to be killed".to_string());
    }
    Ok(signal)
}

/// How grace writes its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line per event, for people: `[grace 2026-…Z] message`.
    #[default]
    Text,
    /// JSON Lines, for log pipelines: one object per event with `ts`, `level`, `event`, `msg` and fields.
    Json,
}

pub fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("not a log format (text or json)".to_string()),
    }
}

/// What becomes of a service's stdout and stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceLog {
    /// The service writes to grace's own stdout and stderr: no pipe, no copy.
    #[default]
    Inherit,
    /// grace reads them through pipes and writes each line prefixed with the service's name (one JSON object
    /// per line with `--log-format json`), on the same stream.
    Prefix,
}

pub fn parse_service_log(text: &str) -> Result<ServiceLog, String> {
    match text {
        "inherit" => Ok(ServiceLog::Inherit),
        "prefix" => Ok(ServiceLog::Prefix),
        _ => Err("not an output mode (inherit or prefix)".to_string()),
    }
}

/// An exit status, 0 to 255.
fn parse_exit_code(text: &str) -> Result<u8, String> {
    text.parse::<u8>()
        .map_err(|_| "not an exit status from 0 to 255".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(name: &str) -> Signal {
        name.parse().unwrap()
    }

    fn run(arguments: &[&str]) -> Result<Cli, UsageError> {
        match parse(arguments)? {
            Request::Run(cli) => Ok(*cli),
            other => panic!("{other:?}"),
        }
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
        assert_eq!(parse_stop_signals("QUIT"), Ok(vec![signal("QUIT")]));
        assert_eq!(
            parse_stop_signals("term,int"),
            Ok(vec![Signal::TERM, signal("INT")])
        );
        for text in ["KILL", "STOP", "CHLD", "0", "", "TERM,"] {
            assert!(parse_stop_signals(text).is_err(), "{text}");
        }
        assert_eq!(parse_any_signal("KILL"), Ok(Signal::KILL));
    }

    #[test]
    fn option_parsing_stops_at_the_first_operand() {
        assert_eq!(
            run(&["ls", "-l", "--grace-period", "x"]).unwrap().command,
            ["ls", "-l", "--grace-period", "x"]
        );
        assert_eq!(
            run(&["--", "-weird", "-t"]).unwrap().command,
            ["-weird", "-t"]
        );
        assert_eq!(
            run(&["-t", "3s", "--", "--", "x"]).unwrap().command,
            ["--", "x"]
        );
    }

    #[test]
    fn options_in_every_spelling() {
        let cli = run(&[
            "-t5s",
            "--cleanup-timeout=1s",
            "-gw",
            "-vv",
            "-e",
            "3",
            "-e143",
            "-r",
            "TERM:QUIT,HUP:0",
            "-p",
            "KILL",
            "-s",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.grace_period, Some(Duration::from_secs(5)));
        assert_eq!(cli.cleanup_timeout, Some(Duration::from_secs(1)));
        assert!(cli.process_group && cli.warn_on_reap);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.success_exits, [3, 143]);
        assert_eq!(cli.rewrites.len(), 2);
        assert_eq!(cli.parent_death_signal, Some(Signal::KILL));
        assert_eq!(parse(["-h", "x"]), Ok(Request::Help));
        assert_eq!(parse(["--version"]), Ok(Request::Version));
    }

    #[test]
    fn bad_command_lines_name_the_problem() {
        let cases = [
            (&["-t"][..], "missing argument for option '-t'"),
            (
                &["-t", "1x", "x"][..],
                "invalid value '1x' for --grace-period",
            ),
            (
                &["-e", "256", "x"][..],
                "invalid value '256' for --success-exit",
            ),
            (&["--frobnicate", "x"][..], "invalid option '--frobnicate'"),
            (&["-q", "-v", "x"][..], "contradict"),
            (&["-g=1", "x"][..], "unexpected argument"),
            (
                &["--log-services", "tee", "x"][..],
                "invalid value 'tee' for --log-services: not an output mode (inherit or prefix)",
            ),
        ];
        for (arguments, expected) in cases {
            let err = parse(arguments.iter().copied()).unwrap_err();
            assert!(err.0.contains(expected), "{arguments:?}: {err}");
            assert!(!err.0.contains('\n'), "{arguments:?}: {err}");
        }
    }
}

/// Properties over arbitrary input: the parsers never panic, an error is always one line, and whatever
/// follows the command name reaches the command byte for byte.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    /// Bounded so that the whole run takes a few seconds in CI.
    const CASES: u32 = 2_000;

    /// The pieces grace's command lines and values are made of, so that random concatenations reach deep
    /// into the parsers (a valid option followed by a malformed value), not only their first check.
    const PIECES: &[&str] = &[
        "-t",
        "--grace-period",
        "--grace-period=",
        "--cleanup-timeout",
        "--pre-stop-delay",
        "--final-timeout",
        "--stop-signals",
        "-r",
        "--rewrite=",
        "-e",
        "-p",
        "--final-signal",
        "--log-format",
        "--log-services",
        "-g",
        "-w",
        "-s",
        "-v",
        "-q",
        "-h",
        "-V",
        "--",
        "-",
        "=",
        ":",
        ",",
        "+",
        " ",
        "0",
        "1",
        "15",
        "64",
        "65",
        "-1",
        "256",
        "1e9",
        "99999999999999999999",
        "ms",
        "s",
        "m",
        "h",
        "d",
        "y",
        "SIG",
        "TERM",
        "term",
        "KILL",
        "STOP",
        "CHLD",
        "RTMIN",
        "RTMAX",
        "json",
        "text",
        "prefix",
        "inherit",
        "x",
        "\n",
        "\t",
        "\u{0}",
        "é",
        "\u{202e}",
    ];

    /// Text made of [`PIECES`], or anything at all.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(PIECES), 0..5)
                .prop_map(|pieces| pieces.concat()),
            any::<String>(),
        ]
    }

    /// One command-line word: text as above, or bytes that need not be UTF-8.
    fn word() -> impl Strategy<Value = OsString> {
        prop_oneof![
            4 => text().prop_map(OsString::from),
            1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
        ]
    }

    fn assert_one_line(error: &UsageError) -> Result<(), TestCaseError> {
        let line = error.to_string();
        prop_assert!(!line.is_empty(), "an empty error");
        prop_assert!(
            !line.contains(['\n', '\r']),
            "an error of more than one line: {line:?}"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn command_lines_never_panic_and_errors_are_one_line(
            arguments in prop::collection::vec(word(), 0..8)
        ) {
            match parse(arguments) {
                // Whether a command is needed depends on the environment too (GRACE_SERVICES): Config decides.
                Ok(Request::Run(_)) => {}
                Ok(Request::Help | Request::Version) => {}
                Err(error) => assert_one_line(&error)?,
            }
        }

        #[test]
        fn every_option_value_is_parsed_or_refused_in_one_line(option in prop::sample::select(&PIECES[..21]), value in word()) {
            if let Err(error) = parse([OsString::from(option), value, OsString::from("x")]) {
                assert_one_line(&error)?;
            }
        }

        #[test]
        fn value_parsers_never_panic_and_keep_their_bounds(text in text()) {
            if let Ok(duration) = parse_duration(&text) {
                prop_assert!(duration <= MAX_DURATION);
            }
            if let Ok(signal) = parse_any_signal(&text) {
                prop_assert!((1..=64).contains(&signal.number()));
            }
            if let Ok(signals) = parse_stop_signals(&text) {
                prop_assert!(signals.iter().all(|signal| signal.is_catchable() && *signal != Signal::CHLD));
            }
            if let Ok(rewrites) = parse_rewrites(&text) {
                for rewrite in rewrites {
                    prop_assert!(rewrite.from.is_catchable() && rewrite.from != Signal::CHLD);
                    if let Some(to) = rewrite.to {
                        prop_assert!(to.is_catchable());
                    }
                }
            }
            if let Ok(signal) = parse_final_signal(&text) {
                prop_assert_ne!(signal, Signal::STOP);
            }
            let _ = parse_log_format(&text);
            let _ = parse_service_log(&text);
            let _ = parse_exit_code(&text);
        }

        #[test]
        fn the_command_and_its_arguments_pass_through_byte_exact(
            command in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..6)
        ) {
            let mut arguments = vec![OsString::from("--")];
            arguments.extend(command.iter().cloned().map(OsString::from_vec));
            match parse(arguments) {
                Ok(Request::Run(cli)) => {
                    let passed: Vec<&[u8]> = cli.command.iter().map(|word| word.as_bytes()).collect();
                    prop_assert_eq!(passed, command.iter().map(Vec::as_slice).collect::<Vec<_>>());
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
