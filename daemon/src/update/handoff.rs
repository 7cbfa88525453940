//! After an update is applied: write the sentinel, restart onto the new
//! version, and wait for the successor's proof. A successor that fails
//! (exits, never gets ready, reports another version) has the update
//! rolled back while this process keeps serving. Everything here that
//! touches a file runs on the blocking pool.

use std::sync::Arc;

use molt_protocol::event::{EventName, StepProgress, StepState, UpdateProgress};
use molt_protocol::method::{SentinelRef, UpdateRunResult};
use molt_protocol::status::SupervisorKind;
use molt_protocol::update::{
    ReasonCode, RunPhase, RunRecord, RunTrigger, Sentinel, SentinelPayload, SentinelStats,
    StepRecord, UpdateStatus,
};
use parking_lot::Mutex;

use super::context::RunContext;
use super::failure::{Ended, Failure, Rollback};
use super::lease::Lease;
use super::record::{self, Run};
use super::{Plan, Prepared, Undo, changelog, rescue, sentinel, undo_path, write_undo};
use crate::clock::unix_ms;
use crate::paths::StatePaths;
use crate::restart::engine::{HandoffExpectation, HandoffFailure, RestartRequest};
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
    ctx: &RunContext,
    mut run: Run,
    prepared: Prepared,
    lease: Lease,
    plan: &Plan,
    requester: Option<RequesterId>,
) -> UpdateRunResult {
    let paths = ctx.paths.clone();
    read_changelog(&mut run).await;
    let payload = sentinel_payload(&run);
    let written = {
        let (paths, undo) = (paths.clone(), prepared.undo.clone());
        let doc = Sentinel {
            version: Sentinel::FORMAT_VERSION,
            payload: payload.clone(),
        };
        blocking(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                sentinel::write(&paths.sentinel_path, &doc)?;
                Ok(write_undo(&undo_path(&paths), &undo)?)
            },
        )
        .await
    };
    if let Err(e) = written {
        let failure = Failure::SentinelFailed(e.to_string());
        return abandon(&paths, prepared.undo, run, failure).await;
    }
    // The kill switch blocks the restart an automatic update would cause,
    // also when it was set while the update ran.
    if run.record.trigger == RunTrigger::Auto
        && let Some(source) = (ctx.kill_switch)().source
    {
        return abandon(&paths, prepared.undo, run, Failure::KillSwitch(source)).await;
    }
    if restarts_moltd(ctx.supervisor) {
        arm_rescue(&paths, &run.record, &prepared.undo).await;
    }
    run.set_phase(RunPhase::Restarting).await;

    let version = run.record.after.version.clone().unwrap_or_default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Taken by whichever runs first: the rollback after a failed handoff,
    // or the abandonment of a refused restart.
    let undo = Arc::new(Mutex::new(Some(prepared.undo)));
    let on_failure = {
        let undo = Arc::clone(&undo);
        let ctx = ctx.clone();
        let record = run.record.clone();
        // The engine runs this on the blocking pool.
        move |handoff: &HandoffFailure| {
            if let Some(undo) = undo.lock().take() {
                let output = handoff.successor_output().cloned();
                roll_back(&ctx, record, &undo, Failure::from(handoff), output);
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
    let scheduled = match ctx.restart.request(request) {
        Ok(scheduled) => scheduled.to_wire(),
        Err(e) => {
            let failure = Failure::RestartRejected(e.to_string());
            let taken = undo.lock().take();
            return match taken {
                Some(undo) => abandon(&paths, undo, run, failure).await,
                // A handoff already ran the rollback and recorded it.
                None => {
                    let ended = Ended {
                        failure,
                        rollback: Rollback::Done,
                    };
                    run.end(ended).await
                }
            };
        }
    };
    ctx.events.send(EventName::RestartScheduled, &scheduled);
    let sentinel_ref = SentinelRef {
        path: paths.sentinel_path.display().to_string(),
        payload,
    };

    let wait = {
        let cancel = ctx.cancel.clone();
        let run_id = run.record.run_id.clone();
        async move {
            let outcome = tokio::select! {
                biased;
                outcome = done_rx => match outcome {
                    Ok(done) => done.map_err(NotHandedOff::Failed),
                    Err(_) => Err(NotHandedOff::Dropped),
                },
                // Stopped before the restart fired: the swap stands and the
                // sentinel has the next start verify it.
                () = cancel.cancelled() => Ok(None),
            };
            match &outcome {
                Ok(successor) => {
                    tracing::info!(%run_id, ?successor, "update handed off to the new version")
                }
                Err(reason) => tracing::warn!(%run_id, %reason, "update rolled back"),
            }
            // The successor finishes the run from the sentinel; the lease
            // must not outlive this process's part.
            if let Err(e) = blocking(move || lease.release()).await {
                tracing::warn!(%run_id, "releasing the update lease: {e}");
            }
            outcome
        }
    };
    let answer = |ok: bool, result, sentinel| UpdateRunResult {
        ok,
        run_id: run.record.run_id.clone(),
        result,
        restart: Some(scheduled.clone()),
        sentinel: Some(sentinel),
    };
    if !prepared.forced {
        tokio::spawn(wait);
        return answer(true, run.result(UpdateStatus::Ok, None), sentinel_ref);
    }
    match wait.await {
        Ok(_) => answer(true, run.result(UpdateStatus::Ok, None), sentinel_ref),
        Err(failed) => {
            let path = paths.sentinel_path.clone();
            let written = blocking(move || sentinel::read(&path)).await;
            let payload = written
                .ok()
                .flatten()
                .map_or(sentinel_ref.payload, |s| s.payload);
            let code = match &failed {
                NotHandedOff::Failed(handoff) => Failure::from(&**handoff).code(),
                NotHandedOff::Dropped => ReasonCode::RestartUnhealthy,
            };
            // Rolled back: the new version's changes are not in effect.
            run.record.changelog = None;
            let result = run.result(UpdateStatus::Error, Some(code.to_string()));
            let sentinel = SentinelRef {
                path: sentinel_ref.path,
                payload,
            };
            answer(false, result, sentinel)
        }
    }
}

/// The new tree is in place: what its changelog says changed since the
/// version that runs, for the record and the answer (never a reason to
/// stop: a missing or bad file reads as a result that says so).
async fn read_changelog(run: &mut Run) {
    let (Some(root), Some(to)) = (run.record.root.clone(), run.record.after.version.clone()) else {
        return;
    };
    let from = run.record.before.version.clone();
    let read = blocking(move || {
        Ok::<_, std::convert::Infallible>(changelog::read(
            std::path::Path::new(&root),
            from.as_deref(),
            &to,
        ))
    })
    .await;
    match read {
        Ok(log) => run.record.changelog = Some(log),
        Err(e) => tracing::warn!(run_id = %run.record.run_id, "reading the changelog: {e}"),
    }
}

/// What the restart leaves for the successor: an `ok` update to verify.
fn sentinel_payload(run: &Run) -> SentinelPayload {
    SentinelPayload {
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
    }
}

/// Why a handoff an update waited for did not happen.
#[derive(Debug, thiserror::Error)]
enum NotHandedOff {
    #[error("{0}")]
    Failed(Arc<HandoffFailure>),
    /// The restart engine dropped the request unanswered.
    #[error("the restart was dropped")]
    Dropped,
}

/// Blocking file work that failed, or did not finish.
#[derive(Debug, thiserror::Error)]
enum Blocked<E> {
    #[error("{0}")]
    Failed(E),
    #[error("did not finish: {0}")]
    Panicked(tokio::task::JoinError),
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Blocked<E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done.map_err(Blocked::Failed),
        Err(e) => Err(Blocked::Panicked(e)),
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
async fn arm_rescue(paths: &StatePaths, record: &RunRecord, undo: &Undo) {
    let (Some(previous), Some(new)) = (record.before.version.clone(), record.after.version.clone())
    else {
        return;
    };
    let (paths, run_id, undo) = (paths.clone(), record.run_id.clone(), undo.clone());
    let armed =
        blocking(move || rescue::arm(&paths, &run_id, &previous, &new, &undo, unix_ms())).await;
    if let Err(e) = armed {
        tracing::warn!(run_id = %record.run_id, "cannot arm the crash-loop rescue: {e}");
    }
}

/// Ends a run whose update is applied but must not restart: the previous
/// version goes back, and neither the undo record nor the sentinel is left
/// for a later restart to act on.
async fn abandon(
    paths: &StatePaths,
    undo: Undo,
    mut run: Run,
    failure: Failure,
) -> UpdateRunResult {
    let paths = paths.clone();
    let restored = blocking(move || {
        let restored = undo.roll_back();
        let _ = std::fs::remove_file(undo_path(&paths));
        let _ = std::fs::remove_file(&paths.sentinel_path);
        rescue::disarm(&paths);
        restored
    })
    .await;
    run.end(Ended::after_change(failure, restored)).await
}

/// Puts the previous version back after the new one failed to take over
/// (`failure` says how), and says so in the sentinel and the run, with
/// the successor's start as the run's last step when its output was kept.
/// Blocking: the restart engine calls it on the blocking pool.
fn roll_back(
    ctx: &RunContext,
    mut record: RunRecord,
    undo: &Undo,
    failure: Failure,
    successor: Option<StepRecord>,
) {
    let paths = &ctx.paths;
    let restored = undo.roll_back();
    if let Err(e) = &restored {
        tracing::error!("rolling the update back failed: {e}");
    }
    let _ = std::fs::remove_file(undo_path(paths));
    rescue::disarm(paths);
    let code = failure.code();
    let ended = Ended::after_change(failure, restored);
    match sentinel::read(&paths.sentinel_path) {
        Ok(Some(mut doc)) => {
            doc.payload.status = UpdateStatus::Error;
            doc.payload.stats.reason = Some(code.to_string());
            doc.payload.rolled_back = ended.rollback == Rollback::Done;
            doc.payload.doctor_hint = Some(format!(
                "the new version did not take over: {}",
                ended.reason()
            ));
            doc.payload.ts = unix_ms();
            doc.payload.stats.steps.extend(successor.clone());
            if let Err(e) = sentinel::write(&paths.sentinel_path, &doc) {
                tracing::error!("cannot record the rollback in the sentinel: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("cannot record the rollback in the sentinel: {e}"),
    }
    record.reason = Some(ended.reason());
    record.changelog = None;
    record.steps.extend(successor.clone());
    record::advance(&mut record, ended.phase().0);
    if let Err(e) = ctx.runs.record(&record) {
        tracing::error!("cannot record the rollback: {e}");
    }
    ctx.events.send(
        EventName::UpdateProgress,
        UpdateProgress {
            run_id: record.run_id.clone(),
            phase: record.phase,
            step: successor.map(|step| StepProgress {
                name: step.name,
                state: StepState::Failed,
                duration_ms: Some(step.duration_ms),
                exit_code: step.exit_code,
            }),
        },
    );
}

#[cfg(test)]
mod tests;
