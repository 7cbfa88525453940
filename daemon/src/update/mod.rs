//! The update engine (SPEC §6): runs, the install-root lease, the sentinel.

/// `update-runs.jsonl`: durable, append-only run records.
pub mod runs;
