//! The service table: the services file's tables and the command after `--`, validated into services in
//! start order, with exactly one main service; every refusal names its `FILE:LINE`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{Entry, FileError, Table, Value};
use crate::cli::ServiceLog;
use crate::restart::Policy;
use crate::signals::Signal;

/// The services, in file order, which is the start order (and, reversed, the stop order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTable {
    pub services: Vec<Service>,
}

impl ServiceTable {
    /// Where the main service is: [`build`] makes exactly one service the main.
    pub fn main_index(&self) -> usize {
        self.services
            .iter()
            .position(|service| service.main)
            .unwrap_or(0)
    }
}

/// One service as the file declares it; `None` leaves a setting to grace's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The table's name, or, for a command after `--` without a main table, its program's file name.
    pub name: String,
    /// The line of its `[name]`; 0 for the command after `--` without a main table.
    pub line: usize,
    /// The argv, never empty: exec'd directly, PATH searched, no shell.
    pub command: Vec<OsString>,
    /// The service the container is about: its status is grace's, and the container stops with it.
    pub main: bool,
    /// Runs to completion (status 0) before the next service starts.
    pub once: bool,
    /// When the next service may start; without it, as soon as this one has started.
    pub ready: Option<Readiness>,
    /// How long `ready` may take.
    pub ready_timeout: Option<Duration>,
    /// Helpers default to always, the main to `--restart`.
    pub restart: Option<Policy>,
    /// How many restarts before its failure counts.
    pub max_restarts: Option<u32>,
    /// Its failing does not stop the container.
    pub optional: bool,
    /// The signal that asks it to stop (SIGKILL possible, never SIGSTOP).
    pub stop_signal: Option<Signal>,
    /// How long it has to stop, once its turn comes.
    pub stop_timeout: Option<Duration>,
    /// Added to grace's environment for this service.
    pub env: Vec<(OsString, OsString)>,
    /// What becomes of its stdout and stderr; `--log-services` decides without it.
    pub log: Option<ServiceLog>,
}

/// How grace knows that a service is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `tcp:HOST:PORT`: the port accepts a connection. An IPv6 host is kept without its brackets.
    Tcp { host: String, port: u16 },
    /// `file:PATH`: the file exists (a stale one is removed before the start). Always absolute.
    File(PathBuf),
    /// `notify`: the service sends `READY=1` to the socket named in its `NOTIFY_SOCKET`.
    Notify,
    /// An argv, run again until it exits 0. Never empty.
    Command(Vec<OsString>),
}

impl fmt::Display for Readiness {
    /// As it is written in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Readiness::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Readiness::File(path) => write!(f, "file:{}", path.display()),
            Readiness::Notify => f.write_str("notify"),
            Readiness::Command(argv) => {
                let words: Vec<_> = argv.iter().map(|word| word.to_string_lossy()).collect();
                write!(f, "{}", words.join(" "))
            }
        }
    }
}

/// The keys a service table may have, and what each takes, in the words of a message.
const KEYS: [(&str, &str); 12] = [
    (
        "command",
        "an array of strings: the program and its arguments",
    ),
    ("main", "true or false"),
    ("once", "true or false"),
    (
        "ready",
        "\"tcp:HOST:PORT\", \"file:/PATH\", \"notify\" or a command's argv",
    ),
    ("ready-timeout", "a duration such as \"30s\""),
    ("restart", "\"always\", \"on-failure\" or \"never\""),
    ("max-restarts", "an integer"),
    ("optional", "true or false"),
    ("stop-signal", "a signal's name, such as \"TERM\""),
    ("stop-timeout", "a duration such as \"10s\""),
    ("env", "an array of \"NAME=VALUE\" strings"),
    ("log", "\"inherit\" or \"prefix\""),
];

/// Validates the file's `tables` (read from `path_shown`) into the service table; `cmd` is the command
/// after `--` (the image's CMD), possibly empty. It runs as the main service: in the table that says
/// `main = true`, or after every table, named after its program, when no table does.
// Called once, at start-up: not inlined into its caller, whose frame and unwind table would grow
// with it (3 KiB more in the static binary, measured).
#[inline(never)]
pub fn build(
    tables: Vec<Table>,
    path_shown: &str,
    cmd: &[OsString],
) -> Result<ServiceTable, FileError> {
    let refuse = |line, message: String| FileError {
        path: path_shown.to_string(),
        line,
        message,
    };
    let mut services: Vec<Service> = Vec::with_capacity(tables.len() + 1);
    for table in &tables {
        let service = service(table).map_err(|(line, message)| refuse(line, message))?;
        if service.main {
            if let Some(first) = services.iter().find(|first| first.main) {
                let message = format!(
                    "[{}] says main = true, but [{}] (line {}) is already the main service",
                    service.name, first.name, first.line
                );
                return Err(refuse(line_of(table, "main"), message));
            }
        }
        services.push(service);
    }
    let main = tables
        .iter()
        .zip(&mut services)
        .find(|(_, service)| service.main);
    match main {
        Some((table, service)) if !cmd.is_empty() => {
            if !service.command.is_empty() {
                let message = format!(
                    "[{}] is the main service and has a command, and a command was given after -- \
                     (the image's CMD): drop one of them",
                    service.name
                );
                return Err(refuse(line_of(table, "command"), message));
            }
            service.command = cmd.to_vec();
        }
        Some((_, service)) if service.command.is_empty() => {
            let message = format!(
                "[{}] is the main service but has no command, and none was given after --",
                service.name
            );
            return Err(refuse(service.line, message));
        }
        Some(_) => {}
        None => {
            let Some(program) = cmd.first() else {
                let message = "no main service: no table says main = true, and no command was \
                               given after -- (the image's CMD)";
                return Err(refuse(0, message.into()));
            };
            let name = program_name(program);
            if let Some(table) = tables.iter().find(|table| table.name == name) {
                let message = format!(
                    "the command after -- is the main service, named '{name}' after its program, as \
                     is [{name}]: rename [{name}], or declare the main service in a table with \
                     main = true"
                );
                return Err(refuse(table.line, message));
            }
            let mut service = Service::new(name, 0);
            service.command = cmd.to_vec();
            service.main = true;
            services.push(service);
        }
    }
    Ok(ServiceTable { services })
}

