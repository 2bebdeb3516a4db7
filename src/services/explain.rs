//! `grace --explain --services FILE`: the start order, the stop order, and the stop's timeline with each
//! service's share of the grace period, with warnings for plans that cannot fit. The file is read and
//! validated as for a run; nothing is started.

use std::fmt::Write as _;
use std::time::Duration;

use super::readiness::READY_REPORT_NOTE;
use super::table::{Readiness, Service, ServiceTable};
use crate::config::Config;
use crate::explain::seconds;
use crate::restart::Policy;
use crate::shutdown::SURVEY_LEAD;
use crate::signals::Signal;
use crate::wording::configured;

/// The services part of the explanation.
pub fn explain(config: &Config, table: &ServiceTable, text: &mut String) {
    let main = table.main_index();
    let _ = writeln!(text, "\nServices, in start order:");
    let width = table
        .services
        .iter()
        .map(|service| service.name.len())
        .max()
        .unwrap_or(0);
    for (index, service) in table.services.iter().enumerate() {
        let _ = writeln!(
            text,
            "  {:>2}  {:width$}  {}",
            index + 1,
            service.name,
            describe(config, service, index == main)
        );
    }
    let order: Vec<&str> = table
        .services
        .iter()
        .rev()
        .filter(|service| !service.once)
        .map(|service| service.name.as_str())
        .collect();
    let _ = writeln!(
        text,
        "Stop order: {} (a `once` task has nothing left to stop once it completed; one still running when \
         the stop begins stops in its place in the reverse order).",
        order.join(", ")
    );
    timeline(config, table, text);
    for warning in warnings(config, table) {
        let _ = writeln!(text, "\nwarning: {warning}");
    }
}

/// One service's line: its role, readiness, restart policy and stop signal.
fn describe(config: &Config, service: &Service, is_main: bool) -> String {
    let mut parts = Vec::new();
    parts.push(if is_main {
        format!(
            "main: `{}`",
            crate::supervisor::shown_command(&service.command)
        )
    } else if service.once {
        format!(
            "once: `{}` runs to completion (status 0) before the next starts",
            crate::supervisor::shown_command(&service.command)
        )
    } else {
        format!("`{}`", crate::supervisor::shown_command(&service.command))
    });
    if let Some(readiness) = &service.ready {
        let limit = service.ready_timeout.map_or_else(
            || format!("no ready-timeout: waits for ever, {READY_REPORT_NOTE}"),
            |timeout| format!("ready-timeout {}", configured(timeout)),
        );
        parts.push(format!("ready when {} ({limit})", ready_when(readiness)));
    }
    let policy = service.restart.unwrap_or(if is_main {
        config.restart
    } else if service.once {
        Policy::Never
    } else {
        Policy::Always
    });
    if !service.once || policy != Policy::Never {
        parts.push(format!("restart {}", policy.as_str()));
    }
    if let Some(max) = service.max_restarts {
        parts.push(format!("at most {max} restarts"));
    }
    if service.optional {
        parts.push("optional: its end does not stop the others".to_string());
    }
    if !is_main && !service.once {
        let signal = service.stop_signal.unwrap_or(Signal::TERM);
        parts.push(format!("stop signal {signal}"));
    }
    if let Some(timeout) = service.stop_timeout {
        parts.push(format!("stop-timeout {}", configured(timeout)));
    }
    if service.log.unwrap_or(config.log_services) == crate::cli::ServiceLog::Prefix {
        parts.push("output prefixed with its name".to_string());
    }
    parts.join("; ")
}

/// When a readiness check passes, in words.
fn ready_when(readiness: &Readiness) -> String {
    match readiness {
        Readiness::Tcp { .. } => format!("{readiness} accepts a connection"),
        Readiness::File(path) => format!("{} exists", path.display()),
        Readiness::Notify => "it sends READY=1 to NOTIFY_SOCKET".to_string(),
        Readiness::Command(_) => format!("`{readiness}` exits 0"),
    }
}

