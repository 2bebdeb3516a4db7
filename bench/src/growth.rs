//! `--check-growth README` (tools/test): grace's deterministic rows against its last release's, measured in
//! the same run: the binary's size (exact) and the idle RSS, the resident set of the init with an idle child,
//! which depends on what the start touched, not on timing. Each binary is read whole first, so that every page
//! the kernel maps around a touched one is in the page cache, and the RSS is the smallest of three starts of
//! each, interleaved. Nothing here is timed, so a busy machine cannot fail it. A row that grew more than 5 %
//! fails the check unless the README says why, on a line `- ROW since VERSION: why`.

use crate::error::{bail, Context, Result};
use crate::inits::Init;
use crate::namespace::Namespace;
use crate::procfs;
use crate::report::{format_value, Unit};
use std::ffi::OsString;
use std::path::Path;

/// How much a row may grow past the release without a word in the README.
const ALLOWED_GROWTH: f64 = 1.05;
/// Starts of each init for the idle RSS.
const STARTS: usize = 3;

/// Compares the build under test with the release among `inits`; Err when a row grew unexplained.
pub fn check(inits: &[Init], stamp_child: &Path, readme: &Path) -> Result<()> {
    let grace = inits
        .iter()
        .find(|init| init.is_current_grace())
        .context("--check-growth: no grace to check")?;
    let release = inits
        .iter()
        .find(|init| init.release.is_some())
        .context("--check-growth: grace's release could not be built (see the note above)")?;
    let version = release.release.clone().unwrap_or_default();
    let readme_text =
        std::fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let log_dir = std::env::temp_dir().join(format!("grace-growth-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let mut rss = [u64::MAX; 2];
    for start in 0..STARTS {
        // Alternately grace first and the release first.
        for turn in 0..2 {
            let slot = (turn + start) % 2;
            let init = if slot == 0 { grace } else { release };
            let resident = idle_rss(init, stamp_child, &log_dir.join(format!("{slot}.stderr")))?;
            rss[slot] = rss[slot].min(resident);
        }
    }
    let _ = std::fs::remove_dir_all(&log_dir);
    let rows = [
        ("binary size", grace.size_bytes()?, release.size_bytes()?),
        ("idle RSS", rss[0], rss[1]),
    ];
    let mut unexplained = Vec::new();
    println!("| row | grace | grace {version} | ratio | |");
    println!("| --- | --- | --- | --- | --- |");
    for (row, now, before) in rows {
        let ratio = now as f64 / before as f64;
        let reason = format!("- {row} since {version}:");
        let verdict = if ratio <= ALLOWED_GROWTH {
            "ok"
        } else if readme_text
            .lines()
            .any(|line| line.trim_start().starts_with(&reason))
        {
            "grew: the README says why"
        } else {
            unexplained.push(row);
            "grew, and the README does not say why"
        };
        println!(
            "| {row} | {} ({now} bytes) | {} ({before} bytes) | {ratio:.3}× | {verdict} |",
            format_value(now as f64, Unit::Bytes),
            format_value(before as f64, Unit::Bytes),
        );
    }
    if !unexplained.is_empty() {
        bail!(
            "{} grew more than {:.0} % past grace {version}: make it smaller, or say why in {} on a line \
             `- ROW since {version}: …`",
            unexplained.join(" and "),
            (ALLOWED_GROWTH - 1.0) * 100.0,
            readme.display()
        );
    }
    Ok(())
}

/// VmRSS of `init` as PID 1 of a fresh namespace with an idle child, its binary read whole first.
fn idle_rss(init: &Init, stamp_child: &Path, log: &Path) -> Result<u64> {
    std::fs::read(&init.path).with_context(|| format!("reading {}", init.path.display()))?;
    let child = [stamp_child.as_os_str().to_owned(), OsString::from("sleep")];
    let namespace = Namespace::start(&init.name, &init.argv(&[], &child), log)?;
    let rss = procfs::memory_bytes(namespace.init_pid()).map(|(rss, _)| rss);
    namespace.finish()?;
    rss
}
