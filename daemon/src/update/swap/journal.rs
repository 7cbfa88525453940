//! The intent journal: a crash (`kill -9`, power loss) inside the swap
//! must leave a tree the next start can finish or put back.
//!
//! Before the first rename, [`super::swap`] writes every operation it will
//! make, with what each path holds before and after, to a journal file in
//! the state dir (atomically, fsynced). Whether an operation happened is
//! then read from the filesystem, never from a progress counter that a
//! crash could leave one step behind: each one leaves a mark only it
//! makes (the root holds the new version, a path exists at its new name,
//! a link or a file has its new content). The swap clears the journal
//! when it completes or when it undid itself.
//!
//! A journal found at start is resolved by the version this process runs,
//! which is what the entrypoint started after the crash: the new version
//! runs → the remaining operations are done (the previous tree is parked
//! for a manual rollback); the previous version runs → what was done is
//! undone. Either way entrypoint, package manifest and running version
//! agree afterwards. A process running neither version leaves the tree
//! and the journal alone for a person.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::*;
use super::ops::{apply, sync_dirs, undo};
use super::plan::Op;
use super::{Backup, SwapError};
use crate::fsutil;

/// A swap as planned, written before its first operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    format: u32,
    /// The install and the versions, with nothing done yet.
    planned: Backup,
    ops: Vec<Op>,
}

const FORMAT: u32 = 1;

/// How a start resolved an interrupted swap.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The new version runs: the swap was finished. What undoes it.
    Completed(Box<Backup>),
    /// The previous version runs: what the swap did was undone.
    Reversed,
}

impl Journal {
    pub(super) fn new(planned: Backup, ops: Vec<Op>) -> Self {
        Self {
            format: FORMAT,
            planned,
            ops,
        }
    }

    /// The live package root the swap was changing.
    pub fn root(&self) -> &Path {
        &self.planned.root
    }

    /// The run the swap belonged to (the backup tag).
    pub fn tag(&self) -> &str {
        &self.planned.tag
    }

    pub fn versions(&self) -> (Option<&str>, Option<&str>) {
        (
            self.planned.previous_version.as_deref(),
            self.planned.new_version.as_deref(),
        )
    }
}

/// Writes the journal; refuses when one is there already (an interrupted
/// swap nobody resolved yet must not be overwritten).
pub(super) fn write(path: &Path, journal: &Journal) -> Result<(), SwapError> {
    if exists(path) {
        return Err(SwapError::Preflight(format!(
            "{} records an interrupted swap that is not resolved yet",
            path.display()
        )));
    }
    let bytes = serde_json::to_vec_pretty(journal)
        .map_err(|e| SwapError::Preflight(format!("{}: {e}", path.display())))?;
    fsutil::write_atomic(path, &bytes)
        .map_err(|e| SwapError::Preflight(format!("cannot write {}: {e}", path.display())))
}

/// Clears the journal once the tree is whole again.
pub(super) fn clear(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(path = %path.display(), "cannot remove the swap journal: {e}"),
    }
}

