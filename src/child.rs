//! Starting the command: finding it, spawning it in its own process group with grace's own signal setup
//! undone, and turning a failure into 126 or 127 with a message that names the cause.

use std::ffi::{c_char, CString, NulError, OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::exit_status;
use crate::sys::{self, ChildSetup};

/// Why the command could not be started (or grace could not set itself up to start it); the caller exits
/// with `status`.
#[derive(Debug)]
pub struct SpawnError {
    pub status: u8,
    pub message: String,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpawnError {}

/// The running main child.
#[derive(Clone, Debug)]
pub struct MainChild {
    pub pid: i32,
    /// The file that was executed, for the log.
    pub path: PathBuf,
}

/// What a service's process gets besides grace's own environment and standard descriptors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Launch<'a> {
    /// Variables set on top of grace's environment (a service's `env`, its name, `NOTIFY_SOCKET`).
    pub environment: &'a [(OsString, OsString)],
    /// Standard input from /dev/null: of several services, only the main one reads the container's.
    pub null_stdin: bool,
    /// Standard output and error to these (the write ends of pipes grace reads) instead of grace's own.
    pub stdout: Option<BorrowedFd<'a>>,
    pub stderr: Option<BorrowedFd<'a>>,
}

/// Finds `command[0]`, then starts it in a new process group with `setup` applied before exec.
pub fn spawn(command: &[OsString], setup: ChildSetup) -> Result<MainChild, SpawnError> {
    spawn_with(command, setup, Launch::default())
}

/// [`spawn`], with `launch`'s additions.
pub fn spawn_with(
    command: &[OsString],
    setup: ChildSetup,
    launch: Launch<'_>,
) -> Result<MainChild, SpawnError> {
    let program = command
        .first()
        .ok_or_else(|| not_found("no command given".to_string()))?;
    let search_path = launch
        .environment
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var_os("PATH"));
    let path = resolve(program, search_path.as_deref())?;
    let nul_byte = || {
        exec_failed(
            &path,
            &io::Error::new(
                io::ErrorKind::InvalidInput,
                "nul byte found in provided data",
            ),
        )
    };
    let path_c = CString::new(path.as_os_str().as_bytes()).map_err(|_| nul_byte())?;
    let strings: Vec<CString> = command
        .iter()
        .map(|argument| CString::new(argument.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| nul_byte())?;
    let argv = null_terminated(&strings);
    let environment = if launch.environment.is_empty() {
        None
    } else {
        Some(environment_with(launch.environment).map_err(|_| nul_byte())?)
    };
    let envp = environment.as_deref().map(null_terminated);
    // Without /dev/null (an empty /dev), the service shares grace's stdin rather than not starting at all.
    let null = if launch.null_stdin {
        std::fs::File::open("/dev/null").ok()
    } else {
        None
    };
    let exec = sys::spawn::Exec {
        path: &path_c,
        argv: &argv,
        envp: envp.as_deref(),
        stdin: null.as_ref().map(|file| file.as_fd()),
        stdout: launch.stdout,
        stderr: launch.stderr,
        setup,
    };
    let pid = sys::spawn::spawn(&exec).map_err(|err| exec_failed(&path, &err))?;
    // grace reaps every process itself, with waitpid(-1).
    Ok(MainChild { pid, path })
}

/// The pointers to `strings`, then a null pointer: an argv or an envp, valid while `strings` is.
fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|string| string.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// grace's environment with `additions` set on top of it: a variable set again keeps its place, a new one
/// comes after the inherited ones; a later addition of the same name wins.
fn environment_with(additions: &[(OsString, OsString)]) -> Result<Vec<CString>, NulError> {
    let entry = |name: &OsStr, value: &OsStr| {
        let mut bytes = Vec::with_capacity(name.len() + value.len() + 1);
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(b'=');
        bytes.extend_from_slice(value.as_bytes());
        CString::new(bytes)
    };
    let added = |name: &OsStr| {
        additions
            .iter()
            .rev()
            .find(|(added, _)| added == name)
            .map(|(_, value)| value.as_os_str())
    };
    let mut entries = Vec::new();
    let mut inherited_names = Vec::new();
    for (name, value) in std::env::vars_os() {
        entries.push(entry(&name, added(&name).unwrap_or(&value))?);
        inherited_names.push(name);
    }
    for (index, (name, _)) in additions.iter().enumerate() {
        let set_again_later = additions
            .get(index + 1..)
            .is_some_and(|later| later.iter().any(|(later, _)| later == name));
        if !set_again_later && !inherited_names.contains(name) {
            entries.push(entry(name, added(name).unwrap_or_default())?);
        }
    }
    Ok(entries)
}

/// The search a shell does: a name with a slash is a path, any other name is looked up in PATH.
fn resolve(program: &OsStr, search_path: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err(not_found(
            "command not found: '' (the command name is empty)".to_string(),
        ));
    }
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return match check_executable(&path) {
            Ok(()) => Ok(path),
            Err(Unusable::Missing) => Err(not_found(format!("{shown}: no such file or directory"))),
            Err(Unusable::Directory) => Err(not_executable(format!("{shown}: is a directory"))),
            Err(Unusable::NoPermission) => Err(not_executable(format!(
                "{shown}: permission denied (not executable)"
            ))),
        };
    }
    // POSIX leaves an unset PATH to the implementation; this is what glibc and musl use.
    let search_path = search_path.unwrap_or(OsStr::new(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ));
    let mut not_permitted = None;
    for directory in std::env::split_paths(search_path) {
        // An empty PATH entry means the current directory.
        let candidate = if directory.as_os_str().is_empty() {
            Path::new(".").join(program)
        } else {
            directory.join(program)
        };
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Unusable::NoPermission) => not_permitted = not_permitted.or(Some(candidate)),
            Err(Unusable::Missing | Unusable::Directory) => {}
        }
    }
    match not_permitted {
        Some(path) => Err(not_executable(format!(
            "{}: permission denied (not executable)",
            path.display()
        ))),
        None => Err(not_found(format!("{shown}: command not found in PATH"))),
    }
}

