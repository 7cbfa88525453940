//! `metrics-handoff.json`: the counts a predecessor hands its successor.
//!
//! Written atomically (0600) by the predecessor just before it accepts the
//! successor (or, under exec, just before the exec), naming both pids; read
//! once by the successor after it was accepted, and only if it names this
//! pid as the one it was written for, so a file left by an earlier handoff
//! is never counted twice. The successor removes it once read. A missing or
//! unreadable file only means the counts start from zero: a warning, never
//! a failed start.
//!
//! Under a supervisor (`supervised`) the successor's pid is not known: the
//! predecessor names no heir and exits, and the next moltd that starts on
//! the state dir (it holds the gateway lock, so the predecessor is gone)
//! takes the counts, if they were written within [`NEXT_START_WITHIN_MS`]:
//! a supervisor restarts in seconds, and counts a stopped gateway left are
//! not carried into a start days later.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Counted, Metrics};
use crate::clock::unix_ms;
use crate::fsutil::{MAX_STATE_FILE_BYTES, read_bounded, write_atomic};

/// How old counts handed to the next start may be when it takes them.
pub const NEXT_START_WITHIN_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandedOver {
    from: u32,
    /// The successor's pid; `null`: the next moltd to start.
    to: Option<u32>,
    /// Unix ms, when written.
    #[serde(default)]
    at: u64,
    counted: Counted,
}

/// Who takes the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heir {
    /// This pid: a respawned successor, or this process after an exec.
    Pid(u32),
    /// The next moltd to start on the state dir, once this one exited
    /// (a supervisor starts it).
    NextStart,
}

/// Freezes `metrics` and writes its counts for `heir`.
pub fn hand_over(metrics: &Metrics, path: &Path, own_pid: u32, heir: Heir) {
    let counted = metrics.freeze();
    let doc = HandedOver {
        from: own_pid,
        to: match heir {
            Heir::Pid(pid) => Some(pid),
            Heir::NextStart => None,
        },
        at: unix_ms(),
        counted,
    };
    let written = serde_json::to_vec(&doc)
        .map_err(io::Error::other)
        .and_then(|bytes| write_atomic(path, &bytes));
    if let Err(e) = written {
        tracing::warn!(
            "{}: metrics not handed to {heir:?} (its counters start from zero): {e}",
            path.display()
        );
    }
}

/// Adds to `metrics` what a predecessor handed to this process
/// (`own_pid`), if anything, and removes the file. `accepted`: this
/// process was accepted by a live predecessor (respawn, exec) and takes
/// only counts written for its pid; otherwise it started on its own and
/// takes only recent counts written for the next start.
pub fn take_over(metrics: &Metrics, path: &Path, own_pid: u32, accepted: bool) {
    let Some(counted) = read(path, own_pid, accepted) else {
        return;
    };
    metrics.take_over(&counted);
    tracing::info!(
        generation = counted.predecessors + 2,
        "took over the predecessor's metrics"
    );
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!("{}: cannot remove: {e}", path.display());
    }
}

fn read(path: &Path, own_pid: u32, accepted: bool) -> Option<Counted> {
    let bytes = match read_bounded(path, MAX_STATE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{}: predecessor's metrics not taken: {e}", path.display());
            return None;
        }
    };
    match serde_json::from_slice::<HandedOver>(&bytes) {
        Ok(doc) if accepted && doc.to == Some(own_pid) => Some(doc.counted),
        Ok(doc)
            if !accepted
                && doc.to.is_none()
                && unix_ms().saturating_sub(doc.at) <= NEXT_START_WITHIN_MS =>
        {
            Some(doc.counted)
        }
        Ok(doc) => {
            tracing::info!(
                "{}: written by pid {} for {}, not this process; ignored",
                path.display(),
                doc.from,
                doc.to
                    .map_or_else(|| "the next start".to_owned(), |pid| format!("pid {pid}"))
            );
            None
        }
        Err(e) => {
            tracing::warn!("{}: predecessor's metrics not taken: {e}", path.display());
            None
        }
    }
}
