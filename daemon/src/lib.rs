//! molt-daemon: the `moltd` gateway daemon.

/// Atomic 0600 file writes and 0700 directories.
pub mod fsutil;
