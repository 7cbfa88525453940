//! The update engine: `update.run` resolves one exact version,
//! installs it beside the live one, swaps it in all at once, hands off to
//! it, and keeps the previous install until the successor proves the new
//! version runs. docs/design.md walks one run from frame to successor.

/// The new tree's `CHANGELOG.md`: the entries the update brings.
pub mod changelog;
/// `update.check`: what the channel offers, changing nothing.
pub mod check;
/// What a run is given: run store, events, restart handle, steps, facts.
pub mod context;
/// Why a run ends without a handoff, typed, with its wire code.
pub mod failure;
/// `update.run`: validation, single flight, the mode's steps, the handoff.
pub mod flow;
/// Git checkouts: clean check, fetch, checkout, build, verify.
pub mod git;
/// The sentinel, the forced restart, and rollback when the successor fails.
pub mod handoff;
/// Single flight per install root, across processes and restarts.
pub mod lease;
/// Run owners: this process and others, identified from `/proc`.
pub mod owner;
/// Package installs: resolve, stage, install, verify, swap.
pub mod package;
/// One run in progress: its record, steps and events.
pub mod record;
/// The previous version rolls back a new one that crash-loops.
pub mod rescue;
/// At start: verify the sentinel and resolve what a predecessor left.
pub mod resume;
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
#[cfg(test)]
pub(crate) mod testing;

use std::io;
use std::path::{Path, PathBuf};

use molt_protocol::ids::RunId;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::install::layout::{self, LayoutError};
use crate::paths::StatePaths;

/// Validated `update.run` params.
pub struct Plan {
    pub tag: Option<target::TagSpec>,
    pub channel: molt_protocol::update::Channel,
    /// The bound on each command (`timeoutMs`).
    pub timeout: std::time::Duration,
    pub dry_run: bool,
    pub restart_delay_ms: Option<u64>,
}

/// What a mode's steps leave for the handoff.
pub struct Prepared {
    pub undo: Undo,
    /// Restart at once, past deferral and cooldown (package swaps).
    pub forced: bool,
}

/// What undoes an applied update until its successor is verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Undo {
    /// A package swap and the previous tree.
    Package {
        backup: Box<swap::Backup>,
    },
    Git(git::GitUndo),
}

/// Why an update could not be undone, or its state not told.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Swap(#[from] swap::SwapError),
    #[error(transparent)]
    Git(#[from] git::GitError),
}

impl Undo {
    /// Puts the previous version back. Blocking.
    pub fn roll_back(&self) -> Result<(), UndoError> {
        match self {
            Undo::Package { backup } => {
                let install = layout::locate(&backup.entrypoint)?;
                Ok(swap::rollback(&install, backup)?)
            }
            Undo::Git(undo) => Ok(undo.roll_back()?),
        }
    }

    /// Whether the live install is still the one this update put there
    /// (a rollback of anything else would be a guess). Blocking.
    pub fn still_applied(&self) -> Result<bool, UndoError> {
        match self {
            Undo::Package { backup } => {
                let manifest = layout::read_manifest(&backup.root.join("package.json"))?;
                Ok(manifest["version"].as_str() == backup.new_version.as_deref())
            }
            Undo::Git(undo) => Ok(undo.head()? != undo.previous_commit),
        }
    }

    pub fn mode(&self) -> molt_protocol::update::InstallMode {
        match self {
            Undo::Package { backup } => backup.mode,
            Undo::Git(_) => molt_protocol::update::InstallMode::Git,
        }
    }

    /// The new version is verified: retire what only served a rollback
    /// (the previous package tree stays as the one manual rollback).
    pub fn retire(&self) {
        match self {
            Undo::Package { backup } => swap::discard(backup),
            Undo::Git(undo) => undo.retire(),
        }
    }
}

/// Where the previous install is described while an update is unverified:
/// the successor retires it once it runs the new version.
pub fn undo_path(paths: &StatePaths) -> PathBuf {
    paths.state_dir.join("update-backup.json")
}

/// The swap's intent journal (see `swap/journal.rs`): present only while
/// a swap runs, or after a crash inside one until the next start resolves it.
pub fn journal_path(paths: &StatePaths) -> PathBuf {
    paths.state_dir.join("update-swap.json")
}

pub fn write_undo(path: &Path, undo: &Undo) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(undo).map_err(io::Error::other)?;
    fsutil::write_atomic(path, &bytes)
}

pub fn read_undo(path: &Path) -> io::Result<Option<Undo>> {
    match fsutil::read_bounded(path, fsutil::MAX_STATE_FILE_BYTES) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One update at a time in this process (the lease covers other processes).
#[derive(Debug, Default)]
pub struct UpdateSlot {
    current: Mutex<Option<RunId>>,
}

impl UpdateSlot {
    pub fn try_claim(&self, run_id: &RunId) -> Option<SlotGuard<'_>> {
        let mut current = self.current.lock();
        if current.is_some() {
            return None;
        }
        *current = Some(run_id.clone());
        Some(SlotGuard { slot: self })
    }

    pub fn current(&self) -> Option<RunId> {
        self.current.lock().clone()
    }
}

/// Frees the slot when the run ends, however it ends.
pub struct SlotGuard<'a> {
    slot: &'a UpdateSlot,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.slot.current.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undo_record_over_the_limit_is_refused_naming_the_file_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-backup.json");
        fsutil::testing::oversize(&path);
        let err = read_undo(&path).unwrap_err();
        fsutil::testing::assert_refused_over(&err, &path, fsutil::MAX_STATE_FILE_BYTES);
    }
}
