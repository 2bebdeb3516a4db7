//! The service table: the services file's tables and the command after `--`, validated into services in
//! start order, with exactly one main service; every refusal names its `FILE:LINE`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{Entry, FileError, Table, Value};
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
    pub main: bool,
    /// Runs to completion (status 0) before the next service starts.
    pub once: bool,
    /// When the next service may start; without it, as soon as this one has started.
    pub ready: Option<Readiness>,
    pub ready_timeout: Option<Duration>,
    /// Helpers default to always, the main to `--restart`.
    pub restart: Option<Policy>,
    pub max_restarts: Option<u32>,
    /// Its failing does not stop the container.
    pub optional: bool,
    pub stop_signal: Option<Signal>,
    pub stop_timeout: Option<Duration>,
    /// Added to grace's environment for this service.
    pub env: Vec<(OsString, OsString)>,
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
const KEYS: [(&str, &str); 11] = [
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
];

/// Validates the file's `tables` (read from `path_shown`) into the service table; `cmd` is the command
/// after `--` (the image's CMD), possibly empty. It runs as the main service: in the table that says
/// `main = true`, or after every table, named after its program, when no table does.
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
            "a once service must end, and always starts it again (on-failure retries it until \
                   it succeeds)";
        return contradiction("once", "restart", why);
    }
    if service.ready_timeout.is_some() && service.ready.is_none() {
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
                let (name, value) = environment_variable(pair).map_err(invalid)?;
                if service.env.iter().any(|(first, _)| *first == name) {
                    return Err(invalid(&format!("{pair}: the variable is set twice")));
                }
                service.env.push((name, value));
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
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|number| *number > 0 && !port.starts_with('+'));
    let host = match host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
    {
        Some(ipv6) => ipv6.parse::<Ipv6Addr>().is_ok().then_some(ipv6),
        None => {
            let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
            let dotted_digits = host.chars().all(|c| c.is_ascii_digit() || c == '.');
            let valid = !host.is_empty()
                && host.chars().all(name)
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
