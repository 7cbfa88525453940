//! After an update is applied: write the sentinel, restart onto the new
//! version, and wait for the successor's proof. A successor that fails
//! (exits, never gets ready, reports another version) has the update
//! rolled back while this process keeps serving.

use std::sync::{Arc, Mutex};

use molt_protocol::event::{EventName, UpdateProgress};
use molt_protocol::method::{SentinelRef, UpdateRunResult};
use molt_protocol::status::{EnvSource, SupervisorKind};
use molt_protocol::update::{
    RunPhase, RunRecord, RunTrigger, Sentinel, SentinelPayload, SentinelStats, UpdateStatus,
};

use super::flow::{Plan, Prepared};
use super::lease::Lease;
use super::record::{Ended, Run};
use super::{Undo, rescue, sentinel, undo_path, write_undo};
use crate::gateway::{Gateway, unix_ms};
use crate::paths::StatePaths;
use crate::restart::engine::{HandoffExpectation, RestartRequest};
use crate::restart::scheduler::RequesterId;

/// The reason a run's restart reports.
pub fn restart_reason(trigger: RunTrigger) -> &'static str {
    match trigger {
        RunTrigger::Auto => "update.auto",
        RunTrigger::Manual => "update.run",
    }
}

/// Sentinel, restart, proof. Package swaps restart at once and this waits
/// for the outcome; git builds honour the delay and deferral, so the
/// answer comes when the restart is scheduled and the outcome lands in the
/// run record and the sentinel.
pub async fn restart(
    gw: &Gateway,
    mut run: Run,
    prepared: Prepared,
    lease: Lease,
    plan: &Plan,
    requester: Option<RequesterId>,
) -> UpdateRunResult {
    let paths = gw.paths().clone();
    let payload = SentinelPayload {
        kind: "update".to_owned(),
        status: UpdateStatus::Ok,
        ts: unix_ms(),
        run_id: Some(run.record.run_id.clone()),
        message: run.record.note.clone(),
        doctor_hint: None,
        stats: SentinelStats {
            mode: run.record.mode,
            root: run.record.root.clone(),
            before: run.record.before.clone(),
            after: run.record.after.clone(),
            steps: run.record.steps.clone(),
            reason: None,
            duration_ms: run.elapsed_ms(),
        },
        verified: None,
        rolled_back: false,
    };
    let doc = Sentinel {
        version: Sentinel::FORMAT_VERSION,
        payload: payload.clone(),
    };
    let written = sentinel::write(&paths.sentinel_path, &doc)
        .map_err(|e| e.to_string())
        .and_then(|()| write_undo(&undo_path(&paths), &prepared.undo).map_err(|e| e.to_string()));
    if let Err(e) = written {
        return abandon(
            &paths,
            &prepared.undo,
            run,
            Ended::RolledBack,
            &format!("sentinel-failed: {e}"),
        );
    }
    // The kill switch blocks the restart an automatic update would cause,
    // also when it was set while the update ran.
    if run.record.trigger == RunTrigger::Auto
        && let Some(source) = gw.kill_switch().source
    {
        let from = match source {
            EnvSource::ProcessEnv => "process env",
            EnvSource::EnvFile => ".env",
        };
        let reason = format!(
            "kill-switch: OPENCLAW_NO_AUTO_UPDATE was set ({from}) while the update ran; rolled back"
        );
        return abandon(&paths, &prepared.undo, run, Ended::Skipped, &reason);
    }
    if restarts_moltd(gw.supervisor_info().kind) {
        arm_rescue(gw, &run.record, &prepared.undo).await;
    }
    run.set_phase(RunPhase::Restarting);

    let version = run.record.after.version.clone().unwrap_or_default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Taken by whichever runs first: the rollback after a failed handoff,
    // or the abandonment of a refused restart.
    let undo = Arc::new(Mutex::new(Some(prepared.undo)));
    let on_failure = {
        let undo = Arc::clone(&undo);
        let gw = gw.clone();
        let record = run.record.clone();
        move |reason: String| {
            if let Some(undo) = take(&undo) {
                roll_back(&gw, record, &undo, &reason);
            }
        }
    };
    let expectation = HandoffExpectation {
        version,
        on_failure: Box::new(on_failure),
        done: done_tx,
    };
    let reason = restart_reason(run.record.trigger).to_owned();
    let request = if prepared.forced {
        // The old process must not outlive its tree.
        RestartRequest {
            reason,
            delay_ms: Some(0),
            skip_deferral: true,
            skip_cooldown: true,
            expectation: Some(expectation),
            ..RestartRequest::default()
        }
    } else {
        RestartRequest {
            reason,
            delay_ms: plan.restart_delay_ms,
            requester,
            expectation: Some(expectation),
            ..RestartRequest::default()
        }
    };
    let scheduled = match gw.restart().request(request) {
        Ok(scheduled) => scheduled.to_wire(),
        Err(e) => {
            let reason = format!("restart-rejected: {e}");
            return match take(&undo) {
                Some(undo) => abandon(&paths, &undo, run, Ended::RolledBack, &reason),
                // A handoff already ran the rollback and recorded it.
                None => run.end(Ended::RolledBack, &reason),
            };
        }
    };
    gw.broadcast(EventName::RestartScheduled, &scheduled);
    let sentinel_ref = SentinelRef {
        path: paths.sentinel_path.display().to_string(),
        payload,
    };

    let wait = {
        let gw = gw.clone();
        let run_id = run.record.run_id.clone();
        async move {
            let outcome = tokio::select! {
                biased;
                outcome = done_rx => outcome.unwrap_or_else(|_| Err("the restart was dropped".to_owned())),
                // Stopped before the restart fired: the swap stands and the
                // sentinel has the next start verify it.
                () = gw.stopping().cancelled() => Ok(None),
            };
            match &outcome {
                Ok(successor) => {
                    tracing::info!(%run_id, ?successor, "update handed off to the new version")
                }
                Err(reason) => tracing::warn!(%run_id, %reason, "update rolled back"),
            }
            // The successor finishes the run from the sentinel; the lease
            // must not outlive this process's part.
            if let Err(e) = lease.release() {
                tracing::warn!(%run_id, "releasing the update lease: {e}");
            }
            outcome
        }
    };
    if !prepared.forced {
        tokio::spawn(wait);
        return UpdateRunResult {
            ok: true,
            run_id: run.record.run_id.clone(),
            result: run.result(UpdateStatus::Ok, None),
            restart: Some(scheduled),
            sentinel: Some(sentinel_ref),
        };
    }
    match wait.await {
        Ok(_) => UpdateRunResult {
            ok: true,
            run_id: run.record.run_id.clone(),
            result: run.result(UpdateStatus::Ok, None),
            restart: Some(scheduled),
            sentinel: Some(sentinel_ref),
        },
        Err(_) => {
            let payload = sentinel::read(&paths.sentinel_path)
                .ok()
                .flatten()
                .map_or(sentinel_ref.payload, |s| s.payload);
            UpdateRunResult {
                ok: false,
                run_id: run.record.run_id.clone(),
                result: run.result(
                    UpdateStatus::Error,
                    Some(sentinel::REASON_RESTART_UNHEALTHY),
                ),
                restart: Some(scheduled),
                sentinel: Some(SentinelRef {
                    path: sentinel_ref.path,
                    payload,
                }),
            }
        }
    }
}

