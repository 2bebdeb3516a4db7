//! grace's log: one line per event on stderr, timestamped and prefixed so it stands out from the child's
//! output, or one JSON object per line for log pipelines. Writing never panics and never waits: lines go to
//! [`crate::log_sink`], which buffers them for a slow reader and drops (and counts) them for a stalled one.
//!
//! Every lifecycle line carries structured fields (`event = "escalated"`, `pid = 7`…): the text format shows
//! only the message, the JSON format shows the fields too. The macros (`warn!(event = "x", pid = 7; "…")`,
//! the shape of the `log` crate's) expand to one call of [`write`] with the keys as a static slice, the values
//! as a slice of [`Value`]s and the message's `format_args!`: no generic code per call site, and nothing is
//! formatted for a level that is off. (The `log` facade did the same through a `Record`, key-value visitors
//! and a value type that can hold floats, for about 20 KB more of the static binary; no dependency of grace
//! logs, so nothing else needs it.)

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use crate::cli::LogFormat;
use crate::log_sink;

/// How much a line matters, most severe first, as in the `log` crate (grace writes no trace lines: `-vv`
/// shows what `-v` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn,
    Info,
    Debug,
}

impl Level {
    /// The lower-case name JSON lines give it.
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// The least severe level written (`Off`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LevelFilter {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The configured [`LevelFilter`]: nothing is written before [`init`].
static MAX_LEVEL: AtomicU8 = AtomicU8::new(LevelFilter::Off as u8);
/// The configured [`LogFormat`]: 0 text, 1 JSON.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets what is written (`level`) and how (`format`).
pub fn init(level: LevelFilter, format: LogFormat) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
    FORMAT.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
}

/// Whether a line at `level` is written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// A field's value: numbers and booleans stay unquoted in JSON, the rest are strings.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    Signed(i64),
    Unsigned(u64),
    Bool(bool),
    /// A `key:% = value` field: the value's `Display`, a JSON string.
    Display(&'a dyn fmt::Display),
}

/// What a `key = value` field may hold.
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Str(self)
    }
}

impl ToValue for &str {
    fn to_value(&self) -> Value<'_> {
        Value::Str(self)
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}

macro_rules! to_value_as {
    ($variant:ident, $wide:ty: $($number:ty),+) => {$(
        impl ToValue for $number {
            fn to_value(&self) -> Value<'_> {
                Value::$variant(<$wide>::from(*self))
            }
        }
    )+};
}
to_value_as!(Signed, i64: i8, i16, i32, i64);
to_value_as!(Unsigned, u64: u8, u16, u32, u64);

impl ToValue for usize {
    fn to_value(&self) -> Value<'_> {
        Value::Unsigned(u64::try_from(*self).unwrap_or(u64::MAX))
    }
}

/// One line's worth: its level, the names and values of its fields, and its message.
pub struct Record<'a> {
    pub level: Level,
    pub keys: &'a [&'static str],
    pub values: &'a [Value<'a>],
    pub args: fmt::Arguments<'a>,
}

/// Writes one line at `level`: the call every logging macro makes. `keys` and `values` pair up.
pub fn write(level: Level, keys: &[&'static str], values: &[Value<'_>], args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let now = SystemTime::now();
    let line = line(
        &Record {
            level,
            keys,
            values,
            args,
        },
        now,
    );
    log_sink::with_sink(|sink| {
        let notice = match sink.dropped() {
            0 => None,
            dropped => Some(dropped_notice(dropped, now)),
        };
        sink.push(notice.as_deref().map(str::as_bytes), line.as_bytes());
    });
}

fn line(record: &Record<'_>, now: SystemTime) -> String {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        json_line(record, now)
    } else {
        text_line(record, now)
    }
}

/// The line that reports `dropped` lines lost to a stderr that did not accept them.
fn dropped_notice(dropped: u64, now: SystemTime) -> String {
    line(
        &Record {
            level: Level::Warn,
            keys: &["event", "count"],
            values: &[Value::Str("log_dropped"), Value::Unsigned(dropped)],
            args: format_args!(
                "{dropped} log {} dropped: stderr did not accept {} (a stalled log reader?)",
                if dropped == 1 { "line" } else { "lines" },
                if dropped == 1 { "it" } else { "them" }
            ),
        },
        now,
    )
}

/// `log!(LEVEL, key = value, key:% = value; "format", arguments)`, or `log!(LEVEL, "format", arguments)`: a
/// line at LEVEL; a `key:%` field takes the value's `Display`, a plain one a number, a boolean or a string.
macro_rules! log {
    ($level:expr, $($key:ident $(:$capture:tt)? = $value:expr),+; $($arg:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            $crate::logging::write(
                level,
                &[$(stringify!($key)),+],
                &[$($crate::logging::field_value!($(:$capture)? $value)),+],
                format_args!($($arg)+),
            );
        }
    }};
    ($level:expr, $($arg:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            $crate::logging::write(level, &[], &[], format_args!($($arg)+));
        }
    }};
}

