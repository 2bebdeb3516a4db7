//! grace: a PID 1 for containers. Forwards every signal, reaps every zombie, and shuts the whole process
//! tree down inside a grace period.
//!
//! Data flow: command line + environment → [`config::Config`] → block every signal → become a subreaper
//! (when not PID 1) → spawn the command → [`supervisor::Supervisor`] loop → exit status.
#![deny(unsafe_code)]
// Panic-free by construction: a PID 1 that dies takes the container with it, and a panic before the child
// starts would print a stack trace instead of one line. So no unwrap, expect, indexing, slicing or explicit
// panic anywhere in the binary, nor print!/eprint!, which panic when the stream is closed. Unit tests may
// (see clippy.toml).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::print_stdout,
    clippy::print_stderr
)]

// First, so that its macros (error!, warn!, info!, debug!, log!) are in scope in every module after it.
#[macro_use]
mod logging;

mod child;
mod cli;
mod config;
mod diagnosis;
mod exit_status;
mod explain;
mod generation;
mod log_sink;
mod reaper;
mod remains;
mod restart;
mod services;
mod shutdown;
mod signals;
mod sort;
mod supervisor;
mod survey;
mod sys;
mod time_text;
mod tree;
mod wording;

use std::io::Write;
use std::process::ExitCode;

use crate::child::SpawnError;
use crate::cli::{Request, UsageError};
use crate::config::{Config, ProcessEnvironment};
use crate::signals::SignalSource;
use crate::supervisor::Supervisor;
use crate::tree::{Scope, Tree};

fn main() -> ExitCode {
    log_sink::init();
    let status = start_and_supervise();
    log_sink::flush_before_exit();
    status
}

/// Everything but the log's last flush.
fn start_and_supervise() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(cli)) => *cli,
        Ok(Request::Help) => return print_and_exit(cli::HELP),
        Ok(Request::Version) => {
            return print_and_exit(concat!("grace ", env!("CARGO_PKG_VERSION"), "\n"))
        }
        Err(err) => return usage_error(&err),
    };
    let explain = cli.explain;
    let mut config = match Config::new(cli, &ProcessEnvironment::read()) {
        Ok(config) => config,
        Err(err) => return usage_error(&err),
    };
    // A stop signal grace was started with ignored is not one: see Config::ignored_stop_signals.
    for signal in &config.stop_signals {
        if sys::inherited::was_ignored(signal.number()) {
            config.ignored_stop_signals |= 1 << (signal.number() - 1);
        }
    }
    let services = match &config.services {
        Some(path) => match services::load(path, &config.command) {
            Ok(table) => Some(table),
            Err(err) => return usage_error(&UsageError(err)),
        },
        None => None,
    };
    if explain {
        return print_and_exit(&explain::explain(&config, services.as_ref()));
    }
    logging::init(config.log_level, config.log_format);
    match run(config, services) {
        Ok(status) => ExitCode::from(status),
        Err(SpawnError { status, message }) => {
            error!(event = "failed", status = status; "{message}");
            ExitCode::from(status)
        }
    }
}

/// grace could not set itself up before the child started: status 1, and what failed.
fn setup_failed(what: &str, err: std::io::Error) -> SpawnError {
    SpawnError {
        status: exit_status::INIT_FAILED,
        message: format!("{what}: {err}"),
    }
}

