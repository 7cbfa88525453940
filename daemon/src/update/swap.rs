//! The swap: a verified stage becomes the live install through renames
//! that never leave a mixed tree, recorded in a [`Backup`] that this
//! process, or its successor after a restart, uses to roll back or retire.
//!
//! * npm, bun: the staged root and the live root trade places in one
//!   `renameat2(RENAME_EXCHANGE)` (two `RENAME_NOREPLACE` renames where the
//!   filesystem lacks it), the previous tree is parked beside the root as
//!   `.<name>.molt-backup-<tag>`, the bin symlink is pointed at the root if
//!   it is not already (temp symlink + rename), and bun's global
//!   `package.json` (and `bun.lock`, see below) names the new version.
//! * pnpm: the staged `.pnpm/<name>@<new>` directory moves into the live
//!   `.pnpm` (a new name: the running version's tree is not touched), the
//!   root symlink is swapped (temp symlink + rename), the wrapper script is
//!   rewritten to name the new directory (temp file + rename), and the
//!   global `package.json` (and lock files) name the new version. Until the
//!   root link moves nothing the live install uses has changed, and the
//!   wrapper names a versioned path: every instant runs one whole version.
//!
//! Any failure undoes the completed steps in reverse; the result is the
//! tree as it was, byte for byte.
//!
//! Manager files: the global `package.json` gets the exact new version (so
//! the manager's next global install keeps it rather than reinstalling the
//! old one). Lock files (`bun.lock`; pnpm's `pnpm-lock.yaml` and
//! `node_modules/.pnpm/lock.yaml`) are replaced by the staged ones when
//! moltd is the global project's only dependency: the staged install of the
//! same spec into an empty project is then exactly what the manager would
//! have written. With other global packages the lock files are left as
//! they are: both managers see the specifier in `package.json` no longer
//! matches the lock and re-resolve it at their next global install.
//! A binary `bun.lockb` is never touched.
//!
//! Backup policy: the previous version is kept until the successor has
//! proved it runs the new one, then [`discard`] retires older backups and
//! keeps this last one for a manual rollback: at most one previous tree per
//! install (npm/bun: the parked `.<name>.molt-backup-<tag>`; pnpm: the old
//! `.pnpm/<name>@<old>` directory, which pnpm itself also keeps).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use molt_protocol::update::InstallMode;
use serde::{Deserialize, Serialize};

use crate::install::layout::Install;
#[cfg(test)]
use files::*;
use ops::{apply, check_rollback_state, retired_paths, sync_dirs, undo};
#[cfg(test)]
use plan::set_dependency;
use plan::{Plan, plan_pnpm, plan_tree, valid_tag};

/// Test builds only: SIGKILL at a chosen operation of the swap.
#[cfg(feature = "fault-injection")]
mod faults;
/// Small file operations the swap is made of: atomic replaces, renames
/// that never overwrite, and reads of what is there.
mod files;
/// The intent journal a crash mid-swap is finished or reversed from.
mod journal;
/// Carrying out a planned step, recording it, and undoing what was done.
mod ops;
/// What a swap will do, worked out before anything live changes.
mod plan;

pub(crate) use files::lexical;
pub use journal::{Journal, Recovered, clear_after_recovery, read as read_journal, recover};

/// The bin entrypoint as a state that can be restored exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Shim {
    Missing,
    Symlink { target: PathBuf },
    Script { content: String, mode: u32 },
}

/// A path's state before and after the swap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change<T> {
    pub path: PathBuf,
    pub previous: T,
    pub current: T,
}

/// A manager file the swap rewrote (`None`: it did not exist).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub path: PathBuf,
    pub previous: Option<String>,
    pub current: String,
    pub mode: u32,
}

/// A directory that was in the way of a staged one, moved aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Displaced {
    pub path: PathBuf,
    pub aside: PathBuf,
}

/// Everything a swap changed, with what was there before: enough for
/// [`rollback`] (also from a successor process, after a restart) and
/// [`discard`]. Only completed steps are recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub mode: InstallMode,
    pub package: String,
    pub tag: String,
    /// The live package root.
    pub root: PathBuf,
    pub entrypoint: PathBuf,
    pub previous_version: Option<String>,
    pub new_version: Option<String>,
    /// npm/bun: where the previous package tree is.
    #[serde(default)]
    pub previous_tree: Option<PathBuf>,
    /// pnpm: the root symlink's target.
    #[serde(default)]
    pub root_link: Option<Change<PathBuf>>,
    /// The bin entrypoint, when the swap changed it.
    #[serde(default)]
    pub shim: Option<Change<Shim>>,
    /// pnpm: virtual-store directories the swap moved in.
    #[serde(default)]
    pub added: Vec<PathBuf>,
    /// pnpm: directories moved aside to make room.
    #[serde(default)]
    pub displaced: Vec<Displaced>,
    #[serde(default)]
    pub files: Vec<FileChange>,
}

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("swap refused, nothing was changed: {0}")]
    Preflight(String),
    #[error("swap failed at {step}: {source}; the previous install was restored")]
    Failed { step: String, source: io::Error },
    #[error(
        "swap failed at {step}: {source}; restoring the previous install ALSO failed: \
         {restore} (the backup record names every path)"
    )]
    RestoreFailed {
        step: String,
        source: io::Error,
        restore: String,
        backup: Box<Backup>,
    },
    #[error("rollback refused: {0}")]
    Diverged(String),
    #[error("rollback failed: {0}")]
    Rollback(String),
}

