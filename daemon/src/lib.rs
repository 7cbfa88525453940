//! molt-daemon: the `moltd` gateway daemon.

/// `openclaw.json`: JSON5 loading, typed settings, merge patch, the config store.
pub mod config;
/// The state dir's `.env` file layered under the process env.
pub mod env_file;
/// Atomic 0600 file writes and 0700 directories.
pub mod fsutil;
/// `gateway.lock`: the flock that makes one daemon per state dir.
pub mod lock;
/// Where the state files live, from flags and env.
pub mod paths;
