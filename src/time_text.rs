//! Durations and times as text: reading `1m30s`, writing `1m 30s`, and the log's RFC 3339 timestamps.
//!
//! The same text as the `humantime` crate reads and writes (its property tests below hold this code to it),
//! in a fifth of the code, and without its two panics: a clock set before 1970, or after 9999, made its
//! timestamp panic, and PID 1 must not.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Seconds in a month and a year as humantime counts them: 30.44 and 365.25 days.
const MONTH: u64 = 2_630_016;
const YEAR: u64 = 31_557_600;

/// Reads a duration as humantime does: numbers, each followed by a unit (`ns`, `us`/`µs`, `ms`, `s`/`sec`,
/// `m`/`min`, `h`/`hr`, `d`, `w`, `M`/`months`, `y`/`years`, and their long forms), summed; a decimal
/// fraction where it gives a whole number of nanoseconds (or seconds, from hours up); whitespace anywhere
/// between. `None` if it is not one, or too large for a `Duration`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut reader = Reader {
        rest: text.chars(),
        text,
    };
    let mut number = reader.first_digit()??;
    let mut total = Duration::ZERO;
    'numbers: loop {
        let mut fraction = None;
        let mut unit_start = reader.offset();
        while let Some(character) = reader.rest.next() {
            match character {
                '0'..='9' => number = number.checked_mul(10)?.checked_add(digit(character))?,
                character if character.is_whitespace() => {}
                'a'..='z' | 'A'..='Z' | 'µ' => break,
                '.' => {
                    fraction = Some(reader.fraction(&mut unit_start)?);
                    break;
                }
                _ => return None,
            }
            unit_start = reader.offset();
        }
        let mut unit_end = reader.offset();
        while let Some(character) = reader.rest.next() {
            match character {
                '0'..='9' => {
                    total = add(total, number, fraction, text.get(unit_start..unit_end)?)?;
                    number = digit(character);
                    continue 'numbers;
                }
                character if character.is_whitespace() => break,
                'a'..='z' | 'A'..='Z' | 'µ' => {}
                _ => return None,
            }
            unit_end = reader.offset();
        }
        total = add(total, number, fraction, text.get(unit_start..unit_end)?)?;
        match reader.first_digit()? {
            Some(next) => number = next,
            None => return Some(total),
        }
    }
}

struct Reader<'a> {
    rest: std::str::Chars<'a>,
    text: &'a str,
}

impl Reader<'_> {
    fn offset(&self) -> usize {
        self.text.len() - self.rest.as_str().len()
    }

    /// After whitespace: `Some(Some(digit))`, `Some(None)` at the end, `None` for anything else.
    fn first_digit(&mut self) -> Option<Option<u64>> {
        for character in self.rest.by_ref() {
            match character {
                '0'..='9' => return Some(Some(digit(character))),
                character if character.is_whitespace() => {}
                _ => return None,
            }
        }
        Some(None)
    }

    /// The digits after a decimal point, as numerator and denominator (a power of ten); moves `unit_start`
    /// past them. At least one digit.
    fn fraction(&mut self, unit_start: &mut usize) -> Option<(u64, u64)> {
        let (mut numerator, mut denominator) = (0u64, 1u64);
        while let Some(character) = self.rest.next() {
            match character {
                '0'..='9' => {
                    denominator = denominator.checked_mul(10)?;
                    numerator = numerator * 10 + digit(character);
                }
                character if character.is_whitespace() => {}
                'a'..='z' | 'A'..='Z' | 'µ' => break,
                _ => return None,
            }
            *unit_start = self.offset();
        }
        (denominator > 1).then_some((numerator, denominator))
    }
}

fn digit(character: char) -> u64 {
    u64::from(character) - u64::from('0')
}

