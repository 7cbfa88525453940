//! The update engine (SPEC §6): target resolution, steps, staging and
//! swap, runs, the install-root lease and the sentinel. The `update.run`
//! orchestration that ties them together is not served yet.

/// How moltd was installed: the live package root and stable entrypoint.
pub mod layout;
/// Single flight per install root, across processes and restarts.
pub mod lease;
/// `update-runs.jsonl`: durable, append-only run records.
pub mod runs;
/// `restart-sentinel.json`: the update restart's note to its successor.
pub mod sentinel;
/// A private stage, the manager's install into it, its verification.
pub mod stage;
/// Commands as argv vectors with head/tail capture, timeouts and process
/// group kills.
pub mod steps;
/// The all-or-nothing swap of a stage into the live install, and rollback.
pub mod swap;
/// Tags, package metadata and channel resolution.
pub mod target;