/// A field's [`Value`]: `:%` takes its `Display`.
macro_rules! field_value {
    (:% $value:expr) => {
        $crate::logging::Value::Display(&$value)
    };
    ($value:expr) => {
        $crate::logging::ToValue::to_value(&$value)
    };
}

macro_rules! error {
    ($($arg:tt)+) => { log!($crate::logging::Level::Error, $($arg)+) };
}

macro_rules! warn {
    ($($arg:tt)+) => { log!($crate::logging::Level::Warn, $($arg)+) };
}

macro_rules! info {
    ($($arg:tt)+) => { log!($crate::logging::Level::Info, $($arg)+) };
}

macro_rules! debug {
    ($($arg:tt)+) => { log!($crate::logging::Level::Debug, $($arg)+) };
}

pub(crate) use field_value;

/// `[grace 2026-11-28T15:04:07.123Z] warning: message`, at most [`log_sink::MAX_LINE_BYTES`] bytes: a
/// longer message is cut and says how long it was.
fn text_line(record: &Record<'_>, now: SystemTime) -> String {
    let label = match record.level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
    };
    // One buffer for the whole line: the prefix, then the message formatted in place.
    let mut line = String::with_capacity(160);
    line.push_str("[grace ");
    crate::time_text::push_rfc3339_millis(&mut line, now);
    line.push_str("] ");
    line.push_str(label);
    let start = line.len();
    let _ = line.write_fmt(record.args);
    if let Cow::Owned(escaped) = one_line(line.get(start..).unwrap_or_default()) {
        line.truncate(start);
        line.push_str(&escaped);
    }
    let room = log_sink::MAX_LINE_BYTES.saturating_sub(start + 1);
    let length = line.len() - start;
    if length > room {
        let mark = format!("… ({length} bytes in all)");
        let kept = cut(
            line.get(start..).unwrap_or_default(),
            room.saturating_sub(mark.len()),
        )
        .len();
        line.truncate(start + kept);
        line.push_str(&mark);
    }
    line.push('\n');
    line
}

/// The longest start of `text` of at most `bytes` bytes that ends at a character boundary.
fn cut(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// `text` with its control characters other than tab escaped (`\n`, `\r`, `\u{1b}`…), so that a newline
/// in a command name, an option value or a process's command line cannot split a message in two.
pub fn one_line(text: &str) -> Cow<'_, str> {
    // Bytewise, as every line goes through here: the control characters are C0 (below 0x20), DEL (0x7F) and
    // C1 (U+0080 to U+009F, in UTF-8 0xC2 then 0x80 to 0x9F).
    let bytes = text.as_bytes();
    let has_control = bytes.iter().enumerate().any(|(index, &byte)| {
        (byte < 0x20 && byte != b'\t')
            || byte == 0x7f
            || (byte == 0xc2
                && bytes
                    .get(index + 1)
                    .is_some_and(|next| (0x80..=0x9f).contains(next)))
    });
    if !has_control {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if character.is_control() && character != '\t' {
            escaped.extend(character.escape_default());
        } else {
            escaped.push(character);
        }
    }
    Cow::Owned(escaped)
}

/// `{"ts":"…","level":"warn","event":"escalated","msg":"…",fields…}`: `event` is `log` for lines that
/// carry none (debug detail, unexpected errors). At most [`log_sink::MAX_LINE_BYTES`] bytes: when the line
/// would be longer, every string value but the event is cut to the same number of characters, ending in
/// `…`, as many as fit.
fn json_line(record: &Record<'_>, now: SystemTime) -> String {
    const CUT_TO: [usize; 9] = [2048, 1024, 512, 256, 128, 64, 32, 16, 0];
    let mut line = json_line_cut(record, now, None);
    for characters in CUT_TO {
        if line.len() <= log_sink::MAX_LINE_BYTES {
            break;
        }
        line = json_line_cut(record, now, Some(characters));
    }
    line
}

/// [`json_line`] with every string value cut to at most `characters` characters.
fn json_line_cut(record: &Record<'_>, now: SystemTime, characters: Option<usize>) -> String {
    let mut event = None;
    let mut rest = String::new();
    for (key, value) in record.keys.iter().zip(record.values) {
        let mut rendered = String::new();
        match *value {
            Value::Signed(number) => {
                let _ = write!(rendered, "{number}");
            }
            Value::Unsigned(number) => {
                let _ = write!(rendered, "{number}");
            }
            Value::Bool(flag) => rendered.push_str(if flag { "true" } else { "false" }),
            Value::Str(text) => {
                push_json_string(&mut rendered, text, cut_unless_event(key, characters))
            }
            Value::Display(shown) => push_json_string(
                &mut rendered,
                &shown.to_string(),
                cut_unless_event(key, characters),
            ),
        }
        if *key == "event" {
            event = Some(rendered);
        } else {
            rest.push(',');
            push_json_string(&mut rest, key, None);
            rest.push(':');
            rest.push_str(&rendered);
        }
    }
    let event = event.unwrap_or_else(|| "\"log\"".to_string());
    let mut line = format!(
        "{{\"ts\":\"{}\",\"level\":\"{}\",\"event\":{event},\"msg\":",
        utc_timestamp(now),
        record.level.as_str()
    );
    push_json_string(&mut line, &record.args.to_string(), characters);
    line.push_str(&rest);
    line.push_str("}\n");
    line
}

