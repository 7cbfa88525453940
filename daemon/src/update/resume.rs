//! At start, once serving: finish what a predecessor started. The sentinel
//! is checked against the version this process runs (never the disk), the
//! run it names ends, runs whose owner died are resolved, and stages an
//! interrupted update left behind are removed.

use std::path::Path;

use molt_protocol::status::InstallInfo;
use molt_protocol::update::{RunPhase, RunRecord, UpdateStatus};

use super::failure::Failure;
use super::lease::{self, Lease};
use super::owner::{current_owner, process_owner};
use super::runs::{RunStore, new_run_id};
use super::sentinel;
use super::{read_undo, stage, undo_path};
use crate::clock::unix_ms;
use crate::identity::Identity;
use crate::install::layout;
use crate::paths::StatePaths;

/// Verifies the sentinel and resolves open runs. Problems are logged, never
/// fatal: the gateway serves either way. Blocking.
pub fn resume(store: &RunStore, paths: &StatePaths, install: &InstallInfo, id: &Identity) {
    verify_sentinel(store, paths, id);
    resolve_orphans(store, id);
    remove_leftover_stages(install);
}

fn verify_sentinel(store: &RunStore, paths: &StatePaths, id: &Identity) {
    let now = unix_ms();
    let Some(mut doc) = sentinel::read_or_quarantine(&paths.sentinel_path) else {
        return;
    };
    let payload = &mut doc.payload;
    if payload.kind != "update" || payload.verified.is_some() {
        return;
    }
    if sentinel::is_stale(payload, now, None) {
        tracing::info!(run_id = ?payload.run_id, "the update sentinel is older than a day; not applied");
        return;
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
        && let Some(run) = store.get(run_id)
        && !run.phase.is_terminal()
    {
        // A mismatch has turned an `ok` sentinel into an error.
        let (phase, reason) = if ok {
            (RunPhase::Verified, None)
        } else {
            (RunPhase::Failed, doc.payload.stats.reason.clone())
        };
        finish(store, run, phase, reason);
    }
    if ok {
        // The new version serves: what only served a rollback goes (the
        // previous package tree stays for a manual one).
        match read_undo(&undo_path(paths)) {
            Ok(Some(undo)) => undo.retire(),
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read the update backup record: {e}"),
        }
        let _ = std::fs::remove_file(undo_path(paths));
    }
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
/// install's lease (so never one a live update is writing).
fn remove_leftover_stages(install: &InstallInfo) {
    if !install.surface.is_package_manager() {
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
