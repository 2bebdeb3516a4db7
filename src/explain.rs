//! `grace --explain`: the effective configuration, where each value came from, and the shutdown timeline
//! it implies, with warnings for nestings that cannot work. For chart authors, who run it in the image with
//! the chart's environment (`docker run --rm IMAGE /grace --explain`) to check their numbers before a
//! rolling update does.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{
    Config, Source, KUBERNETES_GRACE_PERIOD, KUBERNETES_MARGIN, KUBERNETES_TERMINATION_GRACE,
};
use crate::shutdown::{KILLING_LIMIT, SETTLE, SURVEY_LEAD, UNKILLABLE_WAIT};
use crate::signals::Signal;
use crate::wording::configured;

/// The whole explanation, ready to print; with several services, their order and the stop plan too.
pub fn explain(config: &Config, services: Option<&crate::services::ServiceTable>) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "grace {}: the configuration, and the shutdown it implies\n",
        env!("CARGO_PKG_VERSION")
    );
    settings(config, &mut text);
    text.push('\n');
    match services {
        Some(table) => crate::services::explain::explain(config, table, &mut text),
        None => timeline(config, &mut text),
    }
    for warning in warnings(config) {
        let _ = writeln!(text, "\nwarning: {warning}");
    }
    text
}

/// What the default grace period in a pod assumes of the pod, which grace cannot see, and the rule for any
/// other pod: on the start line and in `--explain`, so that a chart that shortens the pod's time meets it.
pub fn kubernetes_default_assumption() -> String {
    format!(
        "the {} default in a pod assumes terminationGracePeriodSeconds of {} or more and no preStop hook: \
         otherwise set GRACE_PERIOD ≤ terminationGracePeriodSeconds − preStop − {}",
        configured(KUBERNETES_GRACE_PERIOD),
        configured(KUBERNETES_TERMINATION_GRACE),
        configured(KUBERNETES_MARGIN),
    )
}

/// Where a value came from, in words.
pub fn origin(source: Source) -> String {
    match source {
        Source::CommandLine => "the command line".to_string(),
        Source::Environment(name) => format!("the environment ({name})"),
        Source::Kubernetes => format!(
            "the default in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set): the kubelet's {} less {} for \
             grace's own SIGKILL and report to come first",
            configured(KUBERNETES_TERMINATION_GRACE),
            configured(KUBERNETES_MARGIN)
        ),
        Source::Default => "the default".to_string(),
    }
}

fn settings(config: &Config, text: &mut String) {
    let sources = &config.sources;
    let final_note = if config.final_signal == Signal::KILL {
        " (none before the SIGKILL)"
    } else {
        ""
    };
    let rewrites: Vec<String> = (1..=64)
        .filter_map(Signal::from_number)
        .filter_map(|signal| match config.rewrites.apply(signal) {
            Some(to) if to == signal => None,
            Some(to) => Some(format!("{signal}→{to}")),
            None => Some(format!("{signal} dropped")),
        })
        .collect();
    let stop_signals: Vec<String> = config
        .stop_signals
        .iter()
        .map(|signal| {
            if config.inherited_ignore(*signal) {
                format!("{signal} (ignored when grace started: forwarded instead)")
            } else {
                signal.to_string()
            }
        })
        .collect();
    let command = if config.command.is_empty() {
        "(none given)".to_string()
    } else {
        crate::supervisor::shown_command(&config.command)
    };
    let restart_signal = config
        .restart_signal
        .map_or_else(|| "none".to_string(), |signal| signal.to_string());
    let max_restarts = config
        .max_restarts
        .map_or_else(|| "no limit".to_string(), |max| max.to_string());
    let rows: [(&str, String, Option<Source>); 14] = [
        (
            "grace period",
            configured(config.grace_period),
            Some(sources.grace_period),
        ),
        (
            "cleanup timeout",
            configured(config.cleanup_timeout),
            Some(sources.cleanup_timeout),
        ),
        (
            "pre-stop delay",
            configured(config.pre_stop_delay),
            Some(sources.pre_stop_delay),
        ),
        (
            "final signal",
            format!("{}{final_note}", config.final_signal),
            Some(sources.final_signal),
        ),
        (
            "final timeout",
            configured(config.final_timeout),
            Some(sources.final_timeout),
        ),
        (
            "stop signals",
            stop_signals.join(","),
            Some(sources.stop_signals),
        ),
        (
            "rewrites",
            if rewrites.is_empty() {
                "none".to_string()
            } else {
                rewrites.join(", ")
            },
            Some(sources.rewrites),
        ),
        (
            "forwarded to",
            if config.process_group {
                "the main child's process group"
            } else {
                "the main child"
            }
            .to_string(),
            Some(sources.process_group),
        ),
        (
            "log format",
            format!("{:?}", config.log_format).to_lowercase(),
            Some(sources.log_format),
        ),
        (
            "restart signal",
            restart_signal,
            Some(sources.restart_signal),
        ),
        (
            "restart",
            config.restart.as_str().to_string(),
            Some(sources.restart),
        ),
        (
            "restart delay",
            configured(config.restart_delay),
            Some(sources.restart_delay),
        ),
        ("max restarts", max_restarts, Some(sources.max_restarts)),
        ("command", command, None),
    ];
    let width = rows
        .iter()
        .map(|(_, value, _)| value.chars().count())
        .max()
        .unwrap_or(0);
    for (name, value, source) in rows {
        let from = source
            .map(|source| format!("from {}", origin(source)))
            .unwrap_or_default();
        let padding = " ".repeat(width.saturating_sub(value.chars().count()));
        let line = format!("  {name:<16} {value}{padding}  {from}");
        let _ = writeln!(text, "{}", line.trim_end());
    }
}