/// A supervisor that starts moltd again after it exits: a version that
/// verified and then keeps dying would be restarted into forever, so the
/// previous version stands by to roll it back.
fn restarts_moltd(kind: SupervisorKind) -> bool {
    matches!(
        kind,
        SupervisorKind::Systemd | SupervisorKind::Launchd | SupervisorKind::Custom
    )
}

/// Leaves this version's binary and the undo record where the supervisor's
/// rescue step finds them. A failure costs only that safety net, so the
/// update goes on (and says so in the log).
async fn arm_rescue(gw: &Gateway, record: &RunRecord, undo: &Undo) {
    let (Some(previous), Some(new)) = (record.before.version.clone(), record.after.version.clone())
    else {
        return;
    };
    let paths = gw.paths().clone();
    let run_id = record.run_id.clone();
    let undo = undo.clone();
    let armed = tokio::task::spawn_blocking(move || {
        rescue::arm(&paths, &run_id, &previous, &new, &undo, unix_ms())
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    if let Err(e) = armed {
        tracing::warn!(run_id = %record.run_id, "cannot arm the crash-loop rescue: {e}");
    }
}

/// Ends a run whose update is applied but must not restart: the previous
/// version goes back, and neither the undo record nor the sentinel is left
/// for a later restart to act on.
fn abandon(
    paths: &StatePaths,
    undo: &Undo,
    mut run: Run,
    ended: Ended,
    reason: &str,
) -> UpdateRunResult {
    let restored = undo.roll_back();
    let _ = std::fs::remove_file(undo_path(paths));
    let _ = std::fs::remove_file(&paths.sentinel_path);
    rescue::disarm(paths);
    match restored {
        Ok(()) => run.end(ended, reason),
        Err(e) => run.end(
            Ended::Failed,
            &format!("{reason}; rolling back failed: {e}"),
        ),
    }
}

fn take(undo: &Mutex<Option<Undo>>) -> Option<Undo> {
    undo.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Puts the previous version back after the new one failed to take over,
/// and says so in the sentinel and the run.
fn roll_back(gw: &Gateway, mut record: RunRecord, undo: &Undo, reason: &str) {
    let paths = gw.paths();
    let restored = undo.roll_back();
    if let Err(e) = &restored {
        tracing::error!("rolling the update back failed: {e}");
    }
    let _ = std::fs::remove_file(undo_path(paths));
    rescue::disarm(paths);
    match sentinel::read(&paths.sentinel_path) {
        Ok(Some(mut doc)) => {
            doc.payload.status = UpdateStatus::Error;
            doc.payload.stats.reason = Some(sentinel::REASON_RESTART_UNHEALTHY.to_owned());
            doc.payload.rolled_back = restored.is_ok();
            doc.payload.doctor_hint = Some(format!("the new version did not take over: {reason}"));
            doc.payload.ts = unix_ms();
            if let Err(e) = sentinel::write(&paths.sentinel_path, &doc) {
                tracing::error!("cannot record the rollback in the sentinel: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("cannot record the rollback in the sentinel: {e}"),
    }
    record.reason = Some(format!("{}: {reason}", sentinel::REASON_RESTART_UNHEALTHY));
    let phase = if restored.is_ok() {
        RunPhase::RolledBack
    } else {
        RunPhase::Failed
    };
    super::record::advance(&mut record, phase);
    if let Err(e) = gw.runs().record(&record) {
        tracing::error!("cannot record the rollback: {e}");
    }
    gw.broadcast(
        EventName::UpdateProgress,
        UpdateProgress {
            run_id: record.run_id.clone(),
            phase: record.phase,
            step: None,
        },
    );
}
