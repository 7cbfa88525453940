//! molt-daemon: the `moltd` gateway daemon.

/// Atomic 0600 file writes and 0700 directories.
pub mod fsutil;
/// Where the state files live, from flags and env.
pub mod paths;