/// `total` plus `number` (and `fraction`) of `unit`.
fn add(total: Duration, number: u64, fraction: Option<(u64, u64)>, unit: &str) -> Option<Duration> {
    // (seconds, nanoseconds) in one unit.
    let (seconds, nanos) = match unit {
        "nanos" | "nsec" | "ns" => (0, 1),
        "usec" | "us" | "µs" => (0, 1_000),
        "millis" | "msec" | "ms" => (0, 1_000_000),
        "seconds" | "second" | "secs" | "sec" | "s" => (1, 0),
        "minutes" | "minute" | "min" | "mins" | "m" => (60, 0),
        "hours" | "hour" | "hr" | "hrs" | "h" => (3_600, 0),
        "days" | "day" | "d" => (86_400, 0),
        "weeks" | "week" | "wk" | "wks" | "w" => (604_800, 0),
        "months" | "month" | "M" => (MONTH, 0),
        "years" | "year" | "yr" | "yrs" | "y" => (YEAR, 0),
        _ => return None,
    };
    let mut total = plus(
        total,
        number.checked_mul(seconds)?,
        number.checked_mul(nanos)?,
    )?;
    if let Some((numerator, denominator)) = fraction {
        let exact = |value: u64| (value % denominator == 0).then_some(value / denominator);
        total = match (seconds, nanos) {
            (0, 1) => return None,
            // Up to minutes the fraction counts in nanoseconds, from hours up in seconds.
            (0..=60, _) => plus(
                total,
                0,
                exact(numerator.checked_mul(seconds * NANOS_PER_SECOND + nanos)?)?,
            )?,
            _ => plus(total, exact(numerator.checked_mul(seconds)?)?, 0)?,
        };
    }
    Some(total)
}

fn plus(total: Duration, seconds: u64, nanos: u64) -> Option<Duration> {
    let nanos = u64::from(total.subsec_nanos()).checked_add(nanos)?;
    let seconds = seconds.checked_add(nanos / NANOS_PER_SECOND)?;
    let seconds = total.as_secs().checked_add(seconds)?;
    Some(Duration::new(seconds, (nanos % NANOS_PER_SECOND) as u32))
}

/// `8s`, `1m 30s`, `500ms`, `1day 2h`: as humantime writes durations (a year 365.25 days, a month 30.44).
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let nanos = u64::from(duration.subsec_nanos());
    if seconds == 0 && nanos == 0 {
        return "0s".to_string();
    }
    let in_year = seconds % YEAR;
    let in_day = in_year % MONTH % 86_400;
    let parts: [(u64, &str, bool); 9] = [
        (seconds / YEAR, "year", true),
        (in_year / MONTH, "month", true),
        (in_year % MONTH / 86_400, "day", true),
        (in_day / 3_600, "h", false),
        (in_day % 3_600 / 60, "m", false),
        (in_day % 60, "s", false),
        (nanos / 1_000_000, "ms", false),
        (nanos / 1_000 % 1_000, "us", false),
        (nanos % 1_000, "ns", false),
    ];
    let mut text = String::new();
    for (value, name, plural) in parts {
        if value > 0 {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{value}{name}");
            if plural && value > 1 {
                text.push('s');
            }
        }
    }
    text
}

/// `2026-11-28T15:04:07.123Z`: UTC, to the millisecond (truncated). A time before 1970 is written as
/// what it is, not refused.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let mut text = String::with_capacity(24);
    push_rfc3339_millis(&mut text, time);
    text
}

/// [`rfc3339_millis`], appended to `text`: every log line starts with one.
pub fn push_rfc3339_millis(text: &mut String, time: SystemTime) {
    // In i64, whose formatting the binary has anyway (i128's would add its own).
    let millis: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // Rounded down, as after 1970.
        Err(before) => i64::try_from(before.duration().as_nanos().div_ceil(1_000_000))
            .map_or(i64::MIN, |millis| -millis),
    };
    let seconds = millis.div_euclid(1_000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        let _ = write!(
            text,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            of_day / 3_600,
            of_day % 3_600 / 60,
            of_day % 60,
            millis.rem_euclid(1_000)
        );
        return;
    }
    // By hand rather than format!: the formatting machinery took 4,000 instructions for it, more than the
    // rest of a short log line.
    for (value, digits, after) in [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (of_day / 3_600, 2, ':'),
        (of_day % 3_600 / 60, 2, ':'),
        (of_day % 60, 2, '.'),
        (millis.rem_euclid(1_000), 3, 'Z'),
    ] {
        push_digits(text, value, digits);
        text.push(after);
    }
}

