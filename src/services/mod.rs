//! Several services in one container (`--services FILE`): a main service (the command) and its helpers,
//! started in order and stopped in reverse inside one grace period. See docs/services.md.
//!
//! The file reader and the service table turn the file into validated definitions; readiness, membership
//! and the stop plan are each a concern of their own; the supervisor carries the plan out.

pub mod explain;
pub mod file;
pub mod membership;
pub mod output;
pub mod plan;
pub mod readiness;
pub mod supervisor;
pub mod table;

use std::ffi::OsString;
use std::path::Path;

pub use supervisor::ServicesSupervisor;
pub use table::{Readiness, ServiceTable};

/// Reads and validates the services file, `command` being the one after `--` (the main service's, if
/// given); the error is one line, `FILE:LINE: what is wrong`. Never inlined into start-up, so that a grace
/// with one command does not map its code (tools/hot-functions).
#[inline(never)]
pub fn load(path: &Path, command: &[OsString]) -> Result<ServiceTable, String> {
    let shown = path.display().to_string();
    let tables = file::read(path).map_err(|err| err.to_string())?;
    let table = table::build(tables, &shown, command).map_err(|err| err.to_string())?;
    // A `tcp:` host must be known without a DNS lookup, which could hold PID 1 (see readiness): said now,
    // before anything starts, rather than in the first probe.
    for service in &table.services {
        if let Some(Readiness::Tcp { host, port }) = &service.ready {
            readiness::resolve(host, *port)
                .map_err(|why| format!("{shown}:{}: {why}", service.line))?;
        }
    }
    Ok(table)
}
