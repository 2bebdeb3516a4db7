//! Which service a process belongs to: the service whose process it descends from, or — once it has been
//! orphaned, as a `setsid` or double-forked daemon re-parented to grace (or, as PID 1, to grace) — the service
//! named in its environment. Every process grace starts for a service gets `GRACE_SERVICE=NAME`, which it
//! passes on to whatever it starts; /proc/PID/environ shows it for as long as the process lives.
//!
//! What escapes: an orphan that was started with an environment of its own making (`env -i`, an `execve`
//! with a fresh environment) and no longer descends from the service's process. Such a process, and any
//! process that entered the namespace from outside (`kubectl exec`), belongs to no service: it is stopped
//! after every service, and signalled with the rest at grace period − cleanup timeout.

use std::collections::HashMap;

use super::plan::ServiceId;
use crate::tree::Process;

/// The environment variable that names a process's service.
pub const MARKER: &str = "GRACE_SERVICE";

/// Attribution of processes to services, remembered per process (pid and start time), since a process
/// never changes service.
#[derive(Debug, Default)]
pub struct Membership {
    by_environment: HashMap<(i32, u64), Option<ServiceId>>,
}

impl Membership {
    /// The service of each of `members` (a listing of the tree), in the same order: `own` maps each service's
    /// own live process (pid) to it; `named` maps a service name, as found in an environment, to it.
    pub fn attribute(
        &mut self,
        members: &[Process],
        own: &HashMap<i32, ServiceId>,
        named: impl Fn(&[u8]) -> Option<ServiceId>,
    ) -> Vec<Option<ServiceId>> {
        let parents: HashMap<i32, i32> = members
            .iter()
            .map(|process| (process.pid, process.parent_pid))
            .collect();
        let mut resolved: HashMap<i32, Option<ServiceId>> = HashMap::new();
        let by_ancestry = |pid: i32, resolved: &HashMap<i32, Option<ServiceId>>| {
            let mut current = pid;
            // A chain longer than the listing would be a loop: a pid reused while the listing was read.
            for _ in 0..=parents.len() {
                if let Some(&service) = own.get(&current) {
                    return Some(service);
                }
                if let Some(&known) = resolved.get(&current) {
                    return known;
                }
                current = *parents.get(&current)?;
            }
            None
        };
        let mut attributed = Vec::with_capacity(members.len());
        for process in members {
            let mut service = by_ancestry(process.pid, &resolved);
            if service.is_none() {
                let key = (process.pid, process.start_time);
                service = *self
                    .by_environment
                    .entry(key)
                    .or_insert_with(|| marker_of(process.pid).and_then(|name| named(&name)));
            }
            resolved.insert(process.pid, service);
            attributed.push(service);
        }
        attributed
    }

    /// Forgets processes that are gone, so that the memory stays the size of the tree.
    pub fn retain(&mut self, members: &[Process]) {
        let live: std::collections::HashSet<(i32, u64)> = members
            .iter()
            .map(|process| (process.pid, process.start_time))
            .collect();
        self.by_environment.retain(|key, _| live.contains(key));
    }
}

/// The value of `GRACE_SERVICE` in /proc/PID/environ, if it has one.
pub fn marker_of(pid: i32) -> Option<Vec<u8>> {
    let environment = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    find_marker(&environment)
}

fn find_marker(environment: &[u8]) -> Option<Vec<u8>> {
    let prefix = format!("{MARKER}=");
    environment
        .split(|&byte| byte == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i32, parent_pid: i32) -> Process {
        Process {
            pid,
            parent_pid,
            name: format!("p{pid}"),
            state: 'S',
            start_time: pid as u64,
            exited: false,
            wait_status: None,
            group_id: pid,
            entered_from_outside: false,
        }
    }

    #[test]
    fn descendants_belong_to_the_service_they_descend_from() {
        // grace is 1; 10 is service 0's process, 20 service 1's; 11 and 12 descend from 10; 21 from 20;
        // 30 is an orphan re-parented to grace, 40 a visitor whose parent is outside (0).
        let members = [
            process(10, 1),
            process(11, 10),
            process(12, 11),
            process(20, 1),
            process(21, 20),
            process(30, 1),
            process(40, 0),
        ];
        let own = HashMap::from([(10, 0), (20, 1)]);
        let mut membership = Membership::default();
        // /proc/30/environ and /proc/40/environ do not exist here (or are not grace's), so both stay unknown.
        let attributed = membership.attribute(&members, &own, |_| None);
        assert_eq!(
            attributed,
            [Some(0), Some(0), Some(0), Some(1), Some(1), None, None]
        );
    }

    #[test]
    fn the_marker_is_found_among_the_variables() {
        let environment = b"PATH=/bin\0GRACE_SERVICE=db-proxy\0HOME=/\0";
        assert_eq!(find_marker(environment), Some(b"db-proxy".to_vec()));
        assert_eq!(find_marker(b"PATH=/bin\0XGRACE_SERVICE=no\0"), None);
        assert_eq!(find_marker(b""), None);
    }

    #[test]
    fn an_orphan_is_named_by_its_environment() {
        // Synchronised on its first line: until a new image has set up its stack, /proc shows an empty
        // environment (the parent returns from the spawn before that). The shell then waits for its own
        // child, rather than exec it, which would open that window again.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo up; sleep 30; true"])
            .env(MARKER, "logs")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let pid = child.id() as i32;
        let members = [process(pid, 1)];
        let mut membership = Membership::default();
        let attributed = membership.attribute(&members, &HashMap::new(), |name| {
            (name == b"logs").then_some(3)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(attributed, [Some(3)]);
    }
}
