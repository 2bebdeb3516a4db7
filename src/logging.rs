//! grace's log: one line per event on stderr, timestamped and prefixed so it stands out from the child's
//! output, or one JSON object per line for log pipelines. Writing never panics and never stops grace: a
//! failed write is dropped.
//!
//! Every lifecycle line carries structured fields through `log`'s key-values (`event = "escalated"`,
//! `pid = 7`…): the text format shows only the message, the JSON format shows the fields too.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::cli::LogFormat;

/// The `log` backend: formats each record into one buffer and writes it with one system call, so lines
/// from grace are never interleaved with each other mid-line.
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
        let line = match self.format {
            LogFormat::Text => text_line(record, now),
            LogFormat::Json => json_line(record, now),
        };
        // stderr is unbuffered; a closed one gives EPIPE (grace's own SIGPIPE is blocked and never forwarded).
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `[grace 2026-11-28T15:04:07.123Z] warning: message`.
fn text_line(record: &Record<'_>, now: SystemTime) -> String {
    let label = match record.level() {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
        Level::Trace => "trace: ",
    };
    let message = record.args().to_string();
    format!(
        "[grace {}] {label}{}\n",
        utc_timestamp(now),
        one_line(&message)
    )
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
/// carry none (debug detail, unexpected errors).
fn json_line(record: &Record<'_>, now: SystemTime) -> String {
    let mut fields = JsonFields {
        event: None,
        rest: String::new(),
    };
    let _ = record.key_values().visit(&mut fields);
    let level = record.level().as_str().to_ascii_lowercase();
    let event = fields.event.unwrap_or_else(|| "\"log\"".to_string());
    let mut line = format!(
        "{{\"ts\":\"{}\",\"level\":\"{level}\",\"event\":{event},\"msg\":",
        utc_timestamp(now)
    );
    push_json_string(&mut line, &record.args().to_string());
    line.push_str(&fields.rest);
    line.push_str("}\n");
    line
}

/// Collects a record's key-values as JSON members; numbers and booleans stay unquoted.
struct JsonFields {
    event: Option<String>,
    rest: String,
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
            push_json_string(&mut rendered, &value.to_string());
        }
        if key.as_str() == "event" {
            self.event = Some(rendered);
        } else {
            self.rest.push(',');
            push_json_string(&mut self.rest, key.as_str());
            self.rest.push(':');
            self.rest.push_str(&rendered);
        }
        Ok(())
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
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
    out.push('"');
}

/// `2026-11-28T15:04:07.123Z`.
pub fn utc_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
