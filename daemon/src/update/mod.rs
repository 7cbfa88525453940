//! The update engine (SPEC §6): `update.run` resolves one exact version,
//! installs it beside the live one, swaps it in all at once, hands off to
//! it, and keeps the previous install until the successor proves the new
//! version runs.

/// The auto-updater's check and apply, through this engine.
pub mod auto;
/// `update.check`: what the channel offers, changing nothing.
pub mod check;
/// `update.run`: validation, single flight, the mode's steps, the handoff.
pub mod flow;
/// Git checkouts: clean check, fetch, checkout, build, verify.
pub mod git;
/// The sentinel, the forced restart, and rollback when the successor fails.
pub mod handoff;
/// How moltd was installed: the live package root and stable entrypoint.
pub mod layout;
/// Single flight per install root, across processes and restarts.
pub mod lease;
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

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use molt_protocol::ids::RunId;
use serde::{Deserialize, Serialize};

use crate::paths::StatePaths;

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

impl Undo {
    /// Puts the previous version back.
    pub fn roll_back(&self) -> Result<(), String> {
        match self {
            Undo::Package { backup } => {
                let install = layout::locate(&backup.entrypoint).map_err(|e| e.to_string())?;
                swap::rollback(&install, backup).map_err(|e| e.to_string())
            }
            Undo::Git(undo) => undo.roll_back(),
        }
    }

    /// Whether the live install is still the one this update put there
    /// (a rollback of anything else would be a guess).
    pub fn still_applied(&self) -> Result<bool, String> {
        match self {
            Undo::Package { backup } => {
                let manifest = layout::read_manifest(&backup.root.join("package.json"))
                    .map_err(|e| e.to_string())?;
                Ok(manifest["version"].as_str() == backup.new_version.as_deref())
            }
            Undo::Git(undo) => undo.head().map(|head| head != undo.previous_commit),
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

pub fn write_undo(path: &Path, undo: &Undo) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(undo).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

pub fn read_undo(path: &Path) -> io::Result<Option<Undo>> {
    match std::fs::read(path) {
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
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_some() {
            return None;
        }
        *current = Some(run_id.clone());
        Some(SlotGuard { slot: self })
    }

    pub fn current(&self) -> Option<RunId> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Frees the slot when the run ends, however it ends.
pub struct SlotGuard<'a> {
    slot: &'a UpdateSlot,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.slot.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
