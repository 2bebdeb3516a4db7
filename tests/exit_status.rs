//! grace exits with its main child's status: the code it exited with, 128+N when signal N killed it, and 0
//! for a status listed with -e/--success-exit; its last log line says which.

mod common;

use common::{run_to_end, sh, Grace, Mode, MODES};

/// Runs `sh -c SCRIPT` under grace and returns grace's exit code and its last log line.
fn status_of(grace: Grace, script: &str) -> (i32, String) {
    let (status, _stdout, log) = run_to_end(grace, &sh(script));
    let code = status
        .code()
        .unwrap_or_else(|| panic!("grace was killed: {status:?}\n{log}"));
    let last = log.lines().last().unwrap_or_default().to_string();
    (code, last)
}

/// Checks every code in `codes` in `mode`, several runs at a time; returns the failures, one per line.
fn check_exit_codes(mode: Mode, codes: &[i32]) -> Vec<String> {
    const THREADS: usize = 8;
    let chunk = codes.len().div_ceil(THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = codes
            .chunks(chunk)
            .map(|codes| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for &code in codes {
                        let (status, last) = status_of(Grace::new(mode), &format!("exit {code}"));
                        if status != code || !last.contains(&format!("exiting with status {code}"))
                        {
                            failures
                                .push(format!("{mode:?}: exit {code} gave {status}, log {last:?}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("worker"))
            .collect()
    })
}

#[test]
fn every_exit_code_passes_through() {
    let all: Vec<i32> = (0..=255).collect();
    let mut failures = Vec::new();
    if !common::subreaper_refusal_is_fatal() {
        failures = check_exit_codes(Mode::Subreaper, &all);
    }
    failures.extend(check_exit_codes(
        Mode::Pid1,
        &[0, 1, 2, 3, 42, 125, 126, 127, 128, 129, 143, 254, 255],
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_its_number() {
    // Each of these terminates by default; no core file (ulimit) for QUIT and ABRT. 34, 40 and 64 are
    // SIGRTMIN, SIGRTMIN+6 and SIGRTMAX in the kernel's numbering.
    let signals = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (34, "SIGRTMIN"),
        (40, "SIGRTMIN+6"),
        (64, "SIGRTMAX"),
    ];
    // Under qemu-user the real-time ones come back renumbered: only the standard ones are checked there.
    let real_time_checked = !common::RENUMBERED_REAL_TIME_SIGNALS.applies();
    for mode in MODES {
        for (signal, name) in signals {
            if signal >= 34 && !real_time_checked {
                continue;
            }
            let (status, _stdout, log) = run_to_end(
                Grace::new(mode),
                &sh(&format!("ulimit -c 0; kill -{signal} $$")),
            );
            let expected = 128 + signal;
            assert_eq!(status.code(), Some(expected), "{mode:?} {name}\n{log}");
            assert!(
                log.contains(&format!("was killed by {name} (status {expected})")),
                "{mode:?} {name}\n{log}"
            );
            let last = log.lines().last().unwrap_or_default();
            assert!(
                last.contains(&format!("exiting with status {expected}")),
                "{mode:?} {name}: last log line {last:?}"
            );
        }
    }
}

#[test]
fn success_exit_maps_listed_statuses_to_zero() {
    for mode in MODES {
        // Killed by SIGTERM: 143, listed.
        let (status, last) = status_of(Grace::new(mode).args(["-e", "143"]), "kill -TERM $$");
        assert_eq!(status, 0, "{mode:?}: {last}");
        assert!(
            last.contains("exiting with status 0 (the child's 143, mapped by --success-exit)"),
            "{mode:?}: {last}"
        );

        // A plain exit code, with the long option and several codes listed.
        let (status, last) = status_of(
            Grace::new(mode).args(["--success-exit", "1", "-e", "3"]),
            "exit 3",
        );
        assert_eq!(status, 0, "{mode:?}: {last}");
        assert!(last.contains("the child's 3"), "{mode:?}: {last}");

        // A status that is not listed stays as it is.
        let (status, last) = status_of(Grace::new(mode).args(["-e", "3", "-e", "143"]), "exit 4");
        assert_eq!(status, 4, "{mode:?}: {last}");
        assert!(last.contains("exiting with status 4"), "{mode:?}: {last}");
        assert!(!last.contains("mapped"), "{mode:?}: {last}");
    }
}