fn timeline(config: &Config, text: &mut String) {
    let grace = config.grace_period;
    let timings = config.timings();
    let at = |offset: Duration| format!("t0+{}", seconds(offset));
    let _ = writeln!(
        text,
        "After a stop signal ({}) at t0:",
        names(&config.stop_signals)
    );
    if grace.is_zero() {
        let _ = writeln!(
            text,
            "  {:<10} SIGKILL to the main child and everything else: the grace period is 0",
            "t0"
        );
        return;
    }
    let delay = config.pre_stop_delay;
    let forwarded = match config
        .stop_signals
        .first()
        .and_then(|&first| config.rewrites.apply(first))
    {
        Some(signal) => format!("forwarded to the main child as {signal}, with SIGCONT"),
        None => "not forwarded (dropped by --rewrite)".to_string(),
    };
    if !delay.is_zero() {
        let _ = writeln!(
            text,
            "  {:<10} held for the pre-stop delay (load balancers stop routing meanwhile)",
            "t0"
        );
    }
    // The steps in the order the shutdown takes them: by time, and at the same time in this order (the
    // forward before the rest's SIGTERM, that before the final signal).
    let mut steps: Vec<(Duration, String)> = vec![(delay, forwarded)];
    // The rest's SIGTERM is not sent while the stop signal is held: with a pre-stop delay longer than the
    // grace period less the cleanup timeout, it goes out with the forwarded stop signal.
    // (The warning below says so.)
    steps.push((
        grace.saturating_sub(config.cleanup_timeout).max(delay),
        "SIGTERM and SIGCONT to every other process of the tree, if the main child still runs"
            .to_string(),
    ));
    if let Some(final_timeout) = timings.final_timeout {
        steps.push((
            grace.saturating_sub(final_timeout),
            format!(
                "the final signal, {}, to everything that remains",
                config.final_signal
            ),
        ));
    }
    steps.push((
        grace.saturating_sub(SURVEY_LEAD),
        // "up to 1s": LONGEST_SURVEY_LEAD, written out (formatting it costs the static binary's budget).
        "grace reads what remains, for its report (earlier for a large tree, up to 1s before the SIGKILL)"
            .to_string(),
    ));
    steps.push((
        grace,
        "SIGKILL to everything that remains, logged with pids and names; sweeps follow for what forks"
            .to_string(),
    ));
    // Stable: equal times keep the order above.
    crate::sort::by_key(&mut steps, |(offset, _)| {
        u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX)
    });
    for (offset, step) in steps {
        let when = if offset.is_zero() {
            "t0".to_string()
        } else {
            at(offset)
        };
        let _ = writeln!(text, "  {when:<10} {step}");
    }
    let _ = writeln!(
        text,
        "  {:<10} at the latest ({} if sweeps keep finding processes): grace gives up on processes SIGKILL \
         cannot end, and exits",
        at(grace + UNKILLABLE_WAIT),
        at(grace + KILLING_LIMIT),
    );
    let _ = writeln!(
        text,
        "grace exits as soon as the tree is empty, with the main child's status (128+N if signal N killed it)."
    );
    let _ = writeln!(
        text,
        "If the main child exits first: {} for the rest to settle, then SIGTERM to it, and SIGKILL {} later \
         (never past {} after a stop signal).",
        configured(SETTLE),
        configured(config.cleanup_timeout),
        at(grace),
    );
    let (platform, platform_kill) = if config.in_kubernetes {
        (
            "the kubelet's (terminationGracePeriodSeconds, by default",
            KUBERNETES_TERMINATION_GRACE,
        )
    } else {
        (
            "that of `docker stop` and `podman stop` (by default",
            DOCKER_STOP_TIMEOUT,
        )
    };
    if grace < platform_kill {
        let _ = writeln!(
            text,
            "grace's SIGKILL comes {} before {platform} {}).",
            seconds(platform_kill - grace),
            configured(platform_kill),
        );
    }
    if config.in_kubernetes {
        let _ = writeln!(text, "{}", pod_fit(config));
    }
    if let Some(signal) = config.restart_signal {
        let _ = writeln!(
            text,
            "On {signal}, the same timeline ends the command's tree, and the command then starts again."
        );
    }
    if config.restart != crate::restart::Policy::Never {
        let _ = writeln!(
            text,
            "When the main child exits on its own (--restart {}), the rest gets the same cleanup, and the \
             command starts again {} later (doubling while runs end within 10s, at least {} from the second \
             restart on, up to {}){}.",
            config.restart.as_str(),
            configured(config.restart_delay),
            configured(crate::restart::SHORTEST_LOOP_DELAY),
            configured(crate::restart::LONGEST_DELAY.max(config.restart_delay)),
            config
                .max_restarts
                .map(|max| format!(", {max} times at most"))
                .unwrap_or_default(),
        );
    }
}

