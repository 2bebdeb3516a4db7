//! What grace tells an operator about a shutdown, and the knobs that shape it (issue #7): the survivor
//! diagnosis at the deadline (and at -v when the cleanup starts), the JSON log format and its events, the
//! pre-stop delay, the final signal before SIGKILL, and repeated stop signals.
//!
//! Log lines are read as what they are: JSON lines are parsed (`tests/common/json.rs`) and their fields
//! compared exactly; text lines are matched whole. Times are measured from just before the test sends the
//! stop signal: grace's clock starts later, so a lower bound measured that way is exact. Upper bounds are
//! generous ([`LATE`]).

mod common;

use std::time::Duration;

use common::json::Json;
use common::{
    assert_on_time, child, child_script, pid_in, run_to_end, stop, wait_for_state, Grace, Line,
    Mode, Running, Stream, LATE, MODES,
};

const SECOND: Duration = Duration::from_secs(1);

/// The longest command line a diagnosis shows (src/diagnosis.rs).
const MAX_COMMAND_LINE: usize = 120;

/// Who grace names as the sender of a signal the test sent: in PID-1 mode the test is outside the
/// namespace (pid 0), as a subreaper it is the test process.
fn test_pid_seen_by_grace(mode: Mode) -> i64 {
    match mode {
        Mode::Pid1 => 0,
        Mode::Subreaper => i64::from(std::process::id()),
    }
}

/// grace's pid as its children see it.
fn grace_pid_inside(grace: &Running) -> i32 {
    match grace.mode() {
        Mode::Pid1 => 1,
        Mode::Subreaper => grace.grace_pid(),
    }
}

