//! The inits under test: where they are, how each takes its command line, what version it is.

use crate::elf;
use crate::error::{Context, Result};
use crate::namespace;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How an init is told its command.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// `init [OPTIONS] -- COMMAND…` (grace, tini, catatonit).
    DoubleDash,
    /// `init COMMAND…` (dumb-init).
    Bare,
}

/// One init binary under test.
#[derive(Clone, Debug)]
pub struct Init {
    /// Short name, the table's column heading.
    pub name: String,
    /// The executable that is run.
    pub path: PathBuf,
    /// Where it was found (differs from `path` once grace is snapshotted).
    pub source: PathBuf,
    /// Whether this is grace (the others are the peers it is compared with): the build under test, or a
    /// release of it.
    pub is_grace: bool,
    /// The release this is (`0.2`), for grace's earlier release; `None` for the build under test and the peers.
    pub release: Option<String>,
    style: Style,
}

/// The peers the bench looks for: Debian's `tini` package ships both tini and tini-static.
const PEERS: [(&str, Style); 4] = [
    ("tini", Style::DoubleDash),
    ("tini-static", Style::DoubleDash),
    ("dumb-init", Style::Bare),
    ("catatonit", Style::DoubleDash),
];

/// Where peers live when they are not on PATH (podman ships catatonit under libexec).
const EXTRA_DIRECTORIES: [&str; 4] = [
    "/usr/bin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/libexec/podman",
];

impl Init {
    /// grace's release `version`, built at `path`.
    pub fn release(version: &str, path: PathBuf) -> Init {
        Init {
            name: format!("grace {version}"),
            source: path.clone(),
            path,
            is_grace: true,
            release: Some(version.to_owned()),
            style: Style::DoubleDash,
        }
    }

    /// Whether this is the build of grace under test (not a release of it, not a peer).
    pub fn is_current_grace(&self) -> bool {
        self.is_grace && self.release.is_none()
    }

    /// The init's command line running `command`, with init `options` before the command.
    pub fn argv(&self, options: &[&str], command: &[OsString]) -> Vec<OsString> {
        let mut argv = vec![self.path.clone().into_os_string()];
        argv.extend(options.iter().map(OsString::from));
        if let Style::DoubleDash = self.style {
            argv.push("--".into());
        }
        argv.extend(command.iter().cloned());
        argv
    }

    /// Copies the executable into `directory` (same file name) and runs the copy from now on,
    /// so that a rebuild during the run cannot mix two builds in one table.
    pub fn snapshot(&mut self, directory: &Path) -> Result<()> {
        let file_name = self
            .path
            .file_name()
            .context("an init path without a file name")?;
        std::fs::create_dir_all(directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        let copy = directory.join(file_name);
        std::fs::copy(&self.path, &copy)
            .with_context(|| format!("copying {}", self.path.display()))?;
        self.path = copy;
        Ok(())
    }

    /// File size in bytes.
    pub fn size_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)
            .with_context(|| format!("stat {}", self.path.display()))?
            .len())
    }

    /// Whether the executable is static (has no PT_INTERP).
    pub fn is_static(&self) -> Result<bool> {
        Ok(elf::interpreter(&self.path)?.is_none())
    }

    /// The first line `--version` prints, if it exits 0 within two seconds.
    pub fn version(&self) -> Option<String> {
        program_version(&self.path, Duration::from_secs(2))
    }
}

/// The first non-empty line `PROGRAM --version` prints (on stdout or stderr), if it exits 0 within `limit`.
pub fn program_version(path: &Path, limit: Duration) -> Option<String> {
    let child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let output = namespace::wait_with_output(child, limit).ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

/// Where grace's binary comes from.
pub enum GraceChoice {
    /// Do not bench grace.
    Skip,
    /// This path (from `--grace` or `GRACE_BIN`).
    Path(PathBuf),
    /// The first of the default build outputs that exists.
    Default,
}

/// The inits found, and a note for each one skipped.
pub struct Found {
    /// grace first (if found), then the peers in a fixed order.
    pub inits: Vec<Init>,
    /// Why an init is missing from the table.
    pub notes: Vec<String>,
}

/// Finds grace and every installed peer. `only` limits the set to the named inits.
pub fn discover(grace: &GraceChoice, only: Option<&[String]>) -> Found {
    let wanted = |name: &str| only.map_or(true, |names| names.iter().any(|wanted| wanted == name));
    let mut found = Found {
        inits: Vec::new(),
        notes: Vec::new(),
    };
    if wanted("grace") {
        match grace_path(grace) {
            Ok(Some(path)) => found.inits.push(Init {
                name: "grace".into(),
                source: path.clone(),
                path,
                is_grace: true,
                release: None,
                style: Style::DoubleDash,
            }),
            Ok(None) => {}
            Err(note) => found.notes.push(note),
        }
    }
    for (name, style) in PEERS {
        if !wanted(name) {
            continue;
        }
        match find_program(name) {
            Some(path) => found.inits.push(Init {
                name: name.into(),
                source: path.clone(),
                path,
                is_grace: false,
                release: None,
                style,
            }),
            None => found.notes.push(format!(
                "{name}: not installed (not on PATH nor in {}), skipped",
                EXTRA_DIRECTORIES.join(", ")
            )),
        }
    }
    found
}

/// The default locations of grace's binary, relative to the repository root (bench/..).
pub fn default_grace_paths() -> [PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        root.join("target/x86_64-unknown-linux-musl/release/grace"),
        root.join("target/release/grace"),
    ]
}

fn grace_path(choice: &GraceChoice) -> Result<Option<PathBuf>, String> {
    match choice {
        GraceChoice::Skip => Ok(None),
        GraceChoice::Path(path) if is_executable(path) => Ok(Some(path.clone())),
        GraceChoice::Path(path) => Err(format!(
            "grace: {} is not an executable file, skipped",
            path.display()
        )),
        GraceChoice::Default => {
            let candidates = default_grace_paths();
            match candidates.iter().find(|path| is_executable(path)) {
                Some(path) => Ok(Some(path.canonicalize().unwrap_or_else(|_| path.clone()))),
                None => Err(format!(
                    "grace: not built (looked for {}), skipped; pass --grace PATH or set GRACE_BIN",
                    candidates
                        .iter()
                        .map(|path| path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                )),
            }
        }
    }
}

/// The first executable called `name` on PATH or in the extra directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(EXTRA_DIRECTORIES.iter().map(PathBuf::from))
        .map(|directory| directory.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(style: Style) -> Init {
        Init {
            name: "x".into(),
            path: "/x".into(),
            source: "/x".into(),
            is_grace: false,
            release: None,
            style,
        }
    }

    #[test]
    fn command_lines_follow_each_init_style() {
        let command = [OsString::from("/bin/true")];
        assert_eq!(
            init(Style::DoubleDash).argv(&["--grace-period", "1s"], &command),
            ["/x", "--grace-period", "1s", "--", "/bin/true"]
        );
        assert_eq!(init(Style::Bare).argv(&[], &command), ["/x", "/bin/true"]);
    }
}
