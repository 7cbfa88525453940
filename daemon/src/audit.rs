//! `audit.jsonl`: the audit trail, one line per change made to the gateway
//! (who, what, when, how it ended), served by `audit.list`.
//!
//! Append-only and crash-safe as the run store is ([`append_log`]): one
//! fsynced `write` per entry, so an entry is on disk before the change is
//! answered; a torn last line is skipped by readers and cut off by the
//! next append; both processes of a handoff append under the file's lock.
//! Retention: past [`Retention::max_lines`] lines or
//! [`Retention::max_bytes`] bytes the file is rewritten atomically with its
//! newest [`Retention::keep`] lines (at most half of both bounds).
//!
//! Blocking (flock, fsync): call from `spawn_blocking` in async code.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use molt_protocol::actor::Actor;
use molt_protocol::audit::{
    AuditAction, AuditEntry, AuditListParams, AuditListResult, AuditOutcome, DEFAULT_AUDIT_LIMIT,
    MAX_AUDIT_LIMIT,
};
use molt_protocol::ids::RunId;
use serde_json::Value;

use crate::clock::unix_ms;
use crate::fsutil::{append_log, path_error, read_all_bounded, write_atomic};

/// When to compact and what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_lines: u64,
    pub max_bytes: u64,
    /// Lines a compaction keeps, newest first.
    pub keep: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_lines: 10_000,
            max_bytes: 8 * 1024 * 1024,
            keep: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("before: no entry {0} in the audit trail (it may have been compacted away)")]
    UnknownCursor(String),
    #[error("action: expected one of {}, got {:?}", action_names(), .0)]
    UnknownAction(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The trail at one path; holds no open file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    retention: Retention,
}

impl AuditLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_retention(path, Retention::default())
    }

    pub fn with_retention(path: impl Into<PathBuf>, retention: Retention) -> Self {
        Self {
            path: path.into(),
            retention,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Twice what compaction lets the file grow to.
    fn read_limit(&self) -> u64 {
        self.retention.max_bytes.saturating_mul(2)
    }

    /// Appends `entry` and fsyncs it; compacts past the bounds (a failed
    /// compaction is logged: the entry is durable by then).
    pub fn append(&self, entry: &AuditEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let file = append_log::open_for_append(&self.path)?;
        let lines = append_log::append_line(&file, &self.path, &line, |tail| {
            serde_json::from_slice::<AuditEntry>(tail).is_ok()
        })?;
        let len = file
            .metadata()
            .map_err(|e| path_error(e, "stat", &self.path))?
            .len();
        if (lines > self.retention.max_lines || len > self.retention.max_bytes)
            && let Err(e) = self.compact_locked(&file)
        {
            tracing::warn!("compacting {}: {e}", self.path.display());
        }
        Ok(())
    }

    fn compact_locked(&self, file: &std::fs::File) -> io::Result<()> {
        let bytes = read_all_bounded(file, &self.path, self.read_limit())?;
        let lines: Vec<&[u8]> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| serde_json::from_slice::<AuditEntry>(l).is_ok())
            .collect();
        let keep = self
            .retention
            .keep
            .min(self.retention.max_lines as usize / 2)
            .max(1);
        // Newest first, within half the byte bound (the newest always).
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut total = 0u64;
        for line in lines.iter().rev().take(keep) {
            let size = line.len() as u64 + 1;
            if !kept.is_empty() && total + size > self.retention.max_bytes / 2 {
                break;
            }
            total += size;
            kept.push(line);
        }
        let mut out = Vec::with_capacity(total as usize);
        for line in kept.iter().rev() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        let kept = kept.len();
        write_atomic(&self.path, &out)?;
        tracing::info!(
            "compacted {}: kept {kept} of {} entries",
            self.path.display(),
            lines.len()
        );
        Ok(())
    }

    /// Every entry, oldest first; a torn or unparsable line is skipped
    /// with a warning.
    pub fn entries(&self) -> io::Result<Vec<AuditEntry>> {
        let Some(file) = append_log::open_for_read(&self.path)? else {
            return Ok(Vec::new());
        };
        let bytes = read_all_bounded(&file, &self.path, self.read_limit())?;
        let mut entries = Vec::new();
        let mut bad = 0usize;
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AuditEntry>(line) {
                Ok(entry) => entries.push(entry),
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(
                "{}: skipped {bad} line(s) that do not parse as audit entries",
                self.path.display()
            );
        }
        Ok(entries)
    }

    /// One page of `audit.list`: newest first, filtered.
    pub fn list(&self, params: &AuditListParams) -> Result<AuditListResult, ListError> {
        let action = match params.action.as_deref() {
            Some(name) => Some(
                AuditAction::from_name(name).ok_or_else(|| ListError::UnknownAction(cut(name)))?,
            ),
            None => None,
        };
        let limit = params
            .limit
            .unwrap_or(DEFAULT_AUDIT_LIMIT)
            .clamp(1, MAX_AUDIT_LIMIT) as usize;
        let mut entries = self.entries()?;
        if let Some(before) = &params.before {
            let at = entries
                .iter()
                .position(|e| &e.id == before)
                .ok_or_else(|| ListError::UnknownCursor(cut(before)))?;
            entries.truncate(at);
        }
        let matching = entries.into_iter().rev().filter(|e| {
            action.is_none_or(|a| e.action == a)
                && params.since.is_none_or(|since| e.at >= since)
                && params
                    .actor
                    .as_deref()
                    .is_none_or(|who| actor_is(&e.actor, who))
        });
        let mut page: Vec<AuditEntry> = matching.take(limit + 1).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        Ok(AuditListResult {
            next_before: more.then(|| page.last().map(|e| e.id.clone())).flatten(),
            entries: page,
        })
    }
}

fn action_names() -> String {
    let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
    names.join(", ")
}

fn actor_is(actor: &Actor, who: &str) -> bool {
    actor.kind() == who || matches!(actor, Actor::Client { client_id, .. } if client_id == who)
}

/// A value a client sent, cut for an error message.
fn cut(s: &str) -> String {
    s.chars().take(128).collect()
}

/// An entry for a change answered now.
pub fn entry(
    action: AuditAction,
    actor: Actor,
    params: Value,
    outcome: AuditOutcome,
    run_id: Option<RunId>,
) -> AuditEntry {
    AuditEntry {
        id: new_id(),
        at: unix_ms(),
        action,
        actor,
        params,
        outcome,
        run_id,
        pid: std::process::id(),
    }
}

/// `audit-<unix ms, 13 digits>-<8 hex>`, rising within this process.
fn new_id() -> String {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = unix_ms();
    let prev = LAST_MS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    let ms = now.max(prev + 1);
    let mut random = [0u8; 4];
    if getrandom::fill(&mut random).is_err() {
        random = std::process::id().to_le_bytes();
    }
    format!("audit-{ms:013}-{}", hex::encode(random))
}

#[cfg(test)]
mod tests;