fn run(config: Config, services: Option<services::ServiceTable>) -> Result<u8, SpawnError> {
    // First, so that a signal arriving from here on waits in the queue instead of being lost or killing us.
    let mut signals =
        SignalSource::block_all().map_err(|err| setup_failed("blocking signals", err))?;
    log_sink::reopen();
    if let Some(signal) = config.parent_death_signal {
        sys::set_parent_death_signal(signal.number()).map_err(|err| {
            setup_failed(&format!("setting the parent-death signal {signal}"), err)
        })?;
    }
    let tree = Tree::of_current_process();
    if tree.scope() != Scope::Namespace {
        // Orphans of the subtree then come to grace instead of to the real init. Some sandboxes refuse it
        // (a seccomp profile; qemu-user answers EINVAL), as tini's users have met: warn and run, as tini does.
        if let Err(errno) = nix::sys::prctl::set_child_subreaper(true) {
            warn!(
                event = "no_subreaper";
                "could not become a child subreaper ({}): processes orphaned in the command's tree go to this \
                 machine's init instead, and grace cannot reap, signal or wait for them",
                errno.desc()
            );
        }
    }
    if !tree.can_list() {
        warn!("/proc does not show this process's PID namespace (yet): until it does, remaining processes cannot be listed or named");
    }
    let setup = sys::ChildSetup {
        signal_mask: signals.inherited_mask(),
        ignore_sigpipe: sys::inherited::sigpipe_ignored(),
        ignore_sigchld: sys::inherited::sigchld_ignored(),
        take_terminal: supervisor::owns_terminal_foreground(),
        descriptor_limit: sys::raise_descriptor_limit(),
    };
    if !config.withheld.is_empty() {
        // Out of grace's own environment, which every start of the command inherits as it is: grace has read
        // them. (Command::env_remove would cost 8 KiB of std's environment capture for the same effect.)
        for name in &config.withheld {
            let _ = sys::remove_environment_variable(name);
        }
        debug!(
            "not passed on to the command: {:?} (grace's own settings; see docs/command-line.md)",
            config.withheld
        );
    }
    if let Some(table) = services {
        return Ok(run_services(config, table, signals, tree, setup));
    }
    let main = child::spawn(&config.command, setup)?;
    signals.after_fork();
    let command = supervisor::shown_command(&config.command);
    let mode = if tree.scope() == Scope::Namespace {
        "pid1"
    } else {
        "subreaper"
    };
    // grace cannot see the pod's terminationGracePeriodSeconds: the first line of the container's log says
    // what the default assumes of it.
    let assumption = if config.sources.grace_period == config::Source::Kubernetes {
        format!("; {}", explain::kubernetes_default_assumption())
    } else {
        String::new()
    };
    info!(
        event = "started", pid = main.pid, command = command.as_str(), mode = mode,
        grace_period_ms = wording::millis(config.grace_period),
        grace_period_source = config.sources.grace_period.kind();
        "started pid {}: {command} (grace period {}, {}){assumption}",
        main.pid,
        wording::configured(config.grace_period),
        if mode == "pid1" { "as PID 1" } else { "as a subreaper" },
    );
    for signal in config
        .stop_signals
        .iter()
        .filter(|signal| config.inherited_ignore(**signal))
    {
        info!(
            event = "stop_signal_ignored", signal:% = signal;
            "{signal} was ignored when grace started (as in a background job of a non-interactive shell): \
             it is forwarded, and does not stop grace"
        );
    }
    debug!(
        "grace period {}: {}",
        wording::configured(config.grace_period),
        explain::origin(config.sources.grace_period)
    );
    Ok(Supervisor::new(config, signals, tree, main, setup).run())
}

/// Several services (`--services`): a loop of its own. Never inlined into [`run`], so that its code stays out of
/// the pages a grace with one command maps (tools/hot-functions).
#[inline(never)]
fn run_services(
    config: Config,
    table: services::ServiceTable,
    signals: SignalSource,
    tree: Tree,
    setup: sys::ChildSetup,
) -> u8 {
    let mode = if tree.scope() == Scope::Namespace {
        "as PID 1"
    } else {
        "as a subreaper"
    };
    let names: Vec<&str> = table
        .services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    info!(
        event = "started", services = names.join(",").as_str(),
        grace_period_ms = wording::millis(config.grace_period),
        grace_period_source = config.sources.grace_period.kind();
        "starting {} services in order: {} (grace period {}, {mode})",
        names.len(), names.join(", "), wording::configured(config.grace_period),
    );
    services::ServicesSupervisor::new(config, table, signals, tree, setup).run()
}

/// One line naming the problem, and status 2. Not eprintln!: it panics when stderr is closed, and blocks
/// when nobody reads it.
fn usage_error(err: &UsageError) -> ExitCode {
    let line = format!("grace: {err} (see grace --help)\n");
    log_sink::with_sink(|sink| sink.push(None, line.as_bytes()));
    ExitCode::from(exit_status::USAGE)
}

fn print_and_exit(text: &str) -> ExitCode {
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}
