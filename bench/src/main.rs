//! grace-bench: grace against tini, dumb-init and catatonit, each as PID 1 of a fresh PID
//! namespace, interleaved trial by trial; prints one markdown table of medians and ratios.
#![deny(unsafe_code)]

mod cli;
mod elf;
mod error;
mod growth;
mod inits;
mod lines;
mod namespace;
mod procfs;
mod release;
mod report;
mod scenarios;
mod stats;
mod subreaper;
mod sys;

use crate::error::{bail, Context, Result};
use crate::scenarios::Bench;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Parsed::Run(options)) => *options,
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("grace-bench: {err}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("grace-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: cli::Options) -> Result<()> {
    if sys::effective_uid() != 0 {
        bail!("needs root: every init runs as PID 1 of a new PID namespace (unshare --pid)");
    }
    if inits::find_program("unshare").is_none() {
        bail!("unshare (util-linux) is not installed");
    }
    let stamp_child = locate_stamp_child(options.stamp_child.clone())?;
    let mut found = inits::discover(&options.grace, options.only.as_deref());
    let wants_previous = !options.no_previous
        && options
            .only
            .as_ref()
            .map_or(true, |names| names.iter().any(|name| name == "previous"));
    if wants_previous && found.inits.first().is_some_and(|init| init.is_grace) {
        let cache = options
            .release_cache
            .clone()
            .unwrap_or_else(release::default_cache);
        match release::find(options.previous.as_deref())
            .and_then(|release| Ok((release::binary(&release, &cache)?, release)))
        {
            Ok((path, release)) => found
                .inits
                .insert(1, inits::Init::release(&release.version, path)),
            Err(err) => found.notes.push(format!("grace's release: {err}, skipped")),
        }
    }
    for note in &found.notes {
        eprintln!("note: {note}");
    }
    if let Some(readme) = &options.check_growth {
        return growth::check(&found.inits, &stamp_child, readme);
    }
    if found.inits.is_empty() {
        bail!("no init to bench");
    }
    let log_dir = match &options.log_dir {
        Some(directory) => directory.clone(),
        None => std::env::temp_dir().join(format!("grace-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    // Each into a directory of its own: grace and its release are both called `grace`.
    for (index, init) in found.inits.iter_mut().enumerate() {
        if init.is_grace {
            init.snapshot(&log_dir.join("bin").join(index.to_string()))?;
        }
    }
    let versions: Vec<String> = found
        .inits
        .iter()
        .map(|init| {
            let version = init
                .version()
                .unwrap_or_else(|| "version unknown".to_owned());
            format!("{} = `{}` ({version})", init.name, init.source.display())
        })
        .collect();
    eprintln!("inits: {}", versions.join("; "));
    eprintln!("stderr of the inits: {}", log_dir.display());

    let mut bench = Bench {
        inits: found.inits,
        stamp_child,
        log_dir,
        options,
        notes: found.notes,
        any_failed: false,
        samples_csv: String::from("metric,init,trial,value\n"),
    };
    let mut table = report::Table {
        columns: bench
            .inits
            .iter()
            .map(|init| (init.name.clone(), init.is_grace))
            .collect(),
        rows: Vec::new(),
        versus: bench
            .inits
            .iter()
            .position(|init| init.release.is_some())
            .and_then(|release| {
                let grace = bench.inits.iter().position(inits::Init::is_current_grace)?;
                Some((grace, release))
            }),
    };
    for (name, measure) in scenarios::GROUPS {
        if bench.options.wants(name) {
            table.rows.extend(measure(&mut bench));
        }
    }

    let (kernel, cpu) = report::machine();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let options = &bench.options;
    println!(
        "grace-bench, {}: Linux {kernel}, {cpu} ({cores} cores). {} run: idle {}× {} s, {} signal trials, \
         {} orphans × {}, {} start-ups per init; {} escalations (grace); {} rounds of the escalation at \
         scale ({} children); services: {}× idle, {} stops each. Medians unless marked; (n×) = ratio to the best peer (in the escalation at \
         scale, to the baseline), lower is better.\n",
        report::today(),
        if options.quick { "Quick" } else { "Full" },
        options.idle_rounds,
        options.idle_window.as_secs_f64(),
        options.signal_trials,
        options.orphans,
        options.reap_trials,
        options.startup_trials,
        options.escalation_trials,
        options.scale_trials,
        options.scale_processes,
        options.services_rounds,
        options.services_trials,
    );
    print!("{}", table.to_markdown());
    println!("\nInits: {}.", versions.join("; "));
    for note in &bench.notes {
        println!("\nNote: {note}");
    }
    if let Some(path) = &bench.options.samples {
        std::fs::write(path, &bench.samples_csv)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("samples written to {}", path.display());
    }
    // The default log directory is only worth keeping when something failed.
    if bench.options.log_dir.is_none() && !bench.any_failed {
        let _ = std::fs::remove_dir_all(&bench.log_dir);
    } else {
        eprintln!("stderr of the inits kept in {}", bench.log_dir.display());
    }
    // The table is printed either way; a failed cell still fails the run, so a smoke run catches a bench
    // that no longer reads what grace logs.
    if bench.any_failed {
        bail!("some cells failed: see the notes under the table");
    }
    Ok(())
}

/// The `stamp-child` binary: given, or beside this executable. `cargo run` builds only the
/// binary it runs, so when started by cargo (which sets `CARGO`) the bench first builds its
/// sibling with the same profile into the same target directory (a no-op when up to date).
fn locate_stamp_child(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating grace-bench's own executable")?;
    let directory = exe
        .parent()
        .context("grace-bench has no parent directory")?;
    let sibling = directory.join("stamp-child");
    if let Some(cargo) = std::env::var_os("CARGO") {
        build_stamp_child(Path::new(&cargo), directory)?;
    }
    if !sibling.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --manifest-path bench/Cargo.toml`",
            sibling.display()
        );
    }
    Ok(sibling)
}

fn build_stamp_child(cargo: &Path, profile_directory: &Path) -> Result<()> {
    let profile = profile_directory.file_name().and_then(|name| name.to_str());
    let Some(target_directory) = profile_directory.parent() else {
        return Ok(());
    };
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--quiet",
            "--bin",
            "stamp-child",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_directory);
    match profile {
        Some("release") => {
            command.arg("--release");
        }
        Some("debug") => {}
        _ => return Ok(()), // an unusual layout: rely on a stamp-child built beforehand
    }
    let status = command
        .status()
        .context("running cargo build --bin stamp-child")?;
    if !status.success() {
        bail!("cargo build --bin stamp-child failed ({status})");
    }
    Ok(())
}
