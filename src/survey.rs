//! The survivors' report: what remains of the tree shortly before a SIGKILL, read from /proc while the
//! evidence exists (a killed process no longer shows what it did with SIGTERM), so that the SIGKILL itself
//! goes out on time however large the tree.
//!
//! The report is bounded: full lines for the main child and the first few others, then one summary of the
//! rest by name and disposition ("and 980 more: 980 python3 ignoring SIGTERM"). Reading stops at a time
//! budget; what it did not reach is reported as not examined.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::diagnosis::{self, Diagnosis, Disposition};
use crate::signals::Signal;
use crate::tree::Process;
use crate::wording;

/// How many processes get a full line (main child included) before the rest are summarised.
pub const DETAILED: usize = 10;

/// How many (name, disposition) groups the summary names before it says "…".
const SUMMARY_GROUPS: usize = 6;

/// One process as the survey saw it.
#[derive(Clone, Debug)]
pub struct Surveyed {
    pub process: Process,
    /// The signal it was sent (the forwarded stop signal for the main child, SIGTERM for the rest).
    pub sent: Signal,
    pub detail: Detail,
}

/// How much the survey learnt about one process.
#[derive(Clone, Debug)]
pub enum Detail {
    /// A full diagnosis: command line, disposition, hint.
    Full(Diagnosis),
    /// Its disposition only.
    Disposition(Disposition),
    /// The time budget ran out first, or it appeared after the survey.
    NotExamined,
}

impl Detail {
    fn disposition(&self) -> Disposition {
        match self {
            Detail::Full(diagnosis) => diagnosis.disposition,
            Detail::Disposition(disposition) => *disposition,
            Detail::NotExamined => Disposition::Unknown,
        }
    }
}

/// The processes that remained at the survey, main child first, then parents before their children (see
/// [`crate::tree::parents_first`]); and a pidfd on each of the first of them (as many as the descriptor limit
/// allows), so that their SIGKILL needs no more reading of /proc: a thousand SIGKILLs then go out in a couple
/// of milliseconds, however busy the machine is with the exits of the first ones.
#[derive(Debug, Default)]
pub struct Survey {
    pub entries: Vec<Surveyed>,
    pub pins: HashMap<(i32, u64), OwnedFd>,
}

impl Survey {
    /// Surveys `members` (a listing of the tree), reading /proc until `budget_end`; `sent` says which signal
    /// each process was sent; `pin` opens a checked pidfd on a process, for up to `max_pins` of them.
    pub fn take(
        mut members: Vec<Process>,
        main_pid: i32,
        sent: impl Fn(&Process) -> Signal,
        pin: impl Fn(&Process) -> Option<OwnedFd>,
        max_pins: usize,
        budget_end: Instant,
    ) -> Survey {
        // The main child first: it is the one the operator asks about. The rest keep the listing's order,
        // parents before their children, which their SIGKILL follows.
        crate::sort::by_key(&mut members, |process| u64::from(process.pid != main_pid));
        let parents: HashSet<i32> = members.iter().map(|process| process.parent_pid).collect();
        let mut pins = HashMap::new();
        for process in members.iter().filter(|process| process.pid != main_pid) {
            if pins.len() >= max_pins || Instant::now() >= budget_end {
                break;
            }
            if let Some(pidfd) = pin(process) {
                pins.insert(key(process), pidfd);
            }
        }
        let entries = members
            .into_iter()
            .enumerate()
            .map(|(index, process)| {
                let sent = sent(&process);
                let detail = if Instant::now() >= budget_end {
                    Detail::NotExamined
                } else if index < DETAILED {
                    let has_children = parents.contains(&process.pid);
                    Detail::Full(diagnosis::diagnose(&process, sent, true, has_children))
                } else {
                    Detail::Disposition(diagnosis::disposition_of(process.pid, sent))
                };
                Surveyed {
                    process,
                    sent,
                    detail,
                }
            })
            .collect();
        Survey { entries, pins }
    }

    /// The report for the processes that were still there at the SIGKILL (`present`, by pid and start time),
    /// in the survey's order; those the survey did not see (forked since) come last, not examined.
    pub fn survivors(
        &self,
        present: &[Process],
        sent: impl Fn(&Process) -> Signal,
    ) -> Vec<Surveyed> {
        let present_keys: HashSet<(i32, u64)> = present.iter().map(key).collect();
        let mut survivors: Vec<Surveyed> = self
            .entries
            .iter()
            .filter(|entry| present_keys.contains(&key(&entry.process)))
            .cloned()
            .collect();
        let surveyed: HashSet<(i32, u64)> = self
            .entries
            .iter()
            .map(|entry| key(&entry.process))
            .collect();
        survivors.extend(
            present
                .iter()
                .filter(|process| !surveyed.contains(&key(process)))
                .map(|process| Surveyed {
                    process: process.clone(),
                    sent: sent(process),
                    detail: Detail::NotExamined,
                }),
        );
        survivors
    }
}

/// A process's identity over time.
pub fn key(process: &Process) -> (i32, u64) {
    (process.pid, process.start_time)
}