#[test]
fn the_json_parser_accepts_json_and_nothing_else() {
    let parsed =
        Json::parse(r#" {"a":[1,-2.5e3,true,null],"b":"x\"\\\/\n\u00e9\ud83d\ude00","c":{}} "#);
    assert_eq!(
        parsed,
        Ok(Json::Object(vec![
            (
                "a".into(),
                Json::Array(vec![
                    Json::Number(1.0),
                    Json::Number(-2500.0),
                    Json::Bool(true),
                    Json::Null
                ])
            ),
            ("b".into(), Json::String("x\"\\/\né😀".into())),
            ("c".into(), Json::Object(vec![])),
        ]))
    );
    for bad in [
        "",
        "{",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":01}",
        "{\"a\":1}x",
        "{\"a\":\"\t\"}",
        "{'a':1}",
        "{\"a\":1,\"a\":2}",
        "[1 2]",
        "\"\\x\"",
    ] {
        assert!(Json::parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn timestamps_are_read_as_utc() {
    for (text, seconds) in [
        ("1970-01-01T00:00:00.000Z", 0),
        ("2000-02-29T00:00:00.005Z", 951_782_400),
        ("2026-11-28T15:04:07.123Z", 1_795_878_247),
    ] {
        assert!(is_utc_millisecond_timestamp(text), "{text}");
        assert_eq!(epoch_seconds(text), seconds, "{text}");
    }
    for bad in [
        "2026-11-28T15:04:07Z",
        "2026-11-28T15:04:07.123+00:00",
        "2026-11-28 15:04:07.123Z",
        "2026-13-28T15:04:07.123Z",
    ] {
        assert!(!is_utc_millisecond_timestamp(bad), "{bad}");
    }
}

// ---- grace's JSON log ------------------------------------------------------------------------------------

/// One line of grace's JSON log: its fields, and the line as read (with when it was read).
#[derive(Clone, Debug)]
struct Entry {
    line: Line,
    fields: Vec<(String, Json)>,
}

impl Entry {
    /// Parses a line of grace's JSON log and checks the members every line has: `ts` (RFC 3339, UTC, to the
    /// millisecond), `level`, `event` and `msg`, the first four, in that order.
    fn parse(line: &Line) -> Entry {
        let fields = match Json::parse(&line.text) {
            Ok(Json::Object(fields)) => fields,
            Ok(other) => panic!("not a JSON object: {other:?} in {:?}", line.text),
            Err(err) => panic!("not JSON ({err}): {:?}", line.text),
        };
        let keys: Vec<&str> = fields.iter().take(4).map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["ts", "level", "event", "msg"],
            "first members of {:?}",
            line.text
        );
        let entry = Entry {
            line: line.clone(),
            fields,
        };
        let ts = entry.str("ts");
        assert!(
            is_utc_millisecond_timestamp(ts),
            "ts {ts:?} in {:?}",
            line.text
        );
        let level = entry.str("level");
        assert!(
            ["error", "warn", "info", "debug", "trace"].contains(&level),
            "level {level:?} in {:?}",
            line.text
        );
        let event = entry.str("event");
        assert!(
            !event.is_empty()
                && event
                    .chars()
                    .all(|character| character.is_ascii_lowercase() || character == '_'),
            "event {event:?} in {:?}",
            line.text
        );
        entry.str("msg");
        entry
    }

    fn get(&self, key: &str) -> Option<&Json> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    fn event(&self) -> &str {
        self.str("event")
    }

    fn str(&self, key: &str) -> &str {
        match self.get(key) {
            Some(Json::String(text)) => text,
            other => panic!(
                "{key}: expected a string, found {other:?} in {:?}",
                self.line.text
            ),
        }
    }

    /// An integer field (a JSON number with no fraction).
    fn int(&self, key: &str) -> i64 {
        match self.get(key) {
            Some(Json::Number(number)) if number.fract() == 0.0 => *number as i64,
            other => panic!(
                "{key}: expected an integer, found {other:?} in {:?}",
                self.line.text
            ),
        }
    }

    /// The names of the members after `ts`, `level`, `event` and `msg`.
    fn field_names(&self) -> Vec<&str> {
        self.fields
            .iter()
            .skip(4)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// `2026-11-28T15:04:07.123Z`.
fn is_utc_millisecond_timestamp(text: &str) -> bool {
    let pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() == pattern.len()
        && text
            .chars()
            .zip(pattern.chars())
            .all(|(found, wanted)| match wanted {
                'd' => found.is_ascii_digit(),
                _ => found == wanted,
            })
        && (1..=12).contains(&text[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&text[8..10].parse::<u32>().unwrap_or(0))
        && text[11..13].parse::<u32>().unwrap_or(99) < 24
        && text[14..16].parse::<u32>().unwrap_or(99) < 60
        && text[17..19].parse::<u32>().unwrap_or(99) < 61
}

/// Seconds since the epoch of a timestamp that passed [`is_utc_millisecond_timestamp`] (Howard Hinnant's
/// `days_from_civil`).
fn epoch_seconds(text: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().expect("digits");
    let (month, day) = (number(5..7), number(8..10));
    let year = number(0..4) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    days * 86_400 + number(11..13) * 3600 + number(14..16) * 60 + number(17..19)
}

/// Every stderr line of a run but the child's own (`child_lines`, each expected exactly once, verbatim),
/// parsed as grace's JSON log; timestamps never go back.
fn json_log(lines: &[Line], child_lines: &[&str], output: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in lines.iter().filter(|line| line.stream == Stream::Stderr) {
        if child_lines.contains(&line.text.as_str()) {
            continue;
        }
        assert!(
            line.text.starts_with('{'),
            "a stderr line that is neither JSON nor the child's own: {:?}\n{output}",
            line.text
        );
        let entry = Entry::parse(line);
        // UTC, and now: the run took seconds, and the test's clock is the same.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let stamped = epoch_seconds(entry.str("ts"));
        assert!(
            (now - 120..=now).contains(&stamped),
            "ts {:?} is not the current UTC time\n{output}",
            entry.str("ts")
        );
        if let Some(previous) = entries.last() {
            assert!(
                previous.str("ts") <= entry.str("ts"),
                "timestamps go back: {:?} then {:?}",
                previous.line.text,
                entry.line.text
            );
        }
        entries.push(entry);
    }
    for child_line in child_lines {
        let copies = lines
            .iter()
            .filter(|line| line.stream == Stream::Stderr && line.text == *child_line)
            .count();
        assert_eq!(
            copies, 1,
            "the child's stderr line {child_line:?}\n{output}"
        );
    }
    entries
}

/// The entries of `event`, in order.
fn events<'a>(log: &'a [Entry], event: &str) -> Vec<&'a Entry> {
    log.iter().filter(|entry| entry.event() == event).collect()
}

/// The one entry of `event`.
fn only<'a>(log: &'a [Entry], event: &str, output: &str) -> &'a Entry {
    let found = events(log, event);
    assert_eq!(found.len(), 1, "expected one {event:?} event\n{output}");
    found[0]
}

/// Waits for the next JSON log line of `event` and parses it.
fn wait_event(grace: &mut Running, event: &str) -> Entry {
    let needle = format!("\"event\":\"{event}\"");
    Entry::parse(&grace.wait_log(&needle))
}

// ---- survivor diagnosis ----------------------------------------------------------------------------------

/// One process of child.py's `survivors` tree, as it described itself.
#[derive(Clone, Debug)]
struct Survivor {
    role: &'static str,
    pid: i32,
    parent_pid: i32,
    name: String,
    command_line: String,
}

/// Reads `survivor ROLE pid P parent Q name N cmdline C` for `role`.
fn survivor(grace: &mut Running, role: &'static str) -> Survivor {
    let line = grace.wait_stdout(&format!("survivor {role} pid "));
    let text = line.text;
    let (head, command_line) = text
        .split_once(" cmdline ")
        .unwrap_or_else(|| panic!("no cmdline in {text:?}"));
    let words: Vec<&str> = head.split(' ').collect();
    match words[..] {
        ["survivor", _, "pid", pid, "parent", parent_pid, "name", name] => Survivor {
            role,
            pid: pid.parse().expect("a pid"),
            parent_pid: parent_pid.parse().expect("a pid"),
            name: name.to_string(),
            command_line: command_line.to_string(),
        },
        _ => panic!("unexpected description {text:?}"),
    }
}

/// What grace should say of each role: state, what it does with SIGTERM, and how its hint begins.
fn expected_diagnosis(role: &str) -> (&'static str, &'static str, &'static str) {
    match role {
        "main" | "ignorer" => ("S", "ignores", "ignores the signal: only SIGKILL ends it"),
        "catcher" => (
            "S",
            "catches",
            "handles the signal but has not exited: still draining",
        ),
        "blocker" => (
            "S",
            "blocks",
            "blocks the signal: it has not looked at it yet",
        ),
        "stopper" => (
            "T",
            "catches",
            "stopped: it cannot act on any signal until it is continued",
        ),
        "shell" => (
            "S",
            "ignores",
            "a shell that did not exec its server: it does not pass SIGTERM on to its children",
        ),
        "hook" => (
            "S",
            "default",
            "the signal's default action would end it: it was not sent one",
        ),
        other => panic!("no role {other}"),
    }
}

/// A command line as a diagnosis shows it: cut to [`MAX_COMMAND_LINE`] characters, the last one `…`.
fn shown(command_line: &str) -> String {
    if command_line.chars().count() <= MAX_COMMAND_LINE {
        return command_line.to_string();
    }
    let mut cut: String = command_line.chars().take(MAX_COMMAND_LINE - 1).collect();
    cut.push('…');
    cut
}

/// A run of child.py `survivors` (with `arguments` and `-t 2s`) stopped with SIGTERM and left to its
/// deadline: the tree as it described itself, in pid order, and the finished run.
fn run_survivors(mode: Mode, arguments: &[&str]) -> (Vec<Survivor>, common::Finished) {
    let mut grace = Grace::new(mode)
        .args(["-t", "2s"])
        .args(arguments)
        .spawn(&child(&["survivors"]));
    let mut tree: Vec<Survivor> = ["main", "catcher", "blocker", "stopper", "shell", "ignorer"]
        .into_iter()
        .map(|role| survivor(&mut grace, role))
        .collect();
    // Each one waits (in pause, wait or waitpid) before the stop signal, so its state is known: a process
    // that has printed its line may still be running on to its wait. The stopper is stopped (its parent saw
    // it stop) …
    grace.wait_stdout("stopper stopped");
    for process in &tree {
        let state = if process.role == "stopper" { 'T' } else { 'S' };
        wait_for_state(common::host_pid(&grace, process.pid), state);
    }
    let first = stop(&grace);
    // … gets SIGTERM and SIGCONT with the rest of the tree at once (-t 2s leaves only the 2 s cleanup
    // timeout), handles it and stops again; the catcher's handler starts a shutdown hook that is never sent
    // anything.
    grace.wait_stdout("survivor catcher got TERM");
    tree.push(survivor(&mut grace, "hook"));
    grace.wait_stdout("survivor stopper got TERM");
    grace.wait_stdout("stopper stopped"); // again: its parent saw it stop after the SIGCONT
    for process in tree
        .iter()
        .filter(|process| ["catcher", "hook"].contains(&process.role))
    {
        wait_for_state(common::host_pid(&grace, process.pid), 'S'); // back in pause after the handler, and the hook
    }
    let deadline = grace.wait_log("expired");
    assert_on_time(
        "the deadline",
        first,
        deadline.at,
        2 * SECOND,
        &grace.dump(),
    );
    let grace_pid = grace_pid_inside(&grace);
    let finished = grace.finish();
    assert_eq!(finished.code(), 137, "{mode:?}\n{}", finished.dump());
    tree.sort_by_key(|process| process.pid);

    // The tree is what it should be: main under grace, the shell and three children under main, the ignorer
    // under the shell, the hook under the catcher.
    let pid_of = |role: &str| {
        tree.iter()
            .find(|process| process.role == role)
            .unwrap()
            .pid
    };
    let parent_of = |role: &str| match role {
        "main" => grace_pid,
        "ignorer" => pid_of("shell"),
        "hook" => pid_of("catcher"),
        _ => pid_of("main"),
    };
    for process in &tree {
        assert_eq!(
            process.parent_pid,
            parent_of(process.role),
            "{mode:?}: parent of the {}",
            process.role
        );
    }
    (tree, finished)
}

/// Asserts that `entry` is the `survivor` diagnosis of `process`, field by field.
fn assert_diagnosis(entry: &Entry, process: &Survivor, level: &str, output: &str) {
    let (state, disposition, hint) = expected_diagnosis(process.role);
    let context = format!(
        "the {}'s diagnosis: {:?}\n{output}",
        process.role, entry.line.text
    );
    assert_eq!(entry.event(), "survivor", "{context}");
    assert_eq!(entry.str("level"), level, "{context}");
    assert_eq!(
        entry.field_names(),
        [
            "pid",
            "name",
            "parent_pid",
            "state",
            "command_line",
            "signal",
            "disposition",
            "hint"
        ],
        "{context}"
    );
    assert_eq!(entry.int("pid"), i64::from(process.pid), "{context}");
    assert_eq!(entry.str("name"), process.name, "{context}");
    assert_eq!(
        entry.int("parent_pid"),
        i64::from(process.parent_pid),
        "{context}"
    );
    assert_eq!(entry.str("state"), state, "{context}");
    assert_eq!(
        entry.str("command_line"),
        shown(&process.command_line),
        "{context}"
    );
    assert_eq!(entry.str("signal"), "SIGTERM", "{context}");
    assert_eq!(entry.str("disposition"), disposition, "{context}");
    assert!(entry.str("hint").starts_with(hint), "{context}");
    // The message says the same, for a person.
    let role = if process.role == "main" {
        "main child "
    } else {
        ""
    };
    let message = format!(
        "  {role}pid {} ({}), parent {}, state {state}, {disposition} SIGTERM: {} — `{}`",
        process.pid,
        process.name,
        process.parent_pid,
        entry.str("hint"),
        shown(&process.command_line)
    );
    assert_eq!(entry.str("msg"), message, "{context}");
}

#[test]
fn survivors_are_diagnosed_at_the_deadline_and_when_the_cleanup_starts() {
    for mode in MODES {
        let (tree, finished) = run_survivors(mode, &["-v", "--log-format", "json"]);
        let output = finished.dump();
        let log = json_log(&finished.lines, &[], &output);
        let shell = tree.iter().find(|process| process.role == "shell");
        assert_eq!(shell.map(|shell| shell.name.as_str()), Some("sh"));

        // When the cleanup starts (the main child still runs, -t 2s leaves only the cleanup timeout), -v
        // diagnoses every other process just before its SIGTERM.
        let terminating = only(&log, "terminating", &output);
        let at_cleanup: Vec<&Entry> = log
            .iter()
            .take_while(|entry| entry.event() != "terminating")
            .filter(|entry| entry.event() == "survivor")
            .collect();
        let signalled: Vec<&Survivor> = tree
            .iter()
            .filter(|process| !["main", "hook"].contains(&process.role))
            .collect();
        assert_eq!(at_cleanup.len(), signalled.len(), "{mode:?}\n{output}");
        for (entry, process) in at_cleanup.iter().zip(&signalled) {
            assert_diagnosis(entry, process, "debug", &output);
        }
        let pids: Vec<String> = signalled
            .iter()
            .map(|process| process.pid.to_string())
            .collect();
        assert_eq!(
            terminating.str("pids"),
            pids.join(","),
            "{mode:?}\n{output}"
        );
        assert_eq!(terminating.int("count"), signalled.len() as i64);

        // At the deadline: a `deadline` line, then one `survivor` line per process still alive, in pid
        // order, then the SIGKILL.
        let position = |event: &str| {
            log.iter()
                .position(|entry| entry.event() == event)
                .unwrap_or_else(|| panic!("no {event:?} event\n{output}"))
        };
        let deadline = &log[position("deadline")];
        assert_eq!(deadline.str("level"), "warn");
        assert_eq!(deadline.str("reason"), "grace_period_expired", "{output}");
        assert_eq!(
            deadline.int("count"),
            tree.len() as i64,
            "{mode:?}\n{output}"
        );
        let at_deadline = &log[position("deadline") + 1..position("escalated")];
        assert_eq!(at_deadline.len(), tree.len(), "{mode:?}\n{output}");
        for (entry, process) in at_deadline.iter().zip(&tree) {
            assert_diagnosis(entry, process, "warn", &output);
        }
        // The same diagnosis, for the processes that were there both times.
        for before in &at_cleanup {
            let after = at_deadline
                .iter()
                .find(|entry| entry.int("pid") == before.int("pid"))
                .expect("diagnosed at the deadline too");
            assert_eq!(
                &after.fields[4..],
                &before.fields[4..],
                "{mode:?}\n{output}"
            );
        }
        let escalated = &log[position("escalated")];
        assert_eq!(
            escalated.int("count"),
            tree.len() as i64,
            "{mode:?}\n{output}"
        );
    }
}

#[test]
fn survivor_diagnosis_in_the_text_format() {
    if common::NO_SUBREAPER.applies() {
        return; // a subreaper-mode run
    }
    let (tree, finished) = run_survivors(Mode::Subreaper, &[]);
    let output = finished.dump();
    // Without -v, nothing is diagnosed when the cleanup starts: only at the deadline, as warnings.
    let log: Vec<&str> = finished
        .log()
        .into_iter()
        .map(|line| {
            line.split_once("] ")
                .filter(|(stamp, _)| stamp.starts_with("[grace "))
                .map_or_else(
                    || panic!("not a log line: {line:?}\n{output}"),
                    |(_, text)| text,
                )
        })
        .collect();
    let deadline = log
        .iter()
        .position(|line| {
            line.starts_with(
                "warning: grace period of 2s expired: 7 processes still alive (7 examined ",
            )
        })
        .unwrap_or_else(|| panic!("no deadline line\n{output}"));
    assert_eq!(
        log.iter().filter(|line| line.contains(" — `")).count(),
        tree.len(),
        "{output}"
    );
    for (line, process) in log[deadline + 1..].iter().zip(&tree) {
        let (state, disposition, hint) = expected_diagnosis(process.role);
        let role = if process.role == "main" {
            "main child "
        } else {
            ""
        };
        let head = format!(
            "warning:   {role}pid {} ({}), parent {}, state {state}, {disposition} SIGTERM: {hint}",
            process.pid, process.name, process.parent_pid
        );
        let tail = format!(" — `{}`", shown(&process.command_line));
        assert!(
            line.starts_with(&head) && line.ends_with(&tail),
            "the {}'s diagnosis: expected {head:?} … {tail:?}, found {line:?}\n{output}",
            process.role
        );
    }
    assert!(
        log[deadline + 1 + tree.len()]
            .starts_with("warning: grace period of 2s expired: SIGKILL to 7 processes: "),
        "{output}"
    );
}

// ---- the JSON log of a whole shutdown ---------------------------------------------------------------------

#[test]
fn json_log_of_a_shutdown_with_escalation() {
    const CHILD_STDERR: &str = "the child's own stderr, {\"not\": \"grace's\"}";
    let runs = [
        (
            Mode::Pid1,
            Grace::new(Mode::Pid1).args(["--log-format", "json"]),
        ),
        (
            Mode::Subreaper,
            Grace::new(Mode::Subreaper).env("GRACE_LOG_FORMAT", "json"),
        ),
    ];
    for (mode, grace) in runs {
        if !common::mode_tested(mode) {
            continue;
        }
        let command = child(&[
            "stderr-then",
            CHILD_STDERR,
            "daemons",
            "idle:ignore",
            "--main",
            "ignore",
        ]);
        let mut grace = grace.args(["-t", "1s"]).spawn(&command);
        let daemon = pid_in(&grace.wait_stdout("daemon idle pid").text);
        grace.wait_stdout("daemons ready");
        let first = stop(&grace);
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");

        // The child's output passes through as it was written.
        let mut stdout = finished.stdout();
        stdout.sort_unstable();
        let daemon_ready = format!("daemon idle pid {daemon} ready");
        assert_eq!(
            stdout,
            [daemon_ready.as_str(), "daemons ready"],
            "{mode:?}\n{output}"
        );
        let log = json_log(&finished.lines, &[CHILD_STDERR], &output);
        let names: Vec<&str> = log.iter().map(Entry::event).collect();
        assert_eq!(
            names,
            [
                "started",
                "stop_signal",
                "terminating",
                "deadline",
                "survivor",
                "survivor",
                "escalated",
                "main_exited",
                "emptied",
                "exiting"
            ],
            "{mode:?}\n{output}"
        );
        let event = |name: &str| only(&log, name, &output);

        let started = event("started");
        assert_eq!(started.str("level"), "info");
        assert_eq!(
            started.field_names(),
            [
                "pid",
                "command",
                "mode",
                "grace_period_ms",
                "grace_period_source"
            ]
        );
        let main = started.int("pid");
        assert!(main > 1 && main != i64::from(daemon), "{output}");
        let script = child_script().display().to_string();
        assert_eq!(
            started.str("command"),
            format!(
                "python3 -u {script} stderr-then 'the child'\\''s own stderr, {{\"not\": \"grace'\\''s\"}}' daemons idle:ignore --main ignore"
            )
        );
        let mode_name = if mode == Mode::Pid1 {
            "pid1"
        } else {
            "subreaper"
        };
        assert_eq!(started.str("mode"), mode_name);
        assert_eq!(started.int("grace_period_ms"), 1000);

        let stop_signal = event("stop_signal");
        assert_eq!(stop_signal.str("level"), "info");
        assert_eq!(
            stop_signal.field_names(),
            ["signal", "sender_pid", "repeat", "forwarded", "pid"]
        );
        assert_eq!(stop_signal.str("signal"), "SIGTERM");
        assert_eq!(stop_signal.int("sender_pid"), test_pid_seen_by_grace(mode));
        assert_eq!(stop_signal.int("repeat"), 1);
        assert_eq!(stop_signal.str("forwarded"), "SIGTERM");
        assert_eq!(stop_signal.int("pid"), main);

        let terminating = event("terminating");
        assert_eq!(terminating.field_names(), ["count", "pids", "names"]);
        assert_eq!(terminating.int("count"), 1);
        assert_eq!(terminating.str("pids"), daemon.to_string());
        assert_eq!(terminating.str("names"), "python3");

        let deadline = event("deadline");
        assert_eq!(deadline.str("level"), "warn");
        assert_eq!(
            deadline.field_names(),
            ["reason", "count", "examined", "surveyed_ms"]
        );
        assert_eq!(deadline.str("reason"), "grace_period_expired");
        assert_eq!(deadline.int("count"), 2);
        assert_eq!(deadline.int("examined"), 2, "{output}");
        // Two processes: the shortest lead, 100 ms before the SIGKILL (later if grace woke late).
        assert!((0..=100).contains(&deadline.int("surveyed_ms")), "{output}");
        let mut survivors: Vec<i64> = events(&log, "survivor")
            .iter()
            .map(|entry| {
                assert_eq!(entry.str("disposition"), "ignores", "{output}");
                entry.int("pid")
            })
            .collect();
        survivors.sort_unstable();
        let mut both = vec![main, i64::from(daemon)];
        both.sort_unstable();
        assert_eq!(survivors, both, "{output}");

        let escalated = event("escalated");
        assert_eq!(escalated.str("level"), "warn");
        assert_eq!(
            escalated.field_names(),
            ["reason", "count", "pids", "names", "delay_us", "elapsed_ms"]
        );
        assert!(
            (0..1_000_000).contains(&escalated.int("delay_us")),
            "{output}"
        );
        assert_eq!(escalated.str("reason"), "grace_period_expired");
        assert_eq!(escalated.int("count"), 2);
        let pids: Vec<String> = both.iter().map(i64::to_string).collect();
        assert_eq!(escalated.str("pids"), pids.join(","));
        assert_eq!(escalated.str("names"), "python3,python3");
        let elapsed = escalated.int("elapsed_ms");
        assert!(
            (1000..1000 + LATE.as_millis() as i64).contains(&elapsed),
            "{output}"
        );
        assert_on_time("SIGKILL", first, escalated.line.at, SECOND, &output);

        let main_exited = event("main_exited");
        assert_eq!(main_exited.field_names(), ["pid", "status", "elapsed_ms"]);
        assert_eq!(main_exited.int("pid"), main);
        assert_eq!(main_exited.int("status"), 137);
        assert!(main_exited.int("elapsed_ms") >= elapsed, "{output}");

        let emptied = event("emptied");
        assert_eq!(emptied.str("level"), "info");
        assert_eq!(
            emptied.field_names(),
            ["sweeps", "sweeps_found", "elapsed_ms"]
        );
        assert_eq!(emptied.int("sweeps_found"), 0, "{output}");
        assert!(
            (0..LATE.as_millis() as i64).contains(&emptied.int("elapsed_ms")),
            "{output}"
        );

        let exiting = event("exiting");
        assert_eq!(
            exiting.field_names(),
            ["status", "child_status", "elapsed_ms"]
        );
        assert_eq!(exiting.int("status"), 137);
        assert_eq!(exiting.int("child_status"), 137);
        assert!(
            exiting.int("elapsed_ms") >= main_exited.int("elapsed_ms"),
            "{output}"
        );
    }
}

// ---- pre-stop delay --------------------------------------------------------------------------------------

#[test]
fn pre_stop_delay_holds_the_stop_signal_but_not_the_others() {
    let runs = [
        (
            Mode::Pid1,
            Grace::new(Mode::Pid1).args(["--pre-stop-delay", "1s"]),
        ),
        (
            Mode::Subreaper,
            Grace::new(Mode::Subreaper).args(["--pre-stop-delay", "1s"]),
        ),
        (
            Mode::Subreaper,
            Grace::new(Mode::Subreaper).env("GRACE_PRE_STOP_DELAY", "1s"),
        ),
    ];
    for (mode, grace) in runs {
        if !common::mode_tested(mode) {
            continue;
        }
        let mut grace = grace
            .args(["-t", "5s", "--log-format", "json"])
            .spawn(&child(&["signals", "15"]));
        let main = i64::from(pid_in(&grace.wait_stdout("ready pid").text));
        let first = stop(&grace);
        let delaying = wait_event(&mut grace, "stop_signal");
        assert_eq!(
            delaying.field_names(),
            ["signal", "sender_pid", "repeat", "pre_stop_delay_ms"],
            "{mode:?}"
        );
        assert_eq!(delaying.str("signal"), "SIGTERM");
        assert_eq!(delaying.int("sender_pid"), test_pid_seen_by_grace(mode));
        assert_eq!(delaying.int("repeat"), 1);
        assert_eq!(delaying.int("pre_stop_delay_ms"), 1000);
        assert!(
            delaying
                .str("msg")
                .contains("forwarding it after the pre-stop delay of 1s; grace period 5s"),
            "{:?}",
            delaying.line.text
        );

        // During the delay, another signal goes through at once; a repeated SIGTERM does not.
        grace.signal(libc::SIGUSR1);
        let usr1 = grace.wait_stdout(&format!("got {} ", libc::SIGUSR1));
        grace.signal(libc::SIGTERM);
        let repeat = wait_event(&mut grace, "stop_signal");
        assert_eq!(
            repeat.field_names(),
            ["signal", "sender_pid", "repeat"],
            "{mode:?}: not forwarded"
        );
        assert_eq!(repeat.int("repeat"), 2);
        assert!(
            repeat.str("msg").contains(
                "(stop signal #2) during the pre-stop delay: the first is forwarded when it ends"
            ),
            "{:?}",
            repeat.line.text
        );

        let term = grace.wait_stdout(&format!("got {} ", libc::SIGTERM));
        let over = wait_event(&mut grace, "forwarded_after_delay");
        assert_eq!(over.field_names(), ["signal", "pid"]);
        assert_eq!(over.str("signal"), "SIGTERM");
        assert_eq!(over.int("pid"), main);
        assert!(
            over.str("msg")
                .starts_with(&format!("pre-stop delay of 1s over: forwarded SIGTERM to pid {main} (python3); SIGKILL of what remains in ")),
            "{:?}",
            over.line.text
        );
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 0, "{mode:?}\n{output}");
        json_log(&finished.lines, &[], &output);

        assert!(
            usr1.at < over.line.at,
            "SIGUSR1 waited for the delay\n{output}"
        );
        let got: Vec<&str> = finished
            .stdout()
            .into_iter()
            .filter(|line| line.starts_with("got "))
            .collect();
        assert!(
            got[0].starts_with(&format!("got {} ", libc::SIGUSR1))
                && got[1].starts_with(&format!("got {} ", libc::SIGTERM)),
            "{mode:?}: SIGUSR1 first, then the one SIGTERM: {got:?}"
        );
        assert_on_time("the forwarded SIGTERM", first, term.at, SECOND, &output);
        assert_on_time("the end of the delay", first, over.line.at, SECOND, &output);
        assert!(repeat.line.at < over.line.at, "{output}");
    }
}

#[test]
fn pre_stop_delay_counts_inside_the_grace_period() {
    // Had the delay been added to the grace period, SIGKILL would come at 5 s, not 3 s.
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args(["--pre-stop-delay", "2s", "-t", "3s"])
            .spawn(&child(&["ignore-term"]));
        let main = pid_in(&grace.wait_stdout("ready pid").text);
        let first = stop(&grace);
        let delaying = grace.wait_log("received SIGTERM");
        // What remains is counted from the signal's arrival: 3.000s, or a millisecond or so less on a slow
        // machine (the emulator) that takes that long to write the line.
        let remaining = delaying
            .text
            .split_once(": forwarding it after the pre-stop delay of 2s; grace period 3s, SIGKILL of what remains in ")
            .and_then(|(_, remaining)| remaining.strip_suffix('s')?.parse::<f64>().ok());
        assert!(
            remaining.is_some_and(|remaining| (2.9..=3.0).contains(&remaining)),
            "{mode:?}: {:?}",
            delaying.text
        );
        let over = grace.wait_log("pre-stop delay of 2s over");
        assert!(
            over.text.contains(&format!(
                "pre-stop delay of 2s over: forwarded SIGTERM to pid {main} (python3); SIGKILL of what remains in "
            )),
            "{:?}",
            over.text
        );
        let kill = grace.wait_log("SIGKILL to");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        assert_on_time("the end of the delay", first, over.at, 2 * SECOND, &output);
        assert!(
            kill.text
                .contains("grace period of 3s expired: SIGKILL to 1 process")
                && kill
                    .text
                    .contains(&format!(": {main} (python3); the last sent ")),
            "{:?}",
            kill.text
        );
        assert_on_time("SIGKILL", first, kill.at, 3 * SECOND, &output);
    }
}

