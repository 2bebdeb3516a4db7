//! How grace's log words things: durations, counts, wait statuses, senders, and lists of processes.

use std::time::Duration;

use crate::signals::Signal;
use crate::tree::{self, Process};

/// How many processes the JSON `pids` and `names` fields list; `count` always gives the total.
pub const LISTED_IN_A_FIELD: usize = 100;

/// `exited with status 3`, `was killed by SIGKILL (status 137)`.
pub fn wait_status(raw_status: i32, status: u8) -> String {
    use std::os::unix::process::ExitStatusExt;
    let exit = std::process::ExitStatus::from_raw(raw_status);
    match exit.signal().and_then(Signal::from_number) {
        Some(signal) if exit.core_dumped() => {
            format!("was killed by {signal}, core dumped (status {status})")
        }
        Some(signal) => format!("was killed by {signal} (status {status})"),
        None => format!("exited with status {status}"),
    }
}

/// Who sent a signal: a pid of this namespace, or (pid 0) the kernel or a process outside the namespace.
pub fn sender(pid: i32) -> String {
    if pid == 0 {
        "the kernel or outside the namespace".to_string()
    } else {
        format!(
            "pid {pid}{}",
            tree::read_process(pid)
                .map(|process| format!(" ({})", process.name))
                .unwrap_or_default()
        )
    }
}

/// `1 process`, `3 processes`.
pub fn processes(count: usize) -> String {
    if count == 1 {
        "1 process".to_string()
    } else {
        format!("{count} processes")
    }
}

/// `remains` or `remain`.
pub fn remain(count: usize) -> &'static str {
    if count == 1 {
        "remains"
    } else {
        "remain"
    }
}

/// `12,15`, for the JSON fields: the first [`LISTED_IN_A_FIELD`].
pub fn pid_list(processes: &[Process]) -> String {
    processes
        .iter()
        .take(LISTED_IN_A_FIELD)
        .map(|process| process.pid.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `tee,controller`, for the JSON fields: the first [`LISTED_IN_A_FIELD`].
pub fn name_list(processes: &[Process]) -> String {
    processes
        .iter()
        .take(LISTED_IN_A_FIELD)
        .map(|process| process.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `1.234s`, for measured times.
pub fn seconds(duration: Duration) -> String {
    // Integer arithmetic: formatting an f64 would link ~9 KiB of float printing, and a u128 1 KiB more.
    let millis = millis(duration);
    format!("{}.{:03}s", millis / 1000, millis % 1000)
}

/// `0.4ms`, `12.3ms`: short measured delays.
pub fn micros(duration: Duration) -> String {
    let tenths = u64::try_from(duration.as_micros() / 100).unwrap_or(u64::MAX);
    format!("{}.{}ms", tenths / 10, tenths % 10)
}

/// Whole milliseconds, for the JSON fields.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `8s`, `1m 30s`, `500ms`, for configured durations: as the operator wrote them.
pub fn configured(duration: Duration) -> String {
    crate::time_text::format_duration(duration)
}

/// `978 python3, 2 sh, …`: how many there are of each kind, the largest first (ties in the kinds' order, so
/// that a line is the same from run to run), the first `shown` of them, then `…` if there are more. Each kind
/// is given as its order (a text whose byte order is the kinds' order, see [`order_of`]) and its label.
pub fn counted_kinds(kinds: impl IntoIterator<Item = (String, String)>, shown: usize) -> String {
    count_kinds(kinds.into_iter().collect(), shown)
}

/// [`counted_kinds`] without the generic iterator: one copy of the map's code for every caller.
fn count_kinds(kinds: Vec<(String, String)>, shown: usize) -> String {
    let mut counts: std::collections::BTreeMap<String, (String, usize)> = Default::default();
    for (order, label) in kinds {
        counts.entry(order).or_insert((label, 0)).1 += 1;
    }
    let mut ordered: Vec<(String, usize)> = counts.into_values().collect();
    // A stable sort: kinds of the same count stay in the map's order.
    crate::sort::by_key(&mut ordered, |(_, count)| {
        u64::MAX - u64::try_from(*count).unwrap_or(u64::MAX)
    });
    let mut parts: Vec<String> = ordered
        .iter()
        .take(shown)
        .map(|(label, count)| format!("{count} {label}"))
        .collect();
    if ordered.len() > shown {
        parts.push("…".to_string());
    }
    parts.join(", ")
}

/// The order of a kind made of `parts` (names, and numbers given zero-padded to one width), as a text that
/// sorts as the tuple of the parts does: the parts joined by NUL, which sorts before any character of a name.
pub fn order_of(parts: &[&str]) -> String {
    parts.join("\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_times_read_in_fixed_decimals() {
        assert_eq!(seconds(Duration::from_millis(8_000)), "8.000s");
        assert_eq!(seconds(Duration::from_micros(1_234_567)), "1.234s");
        assert_eq!(seconds(Duration::from_millis(5)), "0.005s");
        assert_eq!(micros(Duration::from_micros(2_460)), "2.4ms");
        assert_eq!(micros(Duration::from_micros(155_800)), "155.8ms");
        assert_eq!(micros(Duration::ZERO), "0.0ms");
    }
}
