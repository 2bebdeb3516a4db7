//! Placeholder for the validated service table (the reader's branch brings the real one).
use std::ffi::OsString;
use std::time::Duration;

pub use super::readiness::Readiness;

#[derive(Clone, Debug)]
pub struct ServiceTable {
    pub services: Vec<Service>,
}

impl ServiceTable {
    pub fn main_index(&self) -> usize {
        self.services
            .iter()
            .position(|service| service.main)
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub line: usize,
    pub command: Vec<OsString>,
    pub main: bool,
    pub once: bool,
    pub ready: Option<Readiness>,
    pub ready_timeout: Option<Duration>,
    pub restart: Option<crate::restart::Policy>,
    pub max_restarts: Option<u32>,
    pub optional: bool,
    pub stop_signal: Option<crate::signals::Signal>,
    pub stop_timeout: Option<Duration>,
    pub env: Vec<(OsString, OsString)>,
}