/// The stop, service by service, with the worst case of each turn.
fn timeline(config: &Config, table: &ServiceTable, text: &mut String) {
    let grace = config.grace_period;
    let start = config.pre_stop_delay;
    let everything = grace.saturating_sub(config.cleanup_timeout).max(start);
    let _ = writeln!(
        text,
        "\nAfter a stop signal at t0 (the main service's own exit, or a service that ends for good, starts the \
         same stop at once, without the pre-stop delay):"
    );
    if !start.is_zero() {
        let _ = writeln!(
            text,
            "  {:<10} the pre-stop delay: every service runs on",
            "t0"
        );
    }
    // The worst case of each turn: it begins when the one before ends (its stop-timeout, or G − C without
    // one); a stop-timeout runs from the turn's start to its SIGKILL even past G − C, but never past G.
    let mut at = start;
    let main = table.main_index();
    for (index, service) in table.services.iter().enumerate().rev() {
        if service.once {
            continue;
        }
        let signal = if index == main {
            let received = config.stop_signals.first().copied().unwrap_or(Signal::TERM);
            match config.rewrites.apply(received) {
                Some(forwarded) if forwarded == received => "the stop signal received".to_string(),
                Some(forwarded) => format!("the stop signal received, {received} as {forwarded}"),
                None => format!("nothing ({received} is dropped by --rewrite)"),
            }
        } else {
            service.stop_signal.unwrap_or(Signal::TERM).to_string()
        };
        if at >= everything {
            let _ = writeln!(
                text,
                "  {:<10} {}: its turn comes after grace period − cleanup timeout at worst: it gets {signal} \
                 with everything not yet signalled",
                format!("t0+{}", seconds(everything)),
                service.name
            );
            continue;
        }
        let until = match service.stop_timeout {
            Some(timeout) if at + timeout < grace => format!(
                "at most {} (its stop-timeout: SIGKILL of its tree at t0+{})",
                configured(timeout),
                seconds(at + timeout)
            ),
            _ => "until nothing of it is left".to_string(),
        };
        let _ = writeln!(
            text,
            "  {:<10} {}: {signal}; once it has exited, SIGTERM to the rest of its tree; its turn lasts {until}",
            format!("t0+{}", seconds(at)),
            service.name
        );
        at = match service.stop_timeout {
            Some(timeout) => (at + timeout).min(grace),
            None => everything,
        };
    }
    let _ = writeln!(
        text,
        "  {:<10} every process not yet signalled gets its service's stop signal (grace period − cleanup timeout)",
        format!("t0+{}", seconds(everything))
    );
    if config.final_signal != Signal::KILL {
        let _ = writeln!(
            text,
            "  {:<10} final signal {} to everything that remains",
            format!("t0+{}", seconds(grace.saturating_sub(config.final_timeout))),
            config.final_signal
        );
    }
    let _ = writeln!(
        text,
        "  {:<10} grace reads what remains, for its report",
        format!("t0+{}", seconds(grace.saturating_sub(SURVEY_LEAD)))
    );
    let _ = writeln!(
        text,
        "  {:<10} SIGKILL to everything that remains, reported by service; grace exits as soon as nothing is left",
        format!("t0+{}", seconds(grace))
    );
    let _ = writeln!(
        text,
        "Exit status: the main service's after a stop signal or its own exit; the first service that ended for \
         good otherwise (124 when it was not ready in time, 126/127 when it could not be started)."
    );
}

/// Plans that cannot fit in the grace period, or that leave a service less than it seems.
pub fn warnings(config: &Config, table: &ServiceTable) -> Vec<String> {
    let mut warnings = Vec::new();
    let everything = config
        .grace_period
        .saturating_sub(config.cleanup_timeout)
        .max(config.pre_stop_delay);
    let stopping: Vec<&Service> = table
        .services
        .iter()
        .rev()
        .filter(|service| !service.once)
        .collect();
    // Services without a stop-timeout that others wait for in the stop order.
    let holding: Vec<&str> = stopping
        .iter()
        .take(stopping.len().saturating_sub(1))
        .filter(|service| service.stop_timeout.is_none())
        .map(|service| service.name.as_str())
        .collect();
    if let Some(first) = holding.first() {
        let waiting: Vec<&str> = stopping
            .iter()
            .skip_while(|service| service.name != *first)
            .skip(1)
            .map(|service| service.name.as_str())
            .collect();
        warnings.push(format!(
            "{} {} no stop-timeout: if {} does not stop, the services after it in the stop order ({}) wait \
             until t0+{} (grace period − cleanup timeout), and then have only the cleanup timeout of {} to stop",
            holding.join(", "),
            if holding.len() == 1 { "has" } else { "have" },
            if holding.len() == 1 { "it" } else { "one" },
            waiting.join(", "),
            seconds(everything),
            configured(config.cleanup_timeout),
        ));
    }
    let total: Duration = stopping
        .iter()
        .filter_map(|service| service.stop_timeout)
        .sum::<Duration>()
        + config.pre_stop_delay;
    if total > everything {
        warnings.push(format!(
            "the stop-timeouts and the pre-stop delay add up to {}, more than the {} before everything is \
             signalled (grace period {} − cleanup timeout {}): the last services in the stop order get less \
             than their stop-timeout",
            configured(total),
            configured(everything),
            configured(config.grace_period),
            configured(config.cleanup_timeout),
        ));
    }
    for service in &table.services {
        if let Some(timeout) = service
            .stop_timeout
            .filter(|timeout| *timeout >= config.grace_period)
        {
            warnings.push(format!(
                "{}'s stop-timeout of {} is not shorter than the grace period ({}): the deadline's SIGKILL comes first",
                service.name,
                configured(timeout),
                configured(config.grace_period)
            ));
        }
    }
    warnings
}
