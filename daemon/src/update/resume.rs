//! At start, once serving: finish what a predecessor started. A swap a
//! crash interrupted is finished or reversed (`swap/journal.rs`), the
//! sentinel is checked against the version this process runs (never the
//! disk), the run it names ends, and runs whose owner died are resolved:
//! small files and renames, done before the gateway takes requests. What
//! only frees disk (stages an interrupted update left, retired install
//! trees) can take long on a big tree, so it is handed back as a
//! [`Cleanup`] the gateway runs once it serves.

use std::path::{Path, PathBuf};

use molt_protocol::status::InstallInfo;
use molt_protocol::update::{ReasonCode, RunPhase, RunRecord, SentinelPayload, UpdateStatus};

use super::failure::Failure;
use super::lease::{self, Lease};
use super::owner::{current_owner, process_owner};
use super::runs::{RunStore, new_run_id};
use super::sentinel;
use super::swap::{self, Recovered};
use super::{Undo, changelog, journal_path, read_undo, stage, undo_path};
use crate::clock::unix_ms;
use crate::identity::Identity;
use crate::install::layout;
use crate::paths::StatePaths;

/// Finishes an interrupted swap, verifies the sentinel and resolves open
/// runs; returns the clean-up for later. Problems are logged, never fatal:
/// the gateway serves either way. Blocking.
pub fn resume(
    store: &RunStore,
    paths: &StatePaths,
    install: &InstallInfo,
    id: &Identity,
) -> Cleanup {
    finish_interrupted_swap(paths, id);
    let retire = verify_sentinel(store, paths, install, id);
    resolve_orphans(store, id);
    Cleanup {
        retire,
        install: install.clone(),
        journal: journal_path(paths),
    }
}

/// Start-up work that only frees disk, for once the gateway serves.
#[derive(Debug)]
pub struct Cleanup {
    /// A verified update's undo record: its older backups go.
    retire: Option<Undo>,
    install: InstallInfo,
    journal: PathBuf,
}

impl Cleanup {
    /// Removes leftover stages and retired trees. Blocking.
    pub fn run(self) {
        if let Some(undo) = self.retire {
            undo.retire();
        }
        remove_leftover_stages(&self.install, &self.journal);
    }
}

/// A swap that a crash interrupted (its journal is still there) is
/// finished or reversed by the version this process runs, under the
/// install's lease. A failure leaves tree and journal for a person.
fn finish_interrupted_swap(paths: &StatePaths, id: &Identity) {
    let path = journal_path(paths);
    let journal = match swap::read_journal(&path) {
        Ok(Some(journal)) => journal,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("cannot read the swap journal, the install is left as it is: {e}");
            return;
        }
    };
    let lease = match Lease::acquire(
        &lease::lease_path(journal.root()),
        new_run_id(),
        current_owner(),
    ) {
        Ok(lease) => lease,
        Err(e) => {
            tracing::warn!("an interrupted swap waits for the install's lease: {e}");
            return;
        }
    };
    let (from, to) = journal.versions();
    match swap::recover(&journal, &id.version) {
        Ok(Recovered::Completed(_)) => {
            tracing::warn!(
                run = journal.tag(),
                ?from,
                ?to,
                "finished a swap interrupted by a crash"
            );
            swap::clear_after_recovery(&path);
        }
        Ok(Recovered::Reversed) => {
            tracing::warn!(
                run = journal.tag(),
                ?from,
                ?to,
                "reversed a swap interrupted by a crash"
            );
            swap::clear_after_recovery(&path);
        }
        Err(e) => tracing::error!(
            journal = %path.display(),
            "a swap interrupted by a crash needs a person: {e}; the journal names every path"
        ),
    }
    if let Err(e) = lease.release() {
        tracing::warn!("releasing the update lease: {e}");
    }
}