/// `and 980 more: 978 python3 ignoring SIGTERM, 2 sh catching SIGTERM`, for the survivors past the detailed
/// ones; `None` when there are none.
pub fn summary(rest: &[Surveyed]) -> Option<String> {
    if rest.is_empty() {
        return None;
    }
    // Grouped by name, then disposition, then signal.
    let kinds = rest.iter().map(|entry| {
        let (name, disposition) = (&entry.process.name, entry.detail.disposition());
        let order = wording::order_of(&[
            name,
            &(disposition as u8).to_string(),
            &format!("{:02}", entry.sent.number()),
        ]);
        let label = format!("{name} {} {}", disposition.participle(), entry.sent);
        (order, label)
    });
    let groups = wording::counted_kinds(kinds, SUMMARY_GROUPS);
    Some(format!("and {} more: {groups}", rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i32, name: &str) -> Process {
        Process {
            pid,
            parent_pid: 1,
            group_id: pid,
            name: name.to_string(),
            state: 'S',
            start_time: 100 + pid as u64,
            exited: false,
            wait_status: None,
            entered_from_outside: false,
        }
    }

    fn entry(pid: i32, name: &str, disposition: Disposition) -> Surveyed {
        Surveyed {
            process: process(pid, name),
            sent: Signal::TERM,
            detail: Detail::Disposition(disposition),
        }
    }

    #[test]
    fn the_summary_groups_by_name_and_disposition_largest_first() {
        let mut rest: Vec<Surveyed> = (10..988)
            .map(|pid| entry(pid, "python3", Disposition::Ignores))
            .collect();
        rest.push(entry(2000, "sh", Disposition::Catches));
        rest.push(entry(2001, "sh", Disposition::Catches));
        assert_eq!(
            summary(&rest).unwrap(),
            "and 980 more: 978 python3 ignoring SIGTERM, 2 sh catching SIGTERM"
        );
        assert_eq!(summary(&[]), None);
    }

    /// Groups of the same size come in the order of (name, disposition, signal): a name before a longer
    /// one it begins, a disposition in its declared order, a signal by number.
    #[test]
    fn groups_of_the_same_size_come_in_the_kinds_order() {
        let mut rest = vec![
            entry(1, "ab", Disposition::Catches),
            entry(2, "a", Disposition::Default),
            entry(3, "b", Disposition::Catches),
            entry(4, "a", Disposition::Ignores),
            entry(5, "a", Disposition::Catches),
        ];
        let mut sent_kill = entry(6, "a", Disposition::Catches);
        sent_kill.sent = Signal::KILL;
        rest.push(sent_kill);
        let mut sent_quit = entry(7, "a", Disposition::Catches);
        sent_quit.sent = Signal::from_number(libc::SIGQUIT).unwrap();
        rest.push(sent_quit);
        rest.push(entry(8, "c", Disposition::Blocks));
        rest.push(entry(9, "c", Disposition::Blocks));
        assert_eq!(
            summary(&rest).unwrap(),
            "and 9 more: 2 c blocking SIGTERM, 1 a catching SIGQUIT, 1 a catching SIGKILL, 1 a catching SIGTERM, \
             1 a ignoring SIGTERM, 1 a at the default action for SIGTERM, …"
        );
    }

    #[test]
    fn the_summary_names_a_few_groups_then_stops() {
        let rest: Vec<Surveyed> = (0..20)
            .map(|index| entry(index, &format!("p{index:02}"), Disposition::Default))
            .collect();
        let line = summary(&rest).unwrap();
        assert!(line.starts_with("and 20 more: 1 p00 at the default action for SIGTERM"));
        assert!(line.ends_with(", …"), "{line}");
    }

    #[test]
    fn survivors_are_those_still_present_plus_those_forked_since() {
        let survey = Survey {
            entries: vec![
                entry(2, "main", Disposition::Ignores),
                entry(3, "exited", Disposition::Catches),
                entry(4, "stays", Disposition::Ignores),
            ],
            pins: HashMap::new(),
        };
        let reused = Process {
            start_time: 9999,
            ..process(3, "reused")
        };
        let present = [
            process(2, "main"),
            reused,
            process(4, "stays"),
            process(5, "new"),
        ];
        let survivors: Vec<(i32, String, bool)> = survey
            .survivors(&present, |_| Signal::TERM)
            .into_iter()
            .map(|entry| {
                let examined = !matches!(entry.detail, Detail::NotExamined);
                (entry.process.pid, entry.process.name, examined)
            })
            .collect();
        assert_eq!(
            survivors,
            [
                (2, "main".to_string(), true),
                (4, "stays".to_string(), true),
                (3, "reused".to_string(), false),
                (5, "new".to_string(), false),
            ]
        );
    }

    #[test]
    fn the_main_child_is_surveyed_first_and_the_budget_is_kept() {
        let me = crate::tree::read_process(std::process::id() as i32).unwrap();
        let others: Vec<Process> = (0..3).map(|_| me.clone()).collect();
        let mut members = vec![process(7, "other")];
        members.extend(others);
        let survey = Survey::take(
            members,
            me.pid,
            |_| Signal::TERM,
            |_| None,
            0,
            Instant::now(),
        );
        assert!(survey
            .entries
            .iter()
            .all(|entry| matches!(entry.detail, Detail::NotExamined)));
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let survey = Survey::take(
            vec![process(7, "other"), me.clone()],
            me.pid,
            |_| Signal::TERM,
            |_| None,
            0,
            far,
        );
        assert_eq!(survey.entries[0].process.pid, me.pid);
        assert!(matches!(survey.entries[0].detail, Detail::Full(_)));
    }
}
