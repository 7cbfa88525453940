//! What this process is: its version, pid and start, fixed at start.

use std::time::Instant;

use crate::clock::unix_ms;

/// The version compiled into this binary (`MOLT_VERSION` at build time, for
/// release stamping, else the crate version).
pub const VERSION: &str = match option_env!("MOLT_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Everything fixed at start.
#[derive(Debug, Clone)]
pub struct Identity {
    pub version: String,
    pub pid: u32,
    pub started_at_ms: u64,
    pub started: Instant,
}

impl Identity {
    pub fn current() -> Self {
        Self {
            version: VERSION.to_owned(),
            pid: std::process::id(),
            started_at_ms: unix_ms(),
            started: Instant::now(),
        }
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}
