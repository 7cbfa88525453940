//! The update engine (SPEC §6): target resolution, steps, runs, the
//! install-root lease and the sentinel. The `update.run` orchestration that
//! ties them together is not served yet.

/// Single flight per install root, across processes and restarts.
pub mod lease;
/// `update-runs.jsonl`: durable, append-only run records.
pub mod runs;
/// `restart-sentinel.json`: the update restart's note to its successor.
pub mod sentinel;
/// Commands as argv vectors with head/tail capture, timeouts and process
/// group kills.
pub mod steps;
/// Tags, package metadata and channel resolution.
pub mod target;