/// Makes the verified `stage` the live install. `backup_tag` (e.g. the run
/// id) names the backup; letters, digits, `.`, `_`, `-` only. `journal`
/// (in the state dir) records the plan before the first operation and is
/// cleared once the tree is whole again; see [`journal`].
pub fn swap(
    install: &Install,
    stage: &Path,
    backup_tag: &str,
    journal: &Path,
) -> Result<Backup, SwapError> {
    #[cfg(feature = "fault-injection")]
    let mut fault = faults::kill_before_op();
    #[cfg(not(feature = "fault-injection"))]
    let mut fault = |_: &str| Ok(());
    swap_with_faults(install, stage, backup_tag, journal, &mut fault)
}

/// [`swap`] with a hook called before each mutating step with the step's
/// name; an error from it fails that step. It is called once more after
/// the last step (`swapped`), where an error changes nothing. For tests
/// that prove every partial swap is undone.
#[doc(hidden)]
pub fn swap_with_faults(
    install: &Install,
    stage: &Path,
    backup_tag: &str,
    journal_path: &Path,
    fault: &mut dyn FnMut(&str) -> io::Result<()>,
) -> Result<Backup, SwapError> {
    if !valid_tag(backup_tag) {
        return Err(SwapError::Preflight(format!(
            "backup tag {backup_tag:?} must be 1-64 letters, digits, '.', '_' or '-'"
        )));
    }
    let Plan {
        ops,
        previous_version,
        new_version,
    } = match install.mode {
        InstallMode::Npm | InstallMode::Bun => plan_tree(install, stage, backup_tag)?,
        InstallMode::Pnpm => plan_pnpm(install, stage, backup_tag)?,
        other => {
            return Err(SwapError::Preflight(format!(
                "{other:?} installs are not swapped"
            )));
        }
    };
    let mut backup = Backup {
        mode: install.mode,
        package: install.package.clone(),
        tag: backup_tag.to_owned(),
        root: install.root.clone(),
        entrypoint: install.entrypoint.clone(),
        previous_version,
        new_version,
        previous_tree: None,
        root_link: None,
        shim: None,
        added: Vec::new(),
        displaced: Vec::new(),
        files: Vec::new(),
    };
    // Recorded as intended before anything live changes: a crash from
    // here on is finished or reversed at the next start.
    journal::write(
        journal_path,
        &journal::Journal::new(backup.clone(), ops.clone()),
    )?;
    for op in ops {
        if let Err((step, source)) = apply(op, &mut backup, fault) {
            tracing::warn!(%step, "swap failed: {source}; undoing");
            return match undo(&backup) {
                Ok(()) => {
                    sync_dirs(&backup);
                    journal::clear(journal_path);
                    Err(SwapError::Failed { step, source })
                }
                // The journal stays: the next start puts back what it can.
                Err(restore) => Err(SwapError::RestoreFailed {
                    step,
                    source,
                    restore: restore.to_string(),
                    backup: Box::new(backup),
                }),
            };
        }
    }
    sync_dirs(&backup);
    let _ = fault("swapped");
    journal::clear(journal_path);
    tracing::info!(
        package = %backup.package, from = ?backup.previous_version, to = ?backup.new_version,
        "install swapped"
    );
    Ok(backup)
}

/// Puts back the install `backup` recorded (after a successor failed to
/// start, or by hand). Refused when the live tree is neither the swapped
/// one nor already the previous one (someone installed something since).
/// Calling it again after it succeeded changes nothing.
pub fn rollback(install: &Install, backup: &Backup) -> Result<(), SwapError> {
    if install.root != backup.root || install.mode != backup.mode {
        return Err(SwapError::Diverged(format!(
            "the backup is of {} ({:?}), this install is {} ({:?})",
            backup.root.display(),
            backup.mode,
            install.root.display(),
            install.mode
        )));
    }
    check_rollback_state(backup)?;
    undo(backup).map_err(|e| SwapError::Rollback(e.to_string()))?;
    sync_dirs(backup);
    tracing::info!(
        package = %backup.package, to = ?backup.previous_version, "swap rolled back"
    );
    Ok(())
}

/// Retires a verified swap's backup: older backups of this install go,
/// this one (the previous version) stays for a manual rollback. Best
/// effort; failures are logged.
pub fn discard(backup: &Backup) {
    for path in retired_paths(backup) {
        match fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed an old install backup"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot remove an old backup: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
