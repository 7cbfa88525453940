//! molt-daemon

/// Restart scheduling: delays, cooldown, coalescing and deferral.
pub mod restart;
