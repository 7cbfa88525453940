//! The update engine (SPEC §6): runs, the install-root lease, the sentinel.

/// Single flight per install root, across processes and restarts.
pub mod lease;
/// `update-runs.jsonl`: durable, append-only run records.
pub mod runs;
/// `restart-sentinel.json`: the update restart's note to its successor.
pub mod sentinel;