/// A configuration grace must refuse, and what its one-line message must name.
struct BadValue {
    arguments: &'static [&'static str],
    environment: &'static [(&'static str, &'static str)],
    names: &'static str,
}

#[test]
fn operating_options_reject_bad_values_in_one_line() {
    let cases = [
        BadValue {
            arguments: &["--pre-stop-delay", "5s", "-t", "5s"],
            environment: &[],
            names: "pre-stop delay",
        },
        BadValue {
            arguments: &["--pre-stop-delay", "6s"],
            environment: &[("GRACE_PERIOD", "5s")],
            names: "pre-stop delay",
        },
        BadValue {
            arguments: &["-t", "5s"],
            environment: &[("GRACE_PRE_STOP_DELAY", "5s")],
            names: "pre-stop delay",
        },
        BadValue {
            arguments: &["--final-signal", "STOP"],
            environment: &[],
            names: "--final-signal",
        },
        BadValue {
            arguments: &[],
            environment: &[("GRACE_FINAL_SIGNAL", "STOP")],
            names: "GRACE_FINAL_SIGNAL",
        },
        BadValue {
            arguments: &["--log-format", "yaml"],
            environment: &[],
            names: "--log-format",
        },
    ];
    for BadValue {
        arguments,
        environment,
        names,
    } in cases
    {
        let mut grace = Grace::new(Mode::Subreaper).args(arguments);
        for (name, value) in environment {
            grace = grace.env(name, value);
        }
        let (status, stdout, stderr) = run_to_end(grace, &common::sh("echo the child ran"));
        let what = format!("{arguments:?} {environment:?}: {stderr:?}");
        assert_eq!(status.code(), Some(2), "{what}");
        assert_eq!(stdout, "", "{what}");
        assert_eq!(stderr.lines().count(), 1, "{what}");
        assert!(
            stderr.starts_with("grace: ") && stderr.contains(names),
            "{what}"
        );
    }
    // The boundaries are fine: a delay just short of the grace period, SIGKILL as the final signal.
    if common::subreaper_refusal_is_fatal() {
        return;
    }
    for arguments in [
        &["--pre-stop-delay", "4999ms", "-t", "5s"][..],
        &["--final-signal", "KILL", "--final-timeout", "0"][..],
    ] {
        let (status, stdout, stderr) = run_to_end(
            Grace::new(Mode::Subreaper).args(arguments),
            &common::sh("echo the child ran"),
        );
        assert_eq!(status.code(), Some(0), "{arguments:?}: {stderr}");
        assert_eq!(stdout, "the child ran\n");
    }
}