impl Service {
    fn new(name: String, line: usize) -> Service {
        Service {
            name,
            line,
            command: Vec::new(),
            main: false,
            once: false,
            ready: None,
            ready_timeout: None,
            restart: None,
            max_restarts: None,
            optional: false,
            stop_signal: None,
            stop_timeout: None,
            env: Vec::new(),
            log: None,
        }
    }
}

/// A refusal: the line and the message.
type Refusal = (usize, String);

/// One table's service, checked on its own; the main's command may still come from after `--`.
fn service(table: &Table) -> Result<Service, Refusal> {
    let mut service = Service::new(table.name.clone(), table.line);
    for entry in &table.entries {
        set(&mut service, table, entry)?;
    }
    let contradiction = |first: &str, second: &str, why: &str| {
        let line = line_of(table, first).max(line_of(table, second));
        let message = format!(
            "{first} and {second} contradict each other in [{}]: {why}",
            table.name
        );
        Err((line, message))
    };
    if service.once && service.ready.is_some() {
        return contradiction(
            "once",
            "ready",
            "a once service is ready when it has exited 0",
        );
    }
    if service.once && service.main {
        let why = "the main service is what the container runs; once is for a step before it";
        return contradiction("once", "main", why);
    }
    if service.optional && service.main {
        let why = "the container stops when its main service does";
        return contradiction("optional", "main", why);
    }
    if service.once && service.restart == Some(Policy::Always) {
        let why =
            "a once service must end, and always starts it again (on-failure retries it until it \
                   succeeds)";
        return contradiction("once", "restart", why);
    }
    // A `once` task is waited for until it completes: ready-timeout bounds that wait.
    if service.ready_timeout.is_some() && service.ready.is_none() && !service.once {
        let message = format!(
            "ready-timeout without ready in [{}]: there is nothing to wait for",
            table.name
        );
        return Err((line_of(table, "ready-timeout"), message));
    }
    if service.command.is_empty() && !service.main {
        let message = format!(
            "[{}] has no command = [\"program\", \"argument\", …] (only the main service may take \
             the command after --)",
            table.name
        );
        return Err((table.line, message));
    }
    Ok(service)
}

/// Checks one entry and sets what it says.
fn set(service: &mut Service, table: &Table, entry: &Entry) -> Result<(), Refusal> {
    let invalid = |reason: &str| invalid(table, entry, reason);
    let duration = |text: &str| crate::cli::parse_duration(text).map_err(|reason| invalid(&reason));
    match (entry.key.as_str(), &entry.value) {
        ("command", Value::Strings(argv)) => service.command = command(argv).map_err(invalid)?,
        ("main", Value::Boolean(value)) => service.main = *value,
        ("once", Value::Boolean(value)) => service.once = *value,
        ("optional", Value::Boolean(value)) => service.optional = *value,
        ("ready", Value::String(text)) => {
            service.ready = Some(readiness(text).map_err(invalid)?);
        }
        ("ready", Value::Strings(argv)) => {
            service.ready = Some(Readiness::Command(command(argv).map_err(invalid)?));
        }
        ("ready-timeout", Value::String(text)) => service.ready_timeout = Some(duration(text)?),
        ("stop-timeout", Value::String(text)) => service.stop_timeout = Some(duration(text)?),
        ("restart", Value::String(text)) => {
            service.restart = Some(Policy::parse(text).map_err(|reason| invalid(&reason))?);
        }
        ("log", Value::String(text)) => {
            service.log =
                Some(crate::cli::parse_service_log(text).map_err(|reason| invalid(&reason))?);
        }
        ("max-restarts", Value::Integer(count)) => {
            let count = u32::try_from(*count).map_err(|_| invalid("from 0 to 4294967295"))?;
            service.max_restarts = Some(count);
        }
        ("stop-signal", Value::String(text)) => {
            let signal = text
                .parse::<Signal>()
                .map_err(|err| invalid(&err.to_string()))?;
            if signal == Signal::STOP {
                return Err(invalid("SIGSTOP pauses a process, it does not stop it"));
            }
            service.stop_signal = Some(signal);
        }
        ("env", Value::Strings(pairs)) => {
            for pair in pairs {
                let variable = environment_variable(pair).and_then(|(name, value)| {
                    match service.env.iter().any(|(first, _)| *first == name) {
                        true => Err("the variable is set twice"),
                        false => Ok((name, value)),
                    }
                });
                let variable =
                    variable.map_err(|reason| invalid(&format!("'{pair}': {reason}")))?;
                service.env.push(variable);
            }
        }
        (key, value) => {
            let message = match KEYS.iter().find(|(known, _)| *known == key) {
                Some((_, expected)) => format!(
                    "{key} in [{}] must be {expected}, not {}",
                    table.name,
                    value.kind()
                ),
                None => match closest_key(key) {
                    Some(known) => format!(
                        "unknown key '{key}' in [{}]; did you mean '{known}'?",
                        table.name
                    ),
                    None => format!("unknown key '{key}' in [{}]", table.name),
                },
            };
            return Err((entry.line, message));
        }
    }
    Ok(())
}