/// The journal at `path`, if a swap was interrupted.
pub fn read(path: &Path) -> io::Result<Option<Journal>> {
    match fsutil::read_bounded(path, fsutil::MAX_STATE_FILE_BYTES) {
        Ok(bytes) => serde_json::from_slice::<Journal>(&bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))
            .and_then(|journal| match journal.format {
                FORMAT => Ok(Some(journal)),
                other => Err(io::Error::other(format!(
                    "{}: format {other}, this version reads {FORMAT}",
                    path.display()
                ))),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Finishes or reverses the swap `journal` describes, by `running`, the
/// version of this process. Blocking. The caller clears the journal on
/// success (see [`clear_after_recovery`]).
pub fn recover(journal: &Journal, running: &str) -> Result<Recovered, SwapError> {
    let (previous, new) = journal.versions();
    let mut backup = journal.planned.clone();
    if Some(running) == new {
        for op in &journal.ops {
            complete(op, &mut backup)
                .map_err(|(step, e)| SwapError::Rollback(format!("finishing {step}: {e}")))?;
        }
        sync_dirs(&backup);
        return Ok(Recovered::Completed(Box::new(backup)));
    }
    if Some(running) == previous {
        for op in &journal.ops {
            record_if_done(op, &mut backup);
        }
        undo(&backup).map_err(|e| SwapError::Rollback(e.to_string()))?;
        sync_dirs(&backup);
        return Ok(Recovered::Reversed);
    }
    Err(SwapError::Diverged(format!(
        "this process runs {running}, neither {previous:?} (before) nor {new:?} (swapped in)"
    )))
}

/// Removes the journal after [`recover`] succeeded.
pub fn clear_after_recovery(path: &Path) {
    clear(path);
}

/// Where the npm/bun trees are now.
#[derive(Debug, PartialEq, Eq)]
enum Trees {
    /// The previous tree is the live root.
    Untouched,
    /// Exchanged: the new tree is live, the previous one still in the stage.
    Exchanged,
    /// Done: the new tree is live, the previous one parked.
    Parked,
    /// Between the two renames of a filesystem without RENAME_EXCHANGE:
    /// no live root, the previous tree parked.
    Emptied,
}

fn trees(live: &Path, park: &Path, new_version: Option<&str>) -> Trees {
    let new_is_live = version_of(live).is_some() && version_of(live).as_deref() == new_version;
    match (new_is_live, exists(park), exists(live)) {
        (true, true, _) => Trees::Parked,
        (true, false, _) => Trees::Exchanged,
        (false, true, false) => Trees::Emptied,
        _ => Trees::Untouched,
    }
}

/// Whether `op` happened, read from the filesystem.
fn done(op: &Op) -> bool {
    match op {
        Op::ExchangeRoot { .. } => unreachable!("the trees are told apart by `trees`"),
        Op::Displace(d) => exists(&d.aside),
        Op::MoveIn { from, to } => exists(to) && !exists(from),
        Op::RootLink(change) => fs::read_link(&change.path).ok().as_ref() == Some(&change.current),
        Op::Shim(change) => read_shim(&change.path).ok().as_ref() == Some(&change.current),
        Op::File(change) => {
            fs::read(&change.path).ok().as_deref() == Some(change.current.as_bytes())
        }
    }
}

/// Records `op` in `backup` if it happened, as the swap would have.
fn record_if_done(op: &Op, backup: &mut Backup) {
    match op {
        Op::ExchangeRoot { staged, live, park } => {
            backup.previous_tree = match trees(live, park, backup.new_version.as_deref()) {
                Trees::Untouched => None,
                Trees::Exchanged => Some(staged.clone()),
                Trees::Parked | Trees::Emptied => Some(park.clone()),
            };
        }
        op if !done(op) => {}
        Op::Displace(d) => backup.displaced.push(d.clone()),
        Op::MoveIn { to, .. } => backup.added.push(to.clone()),
        Op::RootLink(change) => backup.root_link = Some(change.clone()),
        Op::Shim(change) => backup.shim = Some(change.clone()),
        Op::File(change) => backup.files.push(change.clone()),
    }
}

fn step(name: &str, path: &Path) -> String {
    format!("{name} {}", path.display())
}

/// Does `op` if it did not happen yet, and records it.
fn complete(op: &Op, backup: &mut Backup) -> Result<(), (String, io::Error)> {
    match op {
        Op::ExchangeRoot { staged, live, park } => {
            match trees(live, park, backup.new_version.as_deref()) {
                Trees::Untouched => return apply(op.clone(), backup, &mut |_| Ok(())),
                Trees::Exchanged => {
                    rename_noreplace(staged, park).map_err(|e| (step("park-previous", park), e))?;
                }
                Trees::Emptied => {
                    rename_noreplace(staged, live).map_err(|e| (step("install-root", live), e))?;
                }
                Trees::Parked => {}
            }
            backup.previous_tree = Some(park.clone());
            Ok(())
        }
        op if done(op) => {
            record_if_done(op, backup);
            Ok(())
        }
        op => apply(op.clone(), backup, &mut |_| Ok(())),
    }
}
