//! What the bench reads about an init from the host's /proc.

use crate::error::{Context, Result};
use crate::sys;
use std::fs;
use std::io::Read;

/// Thread ids of a process (an init is normally single-threaded, but the bench does not rely
/// on it).
fn tasks(pid: i32) -> Result<Vec<i32>> {
    let mut tids = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing threads of {pid}"))?
    {
        if let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Every child of `pid` (all its threads' `children` lists).
pub fn children(pid: i32) -> Result<Vec<i32>> {
    let mut children = Vec::new();
    for tid in tasks(pid)? {
        let list = fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
            .with_context(|| format!("reading children of {pid}"))?;
        children.extend(
            list.split_whitespace()
                .filter_map(|word| word.parse::<i32>().ok()),
        );
    }
    Ok(children)
}

/// True when the only child on `pid`'s own children list is `main_child`, i.e. every orphan
/// reparented to the init has been reaped. Reads only the head of the list: with 20,000
/// zombies queued the full list is 120 kB, and any second entry already answers "not yet".
pub fn only_child_left(pid: i32, main_child: i32) -> Result<bool> {
    let mut head = [0u8; 256];
    let mut file = fs::File::open(format!("/proc/{pid}/task/{pid}/children"))
        .with_context(|| format!("opening the children list of {pid}"))?;
    let length = file.read(&mut head)?;
    if length == head.len() {
        return Ok(false);
    }
    let text = std::str::from_utf8(&head[..length]).unwrap_or("");
    Ok(text
        .split_whitespace()
        .all(|word| word.parse::<i32>() == Ok(main_child)))
}

/// The fields of /proc/PID/stat after the command name (which may contain spaces).
fn stat_fields(pid: i32) -> Result<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .with_context(|| format!("malformed /proc/{pid}/stat"))?;
    Ok(after_name.split_whitespace().map(str::to_owned).collect())
}

/// The process state letter (`S`, `R`, `T`, `Z`…).
pub fn state(pid: i32) -> Result<char> {
    stat_fields(pid)?
        .first()
        .and_then(|field| field.chars().next())
        .with_context(|| format!("no state in /proc/{pid}/stat"))
}

/// CPU time of the process in nanoseconds. The kernel derives utime+stime from the scheduler's
/// exact run time (`sum_exec_runtime`) but prints them in 10 ms clock ticks; the same run time
/// is in /proc/PID/task/TID/schedstat in nanoseconds, so the bench reads that and falls back
/// to utime+stime where schedstat is missing.
pub fn cpu_time_ns(pid: i32) -> Result<u64> {
    if !std::path::Path::new("/proc/self/schedstat").exists() {
        return utime_stime_ns(pid); // a kernel without CONFIG_SCHED_INFO
    }
    let mut total = 0u64;
    for tid in tasks(pid)? {
        // A thread that exits between the listing and this read is skipped.
        let Ok(schedstat) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) else {
            continue;
        };
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .with_context(|| format!("malformed schedstat of {pid}/{tid}"))?;
    }
    Ok(total)
}

/// utime+stime (fields 14 and 15 of /proc/PID/stat) in nanoseconds, at clock-tick resolution.
pub fn utime_stime_ns(pid: i32) -> Result<u64> {
    let fields = stat_fields(pid)?;
    // Field 3 (state) is index 0 here, so fields 14 and 15 are indices 11 and 12.
    let ticks: u64 = fields
        .get(11..13)
        .with_context(|| format!("short /proc/{pid}/stat"))?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(ticks * 1_000_000_000 / sys::clock_ticks_per_second())
}

/// A `Name: value kB` or `Name: count` field of a status file.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Voluntary plus involuntary context switches, summed over the process's threads.
pub fn context_switches(pid: i32) -> Result<u64> {
    let mut total = 0;
    for tid in tasks(pid)? {
        let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
            .with_context(|| format!("reading status of {pid}/{tid}"))?;
        total += status_field(&status, "voluntary_ctxt_switches").unwrap_or(0)
            + status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(total)
}

/// Resident set size now and at its peak (VmRSS, VmHWM), in bytes.
pub fn memory_bytes(pid: i32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss = status_field(&status, "VmRSS").with_context(|| format!("no VmRSS for {pid}"))?;
    let peak = status_field(&status, "VmHWM").with_context(|| format!("no VmHWM for {pid}"))?;
    Ok((rss * 1024, peak * 1024))
}

/// Number of processes on the host (entries of /proc), to keep the orphan count below pid_max.
pub fn process_count() -> usize {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_str()
                        .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The kernel's pid_max.
pub fn pid_max() -> Option<usize> {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse_with_and_without_units() {
        let status = "Name:\tcatatonit\nVmHWM:\t     812 kB\nVmRSS:\t     640 kB\nvoluntary_ctxt_switches:\t3\nnonvoluntary_ctxt_switches:\t1\n";
        assert_eq!(status_field(status, "VmRSS"), Some(640));
        assert_eq!(status_field(status, "VmHWM"), Some(812));
        assert_eq!(status_field(status, "voluntary_ctxt_switches"), Some(3));
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches"), Some(1));
        assert_eq!(status_field(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id() as i32;
        assert!(cpu_time_ns(pid).unwrap() > 0);
        assert!(memory_bytes(pid).unwrap().0 > 0);
        assert!("RSD".contains(state(pid).unwrap()));
    }
}