/// A value `entry` has the right type for, but not one its key takes, and why.
fn invalid(table: &Table, entry: &Entry, reason: &str) -> Refusal {
    let message = match &entry.value {
        Value::String(text) => format!(
            "invalid value '{text}' for {} in [{}]: {reason}",
            entry.key, table.name
        ),
        _ => format!("invalid {} in [{}]: {reason}", entry.key, table.name),
    };
    (entry.line, message)
}

/// A program and its arguments, as exec takes them.
fn command(argv: &[String]) -> Result<Vec<OsString>, &'static str> {
    match argv.first() {
        None => Err("an empty command: give the program and its arguments"),
        Some(program) if program.is_empty() => Err("the program's name is empty"),
        _ if argv.iter().any(|word| word.contains('\0')) => {
            Err("an argument cannot hold a NUL character")
        }
        _ => Ok(argv.iter().map(OsString::from).collect()),
    }
}

/// `NAME=VALUE`: a NAME without `=`, not empty; a VALUE of anything but NUL.
fn environment_variable(pair: &str) -> Result<(OsString, OsString), &'static str> {
    match pair.split_once('=') {
        _ if pair.contains('\0') => Err("a variable cannot hold a NUL character"),
        Some((name, value)) if !name.is_empty() => Ok((name.into(), value.into())),
        _ => Err("expected NAME=VALUE"),
    }
}

/// `tcp:HOST:PORT`, `file:PATH` or `notify`.
fn readiness(text: &str) -> Result<Readiness, &'static str> {
    if text == "notify" {
        return Ok(Readiness::Notify);
    }
    if let Some(path) = text.strip_prefix("file:") {
        if !path.starts_with('/') || path.contains('\0') {
            return Err("file: takes an absolute path, such as file:/run/app.ready");
        }
        return Ok(Readiness::File(PathBuf::from(path)));
    }
    let Some(address) = text.strip_prefix("tcp:") else {
        return Err(
            "expected \"tcp:HOST:PORT\", \"file:/PATH\", \"notify\", or an array: a command's argv",
        );
    };
    let (host, port) = address.rsplit_once(':').unwrap_or_default();
    let port = port.bytes().try_fold(0u16, |number, digit| match digit {
        b'0'..=b'9' => number.checked_mul(10)?.checked_add(u16::from(digit - b'0')),
        _ => None,
    });
    let port = port.filter(|number| *number > 0);
    let host = match host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
    {
        Some(ipv6) => ipv6.parse::<Ipv6Addr>().is_ok().then_some(ipv6),
        None => {
            let name = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
            let dotted_digits = host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
            let valid = !host.is_empty()
                && host.bytes().all(name)
                && (!dotted_digits || host.parse::<Ipv4Addr>().is_ok());
            valid.then_some(host)
        }
    };
    match (host, port) {
        (Some(host), Some(port)) => Ok(Readiness::Tcp {
            host: host.to_string(),
            port,
        }),
        _ => Err("expected tcp:HOST:PORT: a port from 1 to 65535, and a host name, an IPv4 address or an IPv6 address in brackets ([::1])"),
    }
}

/// The name of the main service when no table declares it: its program's file name.
fn program_name(program: &OsStr) -> String {
    let name = Path::new(program).file_name().unwrap_or(program);
    match name.to_string_lossy() {
        name if name.is_empty() => "main".to_string(),
        name => name.into_owned(),
    }
}

/// The line of `key` in `table`, or the table's own line.
fn line_of(table: &Table, key: &str) -> usize {
    table
        .entries
        .iter()
        .find(|entry| entry.key == key)
        .map_or(table.line, |entry| entry.line)
}

/// The known key nearest to `unknown`, if it is near enough to be a typo.
fn closest_key(unknown: &str) -> Option<&'static str> {
    let (distance, known) = KEYS
        .iter()
        .map(|(known, _)| (edit_distance(unknown, known), *known))
        .min_by_key(|(distance, _)| *distance)?;
    (distance <= 1 + unknown.chars().count() / 4).then_some(known)
}

