//! grace's earlier releases (bench/releases.txt), and building one from its commit: `git archive` of the
//! commit into a cache directory outside the repository (so that the repository's own .cargo/config.toml, which
//! may have changed since, does not apply), then `cargo build --release --locked` for x86_64 musl there, as
//! the release was built. Kept in the cache: the next run reuses it.

use crate::error::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The list, compiled in: the bench always knows the releases of the repository it came with.
const RELEASES: &str = include_str!("../releases.txt");

/// One release of grace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `0.2`.
    pub version: String,
    /// The full commit id.
    pub commit: String,
}

/// Every release in the list, oldest first.
pub fn all() -> Result<Vec<Release>> {
    parse(RELEASES)
}

fn parse(text: &str) -> Result<Vec<Release>> {
    let mut releases = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(version), Some(commit)) = (fields.next(), fields.next()) else {
            bail!("releases.txt: {line:?} is not `VERSION COMMIT DATE`");
        };
        if commit.len() != 40 || !commit.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            bail!("releases.txt: {commit:?} is not a full commit id");
        }
        releases.push(Release {
            version: version.to_owned(),
            commit: commit.to_owned(),
        });
    }
    Ok(releases)
}

/// The release `version`, or the last one.
pub fn find(version: Option<&str>) -> Result<Release> {
    let releases = all()?;
    match version {
        Some(version) => releases
            .into_iter()
            .find(|release| release.version == version)
            .with_context(|| format!("no release {version} in bench/releases.txt")),
        None => releases
            .into_iter()
            .last()
            .context("bench/releases.txt lists no release"),
    }
}

/// Where built releases are kept unless `--release-cache` says: `$XDG_CACHE_HOME/grace-bench`, else
/// `~/.cache/grace-bench`, else the temporary directory.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|value| !value.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("grace-bench")
}

/// The static x86_64 binary of `release`, built in `cache` unless it is there already.
pub fn binary(release: &Release, cache: &Path) -> Result<PathBuf> {
    let directory = cache.join(format!(
        "grace-{}-{}",
        release.version,
        &release.commit[..12]
    ));
    let binary = directory.join("grace");
    if binary.is_file() {
        return Ok(binary);
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = directory.join("src");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).with_context(|| format!("creating {}", source.display()))?;
    eprintln!(
        "building grace {} from its commit {} in {}",
        release.version,
        &release.commit[..12],
        directory.display()
    );
    let archive = Command::new("git")
        .arg("-C")
        .arg(&repository)
        .args(["archive", "--format=tar", &release.commit])
        .stdout(Stdio::piped())
        .spawn()
        .context("running git archive (is git installed, and the bench in grace's repository?)")?;
    let stdout = archive.stdout.context("git archive has no stdout")?;
    let unpacked = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&source)
        .stdin(stdout)
        .status()
        .context("running tar")?;
    if !unpacked.success() {
        bail!(
            "unpacking grace {} ({}) failed: is the commit in this repository?",
            release.version,
            release.commit
        );
    }
    let target = "x86_64-unknown-linux-musl";
    let built = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&source)
        .args([
            "build",
            "--quiet",
            "--release",
            "--locked",
            "--bin",
            "grace",
            "--target",
            target,
        ])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .context("running cargo build for the release")?;
    if !built.success() {
        bail!("building grace {} failed ({built})", release.version);
    }
    std::fs::copy(
        source.join("target").join(target).join("release/grace"),
        &binary,
    )
    .with_context(|| format!("copying grace {}'s binary", release.version))?;
    let _ = std::fs::remove_dir_all(&source);
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_each_release_with_its_commit() {
        let releases = all().unwrap();
        assert!(releases.len() >= 2, "{releases:?}");
        assert_eq!(releases[0].version, "0.1");
        assert!(releases[0].commit.starts_with("aed8385"));
        assert_eq!(find(None).unwrap(), *releases.last().unwrap());
        assert_eq!(find(Some("0.1")).unwrap(), releases[0]);
        assert!(find(Some("9.9")).is_err());
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(parse("0.1 aed8385 2026-11-28").is_err());
        assert!(parse("0.1").is_err());
        assert_eq!(parse("# nothing\n\n").unwrap(), Vec::new());
    }
}
