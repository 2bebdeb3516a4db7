//! grace's log: one line per event on stderr, timestamped and prefixed so it stands out from the child's
//! output, or one JSON object per line for log pipelines. Writing never panics and never waits: lines go to
//! [`crate::log_sink`], which buffers them for a slow reader and drops (and counts) them for a stalled one.
//!
//! Every lifecycle line carries structured fields through `log`'s key-values (`event = "escalated"`,
//! `pid = 7`…): the text format shows only the message, the JSON format shows the fields too.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::cli::LogFormat;
use crate::log_sink;

/// The `log` backend: formats each record into one line and hands it whole to the sink, so lines from grace
/// are never interleaved with each other mid-line.
struct StderrLogger {
    level: LevelFilter,
    format: LogFormat,
}

/// Installs the logger; `level` decides what is written, `format` how.
pub fn init(level: LevelFilter, format: LogFormat) {
    // Only fails if a logger is already installed, which would then keep logging: nothing to do.
    let _ = log::set_boxed_logger(Box::new(StderrLogger { level, format }));
    log::set_max_level(level);
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now();
        let line = self.line(record, now);
        log_sink::with_sink(|sink| {
            let notice = match sink.dropped() {
                0 => None,
                dropped => Some(self.dropped_notice(dropped, now)),
            };
            sink.push(notice.as_deref().map(str::as_bytes), line.as_bytes());
        });
    }

    fn flush(&self) {
        log_sink::flush();
    }
}

impl StderrLogger {
    fn line(&self, record: &Record<'_>, now: SystemTime) -> String {
        match self.format {
            LogFormat::Text => text_line(record, now),
            LogFormat::Json => json_line(record, now),
        }
    }

    /// The line that reports `dropped` lines lost to a stderr that did not accept them.
    fn dropped_notice(&self, dropped: u64, now: SystemTime) -> String {
        let fields: [(&str, Value<'_>); 2] = [
            ("event", Value::from("log_dropped")),
            ("count", Value::from(dropped)),
        ];
        let args = format_args!(
            "{dropped} log {} dropped: stderr did not accept them (a stalled log reader?)",
            if dropped == 1 { "line" } else { "lines" }
        );
        self.line(
            &Record::builder()
                .level(Level::Warn)
                .args(args)
                .key_values(&fields)
                .build(),
            now,
        )
    }
}

/// `[grace 2026-11-28T15:04:07.123Z] warning: message`, at most [`log_sink::MAX_LINE_BYTES`] bytes: a
/// longer message is cut and says how long it was.
fn text_line(record: &Record<'_>, now: SystemTime) -> String {
    let label = match record.level() {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
        Level::Trace => "trace: ",
    };
    let message = record.args().to_string();
    let message = one_line(&message);
    let mut line = format!("[grace {}] {label}", utc_timestamp(now));
    let room = log_sink::MAX_LINE_BYTES.saturating_sub(line.len() + 1);
    if message.len() <= room {
        line.push_str(&message);
    } else {
        let mark = format!("… ({} bytes in all)", message.len());
        line.push_str(cut(&message, room.saturating_sub(mark.len())));
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
    if !text
        .chars()
        .any(|character| character.is_control() && character != '\t')
    {
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
    let mut fields = JsonFields {
        event: None,
        rest: String::new(),
        characters,
    };
    let _ = record.key_values().visit(&mut fields);
    let level = record.level().as_str().to_ascii_lowercase();
    let event = fields.event.unwrap_or_else(|| "\"log\"".to_string());
    let mut line = format!(
        "{{\"ts\":\"{}\",\"level\":\"{level}\",\"event\":{event},\"msg\":",
        utc_timestamp(now)
    );
    push_json_string(&mut line, &record.args().to_string(), characters);
    line.push_str(&fields.rest);
    line.push_str("}\n");
    line
}

/// Collects a record's key-values as JSON members; numbers and booleans stay unquoted.
struct JsonFields {
    event: Option<String>,
    rest: String,
    /// How many characters a string value keeps, if it must be cut.
    characters: Option<usize>,
}

impl<'kvs> VisitSource<'kvs> for JsonFields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let mut rendered = String::new();
        if let Some(number) = value.to_i64() {
            let _ = write!(rendered, "{number}");
        } else if let Some(number) = value.to_u64() {
            let _ = write!(rendered, "{number}");
        } else if let Some(flag) = value.to_bool() {
            let _ = write!(rendered, "{flag}");
        } else {
            // The event names the line: never cut.
            let characters = self.characters.filter(|_| key.as_str() != "event");
            push_json_string(&mut rendered, &value.to_string(), characters);
        }
        if key.as_str() == "event" {
            self.event = Some(rendered);
        } else {
            self.rest.push(',');
            push_json_string(&mut self.rest, key.as_str(), None);
            self.rest.push(':');
            self.rest.push_str(&rendered);
        }
        Ok(())
    }
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
    humantime::format_rfc3339_millis(time).to_string()
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
            let fields: [(&str, Value<'_>); 3] = [
                ("event", Value::from("escalated")),
                ("pid", Value::from(pid)),
                ("name", Value::from(name)),
            ];
            let args = format_args!("SIGKILL to {pid}");
            *line = json_line(
                &Record::builder()
                    .level(Level::Warn)
                    .args(args)
                    .key_values(&fields)
                    .build(),
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
    fn a_line_is_never_longer_than_one_write() {
        let long = "a \"quoted\" é\u{1b}".repeat(1000);
        let fields: [(&str, Value<'_>); 4] = [
            ("event", Value::from("shell_did_not_exec")),
            ("count", Value::from(1000)),
            ("names", Value::from(long.as_str())),
            ("pids", Value::from(long.as_str())),
        ];
        let args = format_args!("{long}");
        let record = Record::builder()
            .level(Level::Warn)
            .args(args)
            .key_values(&fields)
            .build();
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
        let short = Record::builder()
            .level(Level::Info)
            .args(format_args!("hi"))
            .build();
        assert_eq!(
            text_line(&short, UNIX_EPOCH),
            "[grace 1970-01-01T00:00:00.000Z] hi\n"
        );
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