/// Verifies the sentinel; the undo record of a verified update, to retire.
fn verify_sentinel(
    store: &RunStore,
    paths: &StatePaths,
    install: &InstallInfo,
    id: &Identity,
) -> Option<Undo> {
    let now = unix_ms();
    let mut doc = sentinel::read_or_quarantine(&paths.sentinel_path)?;
    let payload = &mut doc.payload;
    if payload.kind != "update" || payload.verified.is_some() {
        return None;
    }
    if sentinel::is_stale(payload, now, None) {
        tracing::info!(run_id = ?payload.run_id, "the update sentinel is older than a day; not applied");
        return None;
    }
    let outcome = sentinel::verify(payload, &id.version, id.pid, now);
    let ok = payload.status == UpdateStatus::Ok;
    match sentinel::write(&paths.sentinel_path, &doc) {
        Ok(()) => tracing::info!(
            run_id = ?doc.payload.run_id, running = %id.version, ?outcome,
            "update sentinel verified against the running version"
        ),
        Err(e) => tracing::error!("cannot record the sentinel verification: {e}"),
    }
    if let Some(run_id) = &doc.payload.run_id
        && let Some(mut run) = store.get(run_id)
    {
        if !run.phase.is_terminal() {
            // A mismatch has turned an `ok` sentinel into an error.
            let (phase, reason) = if ok {
                // A predecessor that reads no changelog left it to this
                // version, which runs from the new tree.
                if run.changelog.is_none()
                    && let Some(root) = &install.root
                {
                    let from = run.before.version.as_deref();
                    run.changelog = Some(changelog::read(Path::new(root), from, &id.version));
                }
                (RunPhase::Verified, None)
            } else {
                run.changelog = None;
                (RunPhase::Failed, doc.payload.stats.reason.clone())
            };
            finish(store, run, phase, reason);
        } else if rescued(&doc.payload) {
            // The rescue step ended it, in a process that serves no
            // metrics: counted here, once (the sentinel is verified now).
            crate::metrics::metrics().update_run_ended(run.trigger.as_str(), run.phase.as_str());
        }
    }
    if !ok {
        return None;
    }
    // The new version serves: what only served a rollback goes (the
    // previous package tree stays for a manual one), once serving.
    let undo = match read_undo(&undo_path(paths)) {
        Ok(undo) => undo,
        Err(e) => {
            tracing::warn!("cannot read the update backup record: {e}");
            None
        }
    };
    let _ = std::fs::remove_file(undo_path(paths));
    undo
}

/// Whether the sentinel is the rescue step's: a crash loop rolled back.
fn rescued(payload: &SentinelPayload) -> bool {
    payload.rolled_back && payload.stats.reason.as_deref() == Some(ReasonCode::CrashLoop.as_str())
}

/// Runs left open by a process that is gone: verified if their goal
/// version is what runs now, failed otherwise.
fn resolve_orphans(store: &RunStore, id: &Identity) {
    for run in store.non_terminal() {
        // Nothing of this process runs yet; an exec'd predecessor shares
        // its pid, so only another live process counts as an owner.
        let alive =
            run.owner.pid != id.pid && process_owner(run.owner.pid).as_ref() == Some(&run.owner);
        if alive {
            continue;
        }
        let (phase, reason) = if run.target.version.as_deref() == Some(id.version.as_str()) {
            (
                RunPhase::Verified,
                "resolved at start: the target version runs".to_owned(),
            )
        } else {
            (RunPhase::Failed, Failure::OwnerDied.to_string())
        };
        tracing::warn!(run_id = %run.run_id, ?phase, "{reason}");
        finish(store, run, phase, Some(reason));
    }
}

/// Stages of an update that was killed mid-install, removed under the
/// install's lease (so never one a live update is writing), and never
/// while a swap journal is unresolved (a stage may hold the previous tree).
fn remove_leftover_stages(install: &InstallInfo, journal: &Path) {
    if !install.surface.is_package_manager() {
        return;
    }
    if journal.exists() {
        tracing::warn!(journal = %journal.display(), "leftover stages stay: an interrupted swap is unresolved");
        return;
    }
    let (Some(root), Some(entrypoint)) = (&install.root, &install.entrypoint) else {
        return;
    };
    let Ok(located) = layout::locate(Path::new(entrypoint)) else {
        return;
    };
    let leftovers = stage::leftover_stages(&located);
    if leftovers.is_empty() {
        return;
    }
    let lease_path = lease::lease_path(Path::new(root));
    match Lease::acquire(&lease_path, new_run_id(), current_owner()) {
        Ok(lease) => {
            for leftover in leftovers {
                tracing::info!(stage = %leftover.display(), "removing a stage left by an interrupted update");
                stage::cleanup_stage(&leftover);
            }
            if let Err(e) = lease.release() {
                tracing::warn!("releasing the update lease: {e}");
            }
        }
        Err(e) => tracing::info!("leftover update stages stay for now: {e}"),
    }
}

fn finish(store: &RunStore, mut run: RunRecord, phase: RunPhase, reason: Option<String>) {
    if reason.is_some() {
        run.reason = reason;
    }
    super::record::advance(&mut run, phase);
    if let Err(e) = store.record(&run) {
        tracing::error!(run_id = %run.run_id, "cannot record the run's end: {e}");
    }
}

#[cfg(test)]
mod tests;