// ---- final signal ----------------------------------------------------------------------------------------

#[test]
fn final_signal_comes_before_sigkill_inside_the_grace_period() {
    for mode in MODES {
        // The child reports every signal and exits on none: it ignores SIGTERM, in effect, and survives QUIT.
        let mut grace = Grace::new(mode)
            .args([
                "--final-signal",
                "QUIT",
                "--final-timeout",
                "500ms",
                "-t",
                "2s",
                "--log-format",
                "json",
            ])
            .spawn(&child(&["signals"]));
        let main = i64::from(pid_in(&grace.wait_stdout("ready pid").text));
        let first = stop(&grace);
        grace.wait_stdout(&format!("got {} ", libc::SIGTERM));
        let quit = grace.wait_stdout(&format!("got {} ", libc::SIGQUIT));
        let final_signal = wait_event(&mut grace, "final_signal");
        let escalated = wait_event(&mut grace, "escalated");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        let log = json_log(&finished.lines, &[], &output);

        assert_on_time(
            "SIGQUIT",
            first,
            quit.at,
            Duration::from_millis(1500),
            &output,
        );
        assert_on_time("SIGKILL", first, escalated.line.at, 2 * SECOND, &output);
        assert_eq!(final_signal.str("level"), "warn");
        assert_eq!(
            final_signal.field_names(),
            ["signal", "count", "pids", "names"]
        );
        assert_eq!(final_signal.str("signal"), "SIGQUIT");
        assert_eq!(final_signal.int("count"), 1);
        assert_eq!(final_signal.str("pids"), main.to_string());
        assert_eq!(final_signal.str("names"), "python3");
        assert!(
            final_signal
                .str("msg")
                .starts_with("final signal SIGQUIT to 1 process")
                && final_signal
                    .str("msg")
                    .contains(&format!(": {main} (python3); SIGKILL in ")),
            "{output}"
        );
        // The QUIT did not end it: it is among the survivors at the deadline, then SIGKILLed.
        let order: Vec<&str> = log
            .iter()
            .map(Entry::event)
            .filter(|event| ["final_signal", "deadline", "survivor", "escalated"].contains(event))
            .collect();
        assert_eq!(
            order,
            ["final_signal", "deadline", "survivor", "escalated"],
            "{output}"
        );
        assert_eq!(only(&log, "survivor", &output).int("pid"), main);
        assert_eq!(escalated.str("pids"), main.to_string());
    }
}