enum Unusable {
    Missing,
    Directory,
    NoPermission,
}

/// A quick check for a clear message; exec has the last word (and its error is mapped the same way).
fn check_executable(path: &Path) -> Result<(), Unusable> {
    let metadata = std::fs::metadata(path).map_err(|_| Unusable::Missing)?;
    if metadata.is_dir() {
        return Err(Unusable::Directory);
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(Unusable::NoPermission);
    }
    Ok(())
}

/// Starting the command failed although the file exists and is executable: a limit grace ran into (status
/// 1: grace could not set up, the command is not at fault), or exec refused the file (126).
fn exec_failed(path: &Path, err: &io::Error) -> SpawnError {
    let shown = path.display();
    if let Some(limit) = limit_reached(err) {
        return SpawnError {
            status: exit_status::INIT_FAILED,
            message: format!("cannot start {shown}: {limit}"),
        };
    }
    let message = match err.raw_os_error() {
        // The file is there, so what is missing is its interpreter: the `#!` line's, or a dynamic
        // executable's loader (a glibc binary in a scratch image).
        Some(libc::ENOENT) => format!("{shown}: bad interpreter: the program named by its #! line or its ELF loader does not exist"),
        Some(libc::ENOEXEC) => format!("{shown}: exec format error (not a binary for this machine, and no #! line)"),
        Some(libc::EACCES) => format!("{shown}: permission denied"),
        _ => format!("{shown}: cannot execute: {err}"),
    };
    not_executable(message)
}

/// What a resource error from fork or exec means, naming the limit.
fn limit_reached(err: &io::Error) -> Option<String> {
    use nix::sys::resource::{getrlimit, Resource};
    let soft_limit = |resource| {
        getrlimit(resource).map_or_else(|_| "?".to_string(), |(soft, _)| soft.to_string())
    };
    let text = match err.raw_os_error()? {
        libc::EAGAIN => format!(
            "no process slot left ({err}): the pids limit of the container's cgroup or RLIMIT_NPROC \
             (ulimit -u, {}) is reached",
            soft_limit(Resource::RLIMIT_NPROC)
        ),
        libc::EMFILE => format!(
            "out of file descriptors ({err}): RLIMIT_NOFILE (ulimit -n) is {}",
            soft_limit(Resource::RLIMIT_NOFILE)
        ),
        libc::ENFILE => format!("the system's file table is full ({err})"),
        libc::ENOMEM => format!("out of memory ({err})"),
        _ => return None,
    };
    Some(text)
}

fn not_found(message: String) -> SpawnError {
    SpawnError {
        status: exit_status::NOT_FOUND,
        message,
    }
}

fn not_executable(message: String) -> SpawnError {
    SpawnError {
        status: exit_status::NOT_EXECUTABLE,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        let path = Some(OsStr::new("/nonexistent:/bin:/usr/bin"));
        assert!(resolve(OsStr::new("sh"), path).unwrap().ends_with("sh"));
        assert_eq!(
            resolve(OsStr::new("no-such-command-grace"), path)
                .unwrap_err()
                .status,
            127
        );
        assert_eq!(resolve(OsStr::new(""), path).unwrap_err().status, 127);
        assert_eq!(resolve(OsStr::new("/"), path).unwrap_err().status, 126);
        assert_eq!(
            resolve(OsStr::new("/etc/passwd"), path).unwrap_err().status,
            126
        );
        assert_eq!(
            resolve(OsStr::new("/no/such/file"), path)
                .unwrap_err()
                .status,
            127
        );
    }
}