/// Edits (insert, delete or replace a byte) from `a` to `b`: the Levenshtein distance, over one row.
fn edit_distance(a: &str, b: &str) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, a_byte) in a.bytes().enumerate() {
        let mut diagonal = i; // the previous row's cell before this one
        let mut left = i + 1; // this row's cell before this one
        for (cell, b_byte) in row.iter_mut().skip(1).zip(b.bytes()) {
            let up = *cell;
            left = (diagonal + usize::from(a_byte != b_byte))
                .min(up + 1)
                .min(left + 1);
            diagonal = up;
            *cell = left;
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::file::parse;
    use std::os::unix::ffi::OsStrExt;

    const PATH: &str = "/etc/grace/services.toml";

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn built(text: &str, cmd: &[&str]) -> Result<ServiceTable, FileError> {
        build(parse(PATH, text)?, PATH, &argv(cmd))
    }

    /// The one service of `[a]` followed by `lines`, with a command after `--` for a main.
    fn one(lines: &str) -> Result<Service, FileError> {
        let text = format!("[a]\n{lines}\n");
        let table = built(&text, &["/bin/cmd"])?;
        Ok(table.services[0].clone())
    }

    fn refused(text: &str, cmd: &[&str]) -> String {
        match built(text, cmd) {
            Ok(table) => panic!("accepted {text:?}: {table:?}"),
            Err(err) => err.to_string(),
        }
    }

    const EXAMPLE: &str = r#"[migrate]
command = ["/app/manage.py", "migrate", "--noinput"]
once = true

[logs]
command = ["/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"]

[db-proxy]
command = ["/cloud-sql-proxy", "--port", "5432", "proj:region:inst"]
ready = "tcp:127.0.0.1:5432"

[app]
main = true
ready = ["/app/healthcheck"]

[nginx]
command = ["nginx", "-g", "daemon off;"]
stop-signal = "QUIT"
"#;

    #[test]
    fn the_example_runs_the_cmd_as_the_main_service_in_its_place() {
        let cmd = ["gunicorn", "--bind", "127.0.0.1:8000", "app:app"];
        let table = built(EXAMPLE, &cmd).unwrap();
        let names: Vec<&str> = table
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["migrate", "logs", "db-proxy", "app", "nginx"]);
        assert_eq!(table.main_index(), 3);
        let app = &table.services[3];
        assert_eq!((app.main, app.line, &app.command), (true, 12, &argv(&cmd)));
        assert_eq!(
            app.ready,
            Some(Readiness::Command(argv(&["/app/healthcheck"])))
        );
        let migrate = &table.services[0];
        assert_eq!(
            (migrate.once, migrate.main, migrate.ready.as_ref()),
            (true, false, None)
        );
        assert_eq!(
            table.services[2].ready,
            Some(Readiness::Tcp {
                host: "127.0.0.1".to_string(),
                port: 5432
            })
        );
        assert_eq!(table.services[4].stop_signal, Some("QUIT".parse().unwrap()));
        assert_eq!(
            table.services.iter().filter(|service| service.main).count(),
            1
        );
        // Without a CMD, the main table has nothing to run.
        assert_eq!(
            refused(EXAMPLE, &[]),
            format!("{PATH}:12: [app] is the main service but has no command, and none was given after --")
        );
    }

    #[test]
    fn every_key_is_read_into_the_service() {
        let text = r#"
[worker]
command = ["/bin/worker", "--queue", "default"]
once = true
restart = "on-failure"
max-restarts = 5
optional = true
stop-signal = "KILL"
stop-timeout = "500ms"
env = ["A=1", "EMPTY=", "EQUALS=x=y"]
log = "prefix"
"#;
        let table = built(text, &["/bin/app"]).unwrap();
        let expected = Service {
            name: "worker".to_string(),
            line: 2,
            command: argv(&["/bin/worker", "--queue", "default"]),
            main: false,
            once: true,
            ready: None,
            ready_timeout: None,
            restart: Some(Policy::OnFailure),
            max_restarts: Some(5),
            optional: true,
            stop_signal: Some(Signal::KILL),
            stop_timeout: Some(Duration::from_millis(500)),
            env: vec![
                ("A".into(), "1".into()),
                ("EMPTY".into(), "".into()),
                ("EQUALS".into(), "x=y".into()),
            ],
            log: Some(ServiceLog::Prefix),
        };
        assert_eq!(table.services[0], expected);
        let ready =
            one("command = [\"x\"]\nready = \"notify\"\nready-timeout = \"1m30s\"").unwrap();
        assert_eq!(ready.ready, Some(Readiness::Notify));
        assert_eq!(ready.ready_timeout, Some(Duration::from_secs(90)));
        let inherit = one("command = [\"x\"]\nlog = \"inherit\"").unwrap();
        assert_eq!(inherit.log, Some(ServiceLog::Inherit));
        assert_eq!(one("command = [\"x\"]").unwrap().log, None);
    }

    #[test]
    fn the_cmd_is_the_last_service_without_a_main_table() {
        let table = built(
            "[logs]\ncommand = [\"logger\"]\n",
            &["/usr/bin/gunicorn", "app:app"],
        );
        let table = table.unwrap();
        assert_eq!(table.main_index(), 1);
        let main = &table.services[1];
        assert_eq!(
            (main.name.as_str(), main.line, main.main),
            ("gunicorn", 0, true)
        );
        assert_eq!(main.command, argv(&["/usr/bin/gunicorn", "app:app"]));
        assert_eq!((main.restart, main.ready.as_ref()), (None, None));

        // An empty file, or one of comments only, is the CMD alone.
        for text in ["", "# nothing yet\n"] {
            let table = built(text, &["nginx", "-g", "daemon off;"]).unwrap();
            assert_eq!(table.services.len(), 1);
            assert_eq!(
                (table.services[0].name.as_str(), table.main_index()),
                ("nginx", 0)
            );
        }
        // A program's name that is not UTF-8, or not a file name, still names the service.
        let odd = [OsString::from(std::ffi::OsStr::from_bytes(b"/bin/caf\xe9"))];
        let table = build(vec![], PATH, &odd).unwrap();
        assert_eq!(table.services[0].name, "caf\u{fffd}");
        assert_eq!(table.services[0].command, odd);
        let table = build(vec![], PATH, &[OsString::new()]).unwrap();
        assert_eq!(table.services[0].name, "main");
    }

    #[test]
    fn a_main_table_runs_its_own_command_only_without_a_cmd() {
        let text = "[app]\nmain = true\ncommand = [\"/bin/app\"]\n[after]\ncommand = [\"x\"]";
        let table = built(text, &[]).unwrap();
        assert_eq!(
            (table.main_index(), &table.services[0].command),
            (0, &argv(&["/bin/app"]))
        );
        assert_eq!(
            refused(text, &["/bin/other"]),
            format!(
                "{PATH}:3: [app] is the main service and has a command, and a command was given \
                 after -- (the image's CMD): drop one of them"
            )
        );
    }

    #[test]
    fn readiness_takes_a_port_a_file_notify_or_a_command() {
        let tcp = |host: &str, port| {
            Some(Readiness::Tcp {
                host: host.to_string(),
                port,
            })
        };
        let cases = [
            ("\"tcp:localhost:80\"", tcp("localhost", 80)),
            (
                "\"tcp:db_proxy.internal-1:1\"",
                tcp("db_proxy.internal-1", 1),
            ),
            ("\"tcp:10.0.0.1:65535\"", tcp("10.0.0.1", 65535)),
            ("\"tcp:[::1]:5432\"", tcp("::1", 5432)),
            ("\"tcp:[fe80::1:2]:8080\"", tcp("fe80::1:2", 8080)),
            (
                "\"file:/run/app.ready\"",
                Some(Readiness::File("/run/app.ready".into())),
            ),
            ("\"notify\"", Some(Readiness::Notify)),
            (
                "[\"check\", \"--quick\"]",
                Some(Readiness::Command(argv(&["check", "--quick"]))),
            ),
        ];
        for (value, expected) in cases {
            let service = one(&format!("command = [\"x\"]\nready = {value}")).unwrap();
            assert_eq!(service.ready, expected, "{value}");
            let written = value.trim_matches('"');
            if !written.starts_with('[') {
                assert_eq!(service.ready.unwrap().to_string(), written);
            }
        }
        assert_eq!(
            Readiness::Command(argv(&["check", "--quick"])).to_string(),
            "check --quick"
        );
    }

    #[test]
    fn signals_policies_and_counts_are_read_as_on_the_command_line() {
        for (written, number) in [
            ("TERM", 15),
            ("SIGQUIT", 3),
            ("15", 15),
            ("RTMIN+3", 37),
            ("kill", 9),
        ] {
            let service = one(&format!("command = [\"x\"]\nstop-signal = \"{written}\"")).unwrap();
            assert_eq!(
                service.stop_signal.map(Signal::number),
                Some(number),
                "{written}"
            );
        }
        for (written, policy) in [
            ("always", Policy::Always),
            ("on-failure", Policy::OnFailure),
            ("never", Policy::Never),
            ("no", Policy::Never),
        ] {
            let service = one(&format!("command = [\"x\"]\nrestart = \"{written}\"")).unwrap();
            assert_eq!(service.restart, Some(policy));
        }
        for count in [0, 7, u32::MAX] {
            let service = one(&format!("command = [\"x\"]\nmax-restarts = {count}")).unwrap();
            assert_eq!(service.max_restarts, Some(count));
        }
        // What does not contradict: a once step retried until it succeeds, an optional once step.
        let service =
            one("command = [\"x\"]\nonce = true\nrestart = \"on-failure\"\noptional = true");
        assert!(service.is_ok());
        let service = one("command = [\"x\"]\nmain = false\nonce = false\nready = \"notify\"");
        assert!(service.is_ok());
    }

    /// Each refusal of a table `[a]` (line 1) with `lines` from line 2, and a CMD: the line and message.
    #[test]
    fn refuses_each_mistake_at_its_line() {
        let tcp = "expected tcp:HOST:PORT: a port from 1 to 65535, and a host name, an IPv4 address or an \
                   IPv6 address in brackets ([::1])";
        let cases: &[(&str, usize, &str)] = &[
            // Keys.
            ("command = [\"x\"]\ncomand = [\"x\"]", 3, "unknown key 'comand' in [a]; did you mean 'command'?"),
            ("command = [\"x\"]\nready_timeout = \"1s\"", 3, "unknown key 'ready_timeout' in [a]; did you mean 'ready-timeout'?"),
            ("command = [\"x\"]\nrestarts = \"always\"", 3, "unknown key 'restarts' in [a]; did you mean 'restart'?"),
            ("command = [\"x\"]\nstopsignal = \"TERM\"", 3, "unknown key 'stopsignal' in [a]; did you mean 'stop-signal'?"),
            ("command = [\"x\"]\nmax-restart = 3", 3, "unknown key 'max-restart' in [a]; did you mean 'max-restarts'?"),
            ("command = [\"x\"]\nuser = \"nobody\"", 3, "unknown key 'user' in [a]"),
            ("command = [\"x\"]\nenvironment = []", 3, "unknown key 'environment' in [a]"),
            ("command = [\"x\"]\nlogs = \"prefix\"", 3, "unknown key 'logs' in [a]; did you mean 'log'?"),
            // Types.
            ("command = \"x\"", 2, "command in [a] must be an array of strings: the program and its arguments, not a string"),
            ("command = [\"x\"]\nmain = \"true\"", 3, "main in [a] must be true or false, not a string"),
            ("command = [\"x\"]\nonce = 1", 3, "once in [a] must be true or false, not an integer"),
            ("command = [\"x\"]\noptional = []", 3, "optional in [a] must be true or false, not an array"),
            ("command = [\"x\"]\nready = 8080", 3, "ready in [a] must be \"tcp:HOST:PORT\", \"file:/PATH\", \"notify\" or a command's argv, not an integer"),
            ("command = [\"x\"]\nready = \"notify\"\nready-timeout = 10", 4, "ready-timeout in [a] must be a duration such as \"30s\", not an integer"),
            ("command = [\"x\"]\nstop-timeout = true", 3, "stop-timeout in [a] must be a duration such as \"10s\", not a boolean"),
            ("command = [\"x\"]\nrestart = true", 3, "restart in [a] must be \"always\", \"on-failure\" or \"never\", not a boolean"),
            ("command = [\"x\"]\nmax-restarts = \"3\"", 3, "max-restarts in [a] must be an integer, not a string"),
            ("command = [\"x\"]\nstop-signal = 15", 3, "stop-signal in [a] must be a signal's name, such as \"TERM\", not an integer"),
            ("command = [\"x\"]\nenv = \"A=1\"", 3, "env in [a] must be an array of \"NAME=VALUE\" strings, not a string"),
            ("command = [\"x\"]\nlog = true", 3, "log in [a] must be \"inherit\" or \"prefix\", not a boolean"),
            ("command = [\"x\"]\nlog = [\"prefix\"]", 3, "log in [a] must be \"inherit\" or \"prefix\", not an array"),
            // Values.
            ("command = []", 2, "invalid command in [a]: an empty command: give the program and its arguments"),
            ("command = [\"\", \"x\"]", 2, "invalid command in [a]: the program's name is empty"),
            ("command = [\"x\", \"a\\u0000b\"]", 2, "invalid command in [a]: an argument cannot hold a NUL character"),
            ("command = [\"x\"]\nready = []", 3, "invalid ready in [a]: an empty command: give the program and its arguments"),
            ("command = [\"x\"]\nready = \"http://localhost/health\"", 3, "invalid value 'http://localhost/health' for ready in [a]: expected \"tcp:HOST:PORT\", \"file:/PATH\", \"notify\", or an array: a command's argv"),
            ("command = [\"x\"]\nready = \"file:run/ready\"", 3, "invalid value 'file:run/ready' for ready in [a]: file: takes an absolute path, such as file:/run/app.ready"),
            ("command = [\"x\"]\nready = \"file:\"", 3, "invalid value 'file:' for ready in [a]: file: takes an absolute path, such as file:/run/app.ready"),
            ("command = [\"x\"]\nready = \"NOTIFY\"", 3, "invalid value 'NOTIFY' for ready in [a]: expected \"tcp:HOST:PORT\", \"file:/PATH\", \"notify\", or an array: a command's argv"),
            ("command = [\"x\"]\nready-timeout = \"soon\"\nready = \"notify\"", 3, "invalid value 'soon' for ready-timeout in [a]: not a duration (use e.g. 500ms, 10s, 2m, 1m30s, or a number of seconds)"),
            ("command = [\"x\"]\nstop-timeout = \"400days\"", 3, "invalid value '400days' for stop-timeout in [a]: too large (at most 366 days)"),
            ("command = [\"x\"]\nrestart = \"sometimes\"", 3, "invalid value 'sometimes' for restart in [a]: not a restart policy (never, on-failure or always)"),
            ("command = [\"x\"]\nmax-restarts = -1", 3, "invalid max-restarts in [a]: from 0 to 4294967295"),
            ("command = [\"x\"]\nmax-restarts = 4294967296", 3, "invalid max-restarts in [a]: from 0 to 4294967295"),
            ("command = [\"x\"]\nstop-signal = \"STOP\"", 3, "invalid value 'STOP' for stop-signal in [a]: SIGSTOP pauses a process, it does not stop it"),
            ("command = [\"x\"]\nstop-signal = \"19\"", 3, "invalid value '19' for stop-signal in [a]: SIGSTOP pauses a process, it does not stop it"),
            ("command = [\"x\"]\nstop-signal = \"TERMINATE\"", 3, "invalid value 'TERMINATE' for stop-signal in [a]: unknown signal 'TERMINATE' (use a name such as TERM or a number 1-64)"),
            ("command = [\"x\"]\nlog = \"tee\"", 3, "invalid value 'tee' for log in [a]: not an output mode (inherit or prefix)"),
            ("command = [\"x\"]\nlog = \"Prefix\"", 3, "invalid value 'Prefix' for log in [a]: not an output mode (inherit or prefix)"),
            ("command = [\"x\"]\nenv = [\"A\"]", 3, "invalid env in [a]: 'A': expected NAME=VALUE"),
            ("command = [\"x\"]\nenv = [\"=1\"]", 3, "invalid env in [a]: '=1': expected NAME=VALUE"),
            ("command = [\"x\"]\nenv = [\"A=1\", \"B=2\", \"A=3\"]", 3, "invalid env in [a]: 'A=3': the variable is set twice"),
            ("command = [\"x\"]\nenv = [\"A=\\u0000\"]", 3, "invalid env in [a]: 'A=\0': a variable cannot hold a NUL character"),
            // Contradictions, at the later of the two keys.
            ("command = [\"x\"]\nonce = true\nready = \"notify\"", 4, "once and ready contradict each other in [a]: a once service is ready when it has exited 0"),
            ("ready = \"notify\"\nonce = true\ncommand = [\"x\"]", 3, "once and ready contradict each other in [a]: a once service is ready when it has exited 0"),
            ("main = true\nonce = true", 3, "once and main contradict each other in [a]: the main service is what the container runs; once is for a step before it"),
            ("optional = true\nmain = true", 3, "optional and main contradict each other in [a]: the container stops when its main service does"),
            ("command = [\"x\"]\nonce = true\nrestart = \"always\"", 4, "once and restart contradict each other in [a]: a once service must end, and always starts it again (on-failure retries it until it succeeds)"),
            ("command = [\"x\"]\nready-timeout = \"5s\"", 3, "ready-timeout without ready in [a]: there is nothing to wait for"),
            ("once = true", 1, "[a] has no command = [\"program\", \"argument\", …] (only the main service may take the command after --)"),
            ("main = false", 1, "[a] has no command = [\"program\", \"argument\", …] (only the main service may take the command after --)"),
        ];
        for (lines, line, message) in cases {
            let expected = format!("{PATH}:{line}: {message}");
            assert_eq!(
                refused(&format!("[a]\n{lines}\n"), &["/bin/cmd"]),
                expected,
                "{lines}"
            );
        }
        let tcp_cases = [
            "tcp:localhost",
            "tcp:localhost:",
            "tcp::80",
            "tcp:localhost:0",
            "tcp:localhost:65536",
            "tcp:localhost:+80",
            "tcp:localhost:http",
            "tcp:::1:5432",
            "tcp:[::1]5432",
            "tcp:[::g]:80",
            "tcp:[]:80",
            "tcp:[127.0.0.1]:80",
            "tcp:999.1.1.1:80",
            "tcp:10.0.0:80",
            "tcp:a b:80",
            "tcp:host/x:80",
        ];
        for written in tcp_cases {
            let lines = format!("command = [\"x\"]\nready = \"{written}\"");
            let expected = format!("{PATH}:3: invalid value '{written}' for ready in [a]: {tcp}");
            assert_eq!(
                refused(&format!("[a]\n{lines}\n"), &["/bin/cmd"]),
                expected,
                "{written}"
            );
        }
    }

    #[test]
    fn refuses_a_main_service_that_is_missing_or_not_alone() {
        let two = "[a]\nmain = true\n[b]\ncommand = [\"x\"]\n\nmain = true\n";
        assert_eq!(
            refused(two, &["/bin/app"]),
            format!("{PATH}:6: [b] says main = true, but [a] (line 1) is already the main service")
        );
        let none = "[a]\ncommand = [\"x\"]\n";
        let message =
            "no main service: no table says main = true, and no command was given after -- \
                       (the image's CMD)";
        assert_eq!(refused(none, &[]), format!("{PATH}: {message}"));
        assert_eq!(refused("", &[]), format!("{PATH}: {message}"));
        let clash =
            "[logs]\ncommand = [\"x\"]\n\n[gunicorn]\ncommand = [\"gunicorn\", \"--check\"]\n";
        assert_eq!(
            refused(clash, &["/usr/local/bin/gunicorn", "app:app"]),
            format!(
                "{PATH}:4: the command after -- is the main service, named 'gunicorn' after its \
                 program, as is [gunicorn]: rename [gunicorn], or declare the main service in a \
                 table with main = true"
            )
        );
    }

    #[test]
    fn a_typo_is_named_only_when_close() {
        let cases = [
            ("comand", Some("command")),
            ("commnad", Some("command")),
            ("ready-timout", Some("ready-timeout")),
            ("stop_timeout", Some("stop-timeout")),
            ("optinal", Some("optional")),
            ("mian", Some("main")),
            ("ones", Some("once")),
            ("x", None),
            ("user", None),
            ("timeout", None),
            ("dependencies", None),
        ];
        for (unknown, expected) in cases {
            assert_eq!(closest_key(unknown), expected, "{unknown}");
        }
        assert_eq!(edit_distance("", "env"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}

/// Properties over arbitrary tables of known and unknown keys and values of every type, and arbitrary
/// commands after `--`: building never panics, and a table it accepts has exactly one main service, a
/// command for every service, and the file's order.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let meaningful = vec![
            "notify",
            "tcp:localhost:80",
            "tcp:[::1]:0",
            "file:/x",
            "file:x",
            "1s",
            "1m30s",
            "bogus",
            "always",
            "on-failure",
            "never",
            "TERM",
            "STOP",
            "KILL",
            "A=1",
            "",
        ];
        let word = "[a-z/=]{0,4}";
        prop_oneof![
            prop::sample::select(meaningful).prop_map(|text| Value::String(text.to_string())),
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::Integer),
            (-1i64..5).prop_map(Value::Integer),
            any::<bool>().prop_map(Value::Boolean),
            prop::collection::vec(word, 0..3).prop_map(Value::Strings),
        ]
    }

    /// A value `key` takes, most of the time.
    fn value_for(key: &'static str) -> BoxedStrategy<Value> {
        let string = |choices: Vec<&'static str>| {
            prop::sample::select(choices).prop_map(|text| Value::String(text.to_string()))
        };
        let valid = match key {
            "command" => prop::collection::vec("[a-z/]{1,4}", 1..3)
                .prop_map(Value::Strings)
                .boxed(),
            "main" | "once" | "optional" => any::<bool>().prop_map(Value::Boolean).boxed(),
            "ready" => string(vec!["notify", "tcp:localhost:80", "file:/run/ready"]).boxed(),
            "ready-timeout" | "stop-timeout" => string(vec!["1s", "500ms"]).boxed(),
            "restart" => string(vec!["always", "on-failure", "never"]).boxed(),
            "max-restarts" => (0i64..5).prop_map(Value::Integer).boxed(),
            "stop-signal" => string(vec!["TERM", "KILL", "STOP"]).boxed(),
            "log" => string(vec!["inherit", "prefix", "tee"]).boxed(),
            "env" => prop::collection::vec("[A-Z]{1,2}=[a-z]{0,2}", 0..3)
                .prop_map(Value::Strings)
                .boxed(),
            _ => value().boxed(),
        };
        prop_oneof![6 => valid, 1 => value()].boxed()
    }

    fn entry() -> impl Strategy<Value = (&'static str, Value)> {
        let mut keys: Vec<&'static str> = KEYS.iter().map(|(key, _)| *key).collect();
        keys.extend(["comand", "x"]);
        prop::sample::select(keys).prop_flat_map(|key| (Just(key), value_for(key)))
    }

    /// Tables of a few entries, most with a command first.
    fn tables() -> impl Strategy<Value = Vec<Table>> {
        let command = prop::option::weighted(0.8, value_for("command"));
        let table = (
            prop::sample::select(vec!["a", "b", "c", "app", "sh"]),
            command,
            prop::collection::vec(entry(), 0..4),
        );
        prop::collection::vec(table, 0..4).prop_map(|tables| {
            let tables = tables.into_iter().enumerate();
            tables
                .map(|(index, (name, command, entries))| {
                    let entries = command
                        .map(|command| ("command", command))
                        .into_iter()
                        .chain(entries);
                    Table {
                        name: format!("{name}{index}"),
                        line: index * 10 + 1,
                        entries: entries
                            .enumerate()
                            .map(|(number, (key, value))| Entry {
                                key: key.to_string(),
                                line: index * 10 + number + 2,
                                value,
                            })
                            .collect(),
                    }
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn an_accepted_table_has_one_main_and_every_command(
            tables in tables(),
            cmd in prop::collection::vec("[a-z/]{0,6}", 0..3),
        ) {
            let cmd: Vec<OsString> = cmd.iter().map(OsString::from).collect();
            let names: Vec<String> = tables.iter().map(|table| table.name.clone()).collect();
            let Ok(table) = build(tables, "f", &cmd) else { return Ok(()) };
            let mains: Vec<usize> = (0..table.services.len()).filter(|index| table.services[*index].main).collect();
            prop_assert_eq!(mains, vec![table.main_index()]);
            let main = &table.services[table.main_index()];
            prop_assert!(cmd.is_empty() || main.command == cmd);
            for service in &table.services {
                prop_assert!(!service.command.is_empty());
                // The CMD is run as given, as without a file; a table's program is never empty.
                prop_assert!(service.command == cmd || !service.command[0].is_empty());
                prop_assert!(!(service.once && service.ready.is_some()));
                prop_assert!(!(service.main && (service.once || service.optional)));
                prop_assert!(service.ready_timeout.is_none() || service.ready.is_some() || service.once);
                prop_assert!(service.stop_signal != Some(Signal::STOP));
            }
            let built: Vec<String> = table.services.iter().map(|service| service.name.clone()).collect();
            prop_assert_eq!(&built[..names.len()], &names[..]);
            prop_assert!(built.len() == names.len() || (built.len() == names.len() + 1 && main.line == 0));
        }
    }
}