/// In a pod: what the grace period needs of the pod's terminationGracePeriodSeconds and preStop hook,
/// neither of which grace can see. The kubelet's SIGKILL comes that period, less the hook's time, after its
/// stop signal.
fn pod_fit(config: &Config) -> String {
    let consequence = "or the kubelet's SIGKILL comes first and grace reports nothing";
    if config.sources.grace_period == Source::Kubernetes {
        // Joined with a semicolon, not a new sentence: capitalising would link Unicode's case tables (20 KB).
        format!(
            "grace cannot see the pod's terminationGracePeriodSeconds nor its preStop hook, whose time the \
             kubelet takes from it; {}, {consequence}. A chart can set GRACE_PERIOD from the value it gives \
             terminationGracePeriodSeconds.",
            kubernetes_default_assumption()
        )
    } else {
        format!(
            "This grace period needs a terminationGracePeriodSeconds of at least {} plus the preStop hook's \
             time, if the pod has one (GRACE_PERIOD ≤ terminationGracePeriodSeconds − preStop − {}), \
             {consequence}.",
            configured(config.grace_period + KUBERNETES_MARGIN),
            configured(KUBERNETES_MARGIN),
        )
    }
}

/// What is allowed but cannot work as meant.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let grace = config.grace_period;
    if grace.is_zero() {
        return warnings;
    }
    let rest_at = grace.saturating_sub(config.cleanup_timeout);
    if rest_at <= config.pre_stop_delay {
        warnings.push(format!(
            "the cleanup timeout ({}) is not shorter than the grace period less the pre-stop delay ({}): the \
             rest of the tree gets SIGTERM together with the stop signal, with no time to stop on its own first",
            configured(config.cleanup_timeout),
            configured(grace.saturating_sub(config.pre_stop_delay)),
        ));
    }
    for &from in &config.stop_signals {
        let Some(to) = config.rewrites.apply(from) else {
            continue;
        };
        if let Some(fate) = to.default_action().as_a_stop() {
            let forwarded = if to == from {
                "forwarded as it is".to_string()
            } else {
                format!("forwarded as {to}")
            };
            warnings.push(format!(
                "the stop signal {from} is {forwarded}, {fate}: it stops only a command that handles {to} (as \
                 Apache httpd does SIGWINCH); any other gets SIGKILL at the end of the grace period"
            ));
        }
    }
    if grace >= KUBERNETES_TERMINATION_GRACE {
        warnings.push(format!(
            "the grace period ({}) reaches Kubernetes' default terminationGracePeriodSeconds ({}): unless the \
             pod sets one of at least {}, the kubelet's SIGKILL comes first, and nothing logs it",
            configured(grace),
            configured(KUBERNETES_TERMINATION_GRACE),
            configured(grace + KUBERNETES_MARGIN),
        ));
    }
    warnings
}

/// How long `docker stop` and `podman stop` wait before their SIGKILL, by default.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `8s`, `7.9s`, `0.5s`: offsets on the timeline, in one unit.
pub(crate) fn seconds(duration: Duration) -> String {
    let millis = crate::wording::millis(duration);
    let fraction = format!("{:03}", millis % 1000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}s", millis / 1000)
    } else {
        format!("{}.{fraction}s", millis / 1000)
    }
}

fn names(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|signal| signal.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}
