//! `metrics-handoff.json`: the counts a predecessor hands its successor.
//!
//! Written atomically (0600) by the predecessor just before it accepts the
//! successor (or, under exec, just before the exec), naming both pids; read
//! once by the successor after it was accepted, and only if it names this
//! pid as the one it was written for, so a file left by an earlier handoff
//! is never counted twice. The successor removes it once read. A missing or
//! unreadable file only means the counts start from zero: a warning, never
//! a failed start.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Counted, Metrics};
use crate::fsutil::{MAX_STATE_FILE_BYTES, read_bounded, write_atomic};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandedOver {
    from: u32,
    to: u32,
    counted: Counted,
}

/// Freezes `metrics` and writes its counts for `successor`.
pub fn hand_over(metrics: &Metrics, path: &Path, own_pid: u32, successor: u32) {
    let counted = metrics.freeze();
    let doc = HandedOver {
        from: own_pid,
        to: successor,
        counted,
    };
    let written = serde_json::to_vec(&doc)
        .map_err(io::Error::other)
        .and_then(|bytes| write_atomic(path, &bytes));
    if let Err(e) = written {
        tracing::warn!(
            "{}: metrics not handed to pid {successor} (its counters start from zero): {e}",
            path.display()
        );
    }
}

/// Adds to `metrics` what a predecessor handed to this process
/// (`own_pid`), if anything, and removes the file.
pub fn take_over(metrics: &Metrics, path: &Path, own_pid: u32) {
    let Some(counted) = read(path, own_pid) else {
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

fn read(path: &Path, own_pid: u32) -> Option<Counted> {
    let bytes = match read_bounded(path, MAX_STATE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{}: predecessor's metrics not taken: {e}", path.display());
            return None;
        }
    };
    match serde_json::from_slice::<HandedOver>(&bytes) {
        Ok(doc) if doc.to == own_pid => Some(doc.counted),
        Ok(doc) => {
            tracing::info!(
                "{}: written by pid {} for pid {}, not this one; ignored",
                path.display(),
                doc.from,
                doc.to
            );
            None
        }
        Err(e) => {
            tracing::warn!("{}: predecessor's metrics not taken: {e}", path.display());
            None
        }
    }
}