/// The event names the line: never cut.
fn cut_unless_event(key: &str, characters: Option<usize>) -> Option<usize> {
    characters.filter(|_| key != "event")
}

/// Appends `text` as a JSON string literal; with `characters`, a longer text is cut to that many characters
/// and ends in `…`.
fn push_json_string(out: &mut String, text: &str, characters: Option<usize>) {
    out.push('"');
    let cut = characters.is_some_and(|characters| text.chars().nth(characters).is_some());
    for character in text.chars().take(characters.unwrap_or(usize::MAX)) {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    if cut {
        out.push('…');
    }
    out.push('"');
}

/// `2026-11-28T15:04:07.123Z`.
pub fn utc_timestamp(time: SystemTime) -> String {
    crate::time_text::rfc3339_millis(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn json_lines_carry_the_event_and_its_fields() {
        let record = |line: &mut String| {
            let pid = 7;
            let name = "say \"hi\"\n";
            let values = [Value::Str("escalated"), pid.to_value(), name.to_value()];
            *line = json_line(
                &Record {
                    level: Level::Warn,
                    keys: &["event", "pid", "name"],
                    values: &values,
                    args: format_args!("SIGKILL to {pid}"),
                },
                UNIX_EPOCH,
            );
        };
        let mut line = String::new();
        record(&mut line);
        assert_eq!(
            line,
            "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"warn\",\"event\":\"escalated\",\"msg\":\"SIGKILL to 7\",\"pid\":7,\"name\":\"say \\\"hi\\\"\\n\"}\n"
        );
    }

    #[test]
    fn the_dropped_notice_counts_in_words() {
        let one = dropped_notice(1, UNIX_EPOCH);
        assert!(
            one.contains(" 1 log line dropped: stderr did not accept it "),
            "{one}"
        );
        let many = dropped_notice(285, UNIX_EPOCH);
        assert!(
            many.contains(" 285 log lines dropped: stderr did not accept them "),
            "{many}"
        );
    }

    #[test]
    fn a_line_is_never_longer_than_one_write() {
        let long = "a \"quoted\" é\u{1b}".repeat(1000);
        let values = [
            Value::Str("shell_did_not_exec"),
            1000.to_value(),
            long.as_str().to_value(),
            long.as_str().to_value(),
        ];
        let record = Record {
            level: Level::Warn,
            keys: &["event", "count", "names", "pids"],
            values: &values,
            args: format_args!("{long}"),
        };
        let json = json_line(&record, UNIX_EPOCH);
        assert!(json.len() <= log_sink::MAX_LINE_BYTES, "{}", json.len());
        assert!(json.len() > log_sink::MAX_LINE_BYTES / 2, "{}", json.len());
        assert!(json.ends_with("…\"}\n"), "{json}");
        assert!(
            json.contains("\"event\":\"shell_did_not_exec\",\"msg\":\"a \\\"quoted\\\" é\\u001b")
        );
        assert!(json.contains(",\"count\":1000,\"names\":\"a "));
        assert_eq!(json.matches('\n').count(), 1);
        let text = text_line(&record, UNIX_EPOCH);
        assert!(text.len() <= log_sink::MAX_LINE_BYTES, "{}", text.len());
        assert!(text.len() > log_sink::MAX_LINE_BYTES - 8, "{}", text.len());
        assert!(
            text.ends_with(&format!("… ({} bytes in all)\n", one_line(&long).len())),
            "{text}"
        );
        assert_eq!(text.matches('\n').count(), 1);
        // Short lines are left as they are.
        let short = Record {
            level: Level::Info,
            keys: &[],
            values: &[],
            args: format_args!("hi"),
        };
        assert_eq!(
            text_line(&short, UNIX_EPOCH),
            "[grace 1970-01-01T00:00:00.000Z] hi\n"
        );
    }

    /// The bytewise test finds exactly the characters `char::is_control` names (but tab), wherever they are.
    #[test]
    fn one_line_escapes_every_control_character_and_only_those() {
        for character in (0..=0x10ffff).filter_map(char::from_u32) {
            let text = format!("a{character}é");
            let escaped = matches!(one_line(&text), Cow::Owned(_));
            assert_eq!(
                escaped,
                character.is_control() && character != '\t',
                "U+{:04X}",
                u32::from(character)
            );
        }
        assert_eq!(one_line("a\nb\u{85}c\u{7f}\td"), "a\\nb\\u{85}c\\u{7f}\td");
    }

    #[test]
    fn formats_utc_timestamps() {
        let at = |seconds: u64, millis: u64| {
            UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
        };
        assert_eq!(utc_timestamp(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            utc_timestamp(at(951_782_400, 5)),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            utc_timestamp(at(1_795_878_247, 123)),
            "2026-11-28T15:04:07.123Z"
        );
    }
}