#[test]
fn final_signal_kill_means_no_final_step() {
    for (mode, arguments) in [
        (Mode::Pid1, &[][..]),
        (
            Mode::Subreaper,
            &["--final-signal", "KILL", "--final-timeout", "500ms"][..],
        ),
    ] {
        if !common::mode_tested(mode) {
            continue;
        }
        let mut grace = Grace::new(mode)
            .args(["-t", "1s", "--log-format", "json"])
            .args(arguments)
            .spawn(&child(&["signals"]));
        grace.wait_stdout("ready pid");
        let first = stop(&grace);
        let escalated = wait_event(&mut grace, "escalated");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        let log = json_log(&finished.lines, &[], &output);
        assert!(events(&log, "final_signal").is_empty(), "{output}");
        // Only the stop signal and its SIGCONT reached the child.
        let got: Vec<&str> = finished
            .stdout()
            .into_iter()
            .filter(|line| line.starts_with("got "))
            .map(|line| line.split(' ').nth(1).unwrap_or_default())
            .collect();
        assert_eq!(got, ["15", "18"], "{mode:?}\n{output}");
        assert_on_time("SIGKILL", first, escalated.line.at, SECOND, &output);
    }
}

// ---- repeated stop signals -------------------------------------------------------------------------------

#[test]
fn repeated_stop_signals_are_forwarded_counted_and_keep_the_deadline() {
    // -t 3s --cleanup-timeout 1s: the daemon gets SIGTERM at 2 s, and the third SIGTERM is sent then; a
    // grace period restarted by it would end at 5 s instead of 3 s.
    for mode in MODES {
        let mut grace = Grace::new(mode)
            .args([
                "-t",
                "3s",
                "--cleanup-timeout",
                "1s",
                "--log-format",
                "json",
            ])
            .spawn(&child(&["with-daemons", "idle:ignore", "--", "signals"]));
        grace.wait_stdout("daemon idle pid");
        let main = i64::from(pid_in(&grace.wait_stdout("ready pid").text));
        let term = format!("got {} ", libc::SIGTERM);
        let first = stop(&grace);
        let one = wait_event(&mut grace, "stop_signal");
        grace.wait_stdout(&term);
        stop(&grace);
        let two = wait_event(&mut grace, "stop_signal");
        grace.wait_stdout(&term);
        let terminating = wait_event(&mut grace, "terminating");
        stop(&grace);
        let three = wait_event(&mut grace, "stop_signal");
        grace.wait_stdout(&term);
        let escalated = wait_event(&mut grace, "escalated");
        let finished = grace.finish();
        let output = finished.dump();
        assert_eq!(finished.code(), 137, "{mode:?}\n{output}");
        json_log(&finished.lines, &[], &output);

        for (entry, repeat) in [(&one, 1), (&two, 2), (&three, 3)] {
            assert_eq!(entry.int("repeat"), repeat, "{output}");
            assert_eq!(entry.str("signal"), "SIGTERM");
            assert_eq!(entry.str("forwarded"), "SIGTERM");
            assert_eq!(entry.int("pid"), main);
            assert_eq!(entry.int("sender_pid"), test_pid_seen_by_grace(mode));
            if repeat > 1 {
                let message = entry.str("msg");
                assert!(
                    message.contains(&format!("(stop signal #{repeat}, "))
                        && message.contains(&format!(
                            "after the first): forwarded SIGTERM to pid {main} (python3); deadline unchanged, SIGKILL in "
                        )),
                    "{message:?}"
                );
            }
        }
        let terms = finished
            .stdout()
            .iter()
            .filter(|line| line.starts_with(&term))
            .count();
        assert_eq!(terms, 3, "the child sees every SIGTERM\n{output}");
        assert_on_time(
            "the daemon's SIGTERM",
            first,
            terminating.line.at,
            2 * SECOND,
            &output,
        );
        assert_on_time("SIGKILL", first, escalated.line.at, 3 * SECOND, &output);
        let elapsed = escalated.int("elapsed_ms");
        assert!(
            (3000..3000 + LATE.as_millis() as i64).contains(&elapsed),
            "elapsed_ms counts from the first stop signal: {elapsed}\n{output}"
        );
    }
}