/// `value` (0 or more) in `digits` decimal digits, zero-padded.
fn push_digits(text: &mut String, value: i64, digits: u32) {
    for place in (0..digits).rev() {
        let digit = value / 10_i64.pow(place) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`); `days` is at
/// most ±2^54 or so (i64 milliseconds), far from overflowing.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let of_era = days.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * of_year + 2) / 153;
    let day = of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// humantime's answer, or None where it panics (an overflow in Duration::new).
    fn humantime_parse(text: &str) -> Option<Option<Duration>> {
        let text = text.to_string();
        std::panic::catch_unwind(move || humantime::parse_duration(&text).ok()).ok()
    }

    #[test]
    fn reads_what_humantime_reads() {
        for text in [
            "0",
            "",
            " ",
            "5",
            "5s",
            "500ms",
            "1m30s",
            "1m 30s",
            "1 m",
            "1h 2m 3s 4ms 5us 6ns",
            "1.5s",
            "1.5h",
            "1.333h",
            "0.5m",
            "1.s",
            ".5s",
            "1.5ns",
            "2µs",
            "2μs",
            "3 days",
            "1M",
            "1y",
            "1 0s",
            "10s5",
            "5x",
            "5 s 3",
            "1d1d",
            "18446744073709551615s",
            "18446744073709551616s",
            "18446744073709551615s 999999999ns",
            "5000000000ns",
            "1e3s",
            "-1s",
            "1,5s",
            "5 sec ",
            "\u{a0}5s",
            "5s\u{2003}2m",
            "0.0000000001s",
            "1.0000000000000000001s",
            "9y 11M 30d",
        ] {
            if let Some(expected) = humantime_parse(text) {
                assert_eq!(parse_duration(text), expected, "{text:?}");
            }
        }
    }

    #[test]
    fn writes_what_humantime_writes() {
        for seconds in [
            0,
            1,
            59,
            60,
            90,
            3_600,
            86_399,
            86_400,
            MONTH,
            YEAR,
            366 * 86_400,
            u64::MAX,
        ] {
            for nanos in [0, 1, 999, 1_000, 500_000_000, 999_999_999] {
                let duration = Duration::new(seconds, nanos);
                assert_eq!(
                    format_duration(duration),
                    humantime::format_duration(duration).to_string()
                );
            }
        }
    }

    #[test]
    fn timestamps_are_utc_to_the_millisecond() {
        let at = |seconds: u64, nanos: u32| UNIX_EPOCH + Duration::new(seconds, nanos);
        for (time, text) in [
            (at(0, 0), "1970-01-01T00:00:00.000Z"),
            (at(951_782_400, 5_999_999), "2000-02-29T00:00:00.005Z"),
            (at(1_795_878_247, 123_000_000), "2026-11-28T15:04:07.123Z"),
            (at(253_402_300_799, 999_999_999), "9999-12-31T23:59:59.999Z"),
            (at(253_402_300_800, 0), "10000-01-01T00:00:00.000Z"),
            (
                UNIX_EPOCH - Duration::from_millis(1),
                "1969-12-31T23:59:59.999Z",
            ),
            (
                UNIX_EPOCH - Duration::from_nanos(1),
                "1969-12-31T23:59:59.999Z",
            ),
            (
                UNIX_EPOCH - Duration::from_secs(86_400 * 365),
                "1969-01-01T00:00:00.000Z",
            ),
        ] {
            assert_eq!(rfc3339_millis(time), text);
        }
    }

    proptest! {
        #[test]
        fn reads_generated_durations_as_humantime_does(
            text in "[0-9]{0,6}(\\.[0-9]{0,4})?( ?(ns|us|µs|ms|s|sec|secs|m|min|mins|h|hr|d|day|days|w|wk|M|months|y|yrs|x|S)?){0,1}( ?[0-9]{1,3}[a-zA-Zµ]{0,3})?",
        ) {
            if let Some(expected) = humantime_parse(&text) {
                prop_assert_eq!(parse_duration(&text), expected, "{:?}", text);
            }
        }

        #[test]
        fn reads_arbitrary_text_as_humantime_does(text in "[0-9 .a-zA-Zµ\u{a0},+-]{0,12}") {
            if let Some(expected) = humantime_parse(&text) {
                prop_assert_eq!(parse_duration(&text), expected, "{:?}", text);
            }
        }

        #[test]
        fn writes_durations_as_humantime_does(seconds in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let duration = Duration::new(seconds, nanos);
            prop_assert_eq!(format_duration(duration), humantime::format_duration(duration).to_string());
        }

        #[test]
        fn timestamps_are_humantimes_until_9999(millis in 0u64..253_402_300_800_000) {
            let time = UNIX_EPOCH + Duration::from_millis(millis) + Duration::from_nanos(millis % 997_000);
            prop_assert_eq!(rfc3339_millis(time), humantime::format_rfc3339_millis(time).to_string());
        }
    }
}
