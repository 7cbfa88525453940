//! The verdict on a run, read from `update.status`.

use std::time::Instant;

use molt_protocol::ids::RunId;
use molt_protocol::method::UpdateStatusResult;
use molt_protocol::update::{RunPhase, RunRecord, UpdateStatus};

use super::run::{RunStage, RunView};

/// What `update.status` says about a run once it says something final.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Verified { version: String, pid: u32 },
    Failed { reason: String, rolled_back: bool },
    Skipped { reason: String },
}

impl From<Verdict> for RunStage {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Verified { version, pid } => RunStage::Verified { version, pid },
            Verdict::Failed {
                reason,
                rolled_back,
            } => RunStage::Failed {
                reason,
                rolled_back,
            },
            Verdict::Skipped { reason } => RunStage::Skipped { reason },
        }
    }
}

/// The run record `update.status` holds for `run_id` (any when `None`).
pub fn record_for<'a>(
    run_id: Option<&RunId>,
    answer: &'a UpdateStatusResult,
) -> Option<&'a RunRecord> {
    answer
        .run
        .as_ref()
        .or(answer.last_run.as_ref())
        .filter(|r| run_id.is_none_or(|id| *id == r.run_id))
}

/// Reads the verdict on `run_id`: the sentinel's proof first, then the run
/// record. `None` while the run is still going. `target` is the version
/// the run installs, `pid` the answering process's.
pub fn verdict(
    run_id: Option<&RunId>,
    target: Option<&str>,
    answer: &UpdateStatusResult,
    pid: Option<u32>,
) -> Option<Verdict> {
    let same = |id: Option<&RunId>| run_id.is_none() || id == run_id;
    if let Some(sentinel) = answer.sentinel.as_ref().filter(|s| same(s.run_id.as_ref())) {
        if sentinel.rolled_back || sentinel.status == UpdateStatus::Error {
            return Some(Verdict::Failed {
                reason: sentinel
                    .stats
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the update failed".to_owned()),
                rolled_back: sentinel.rolled_back,
            });
        }
        if let Some(verified) = &sentinel.verified {
            let expected = target.or(sentinel.stats.after.version.as_deref());
            return Some(match (&verified.mismatch, expected) {
                (Some(mismatch), _) => Verdict::Failed {
                    reason: format!("verification failed: {mismatch}"),
                    rolled_back: false,
                },
                (None, Some(expected)) if expected != verified.running_version => Verdict::Failed {
                    reason: format!(
                        "running {} but the update installed {expected}",
                        verified.running_version
                    ),
                    rolled_back: false,
                },
                _ => Verdict::Verified {
                    version: verified.running_version.clone(),
                    pid: verified.pid,
                },
            });
        }
    }
    let record = record_for(run_id, answer)?;
    let reason = record.reason.clone().filter(|r| !r.is_empty());
    match record.phase {
        RunPhase::Verified => Some(Verdict::Verified {
            version: answer.running_version.clone(),
            pid: pid.unwrap_or(record.owner.pid),
        }),
        RunPhase::Failed | RunPhase::RolledBack => Some(Verdict::Failed {
            reason: reason.unwrap_or_else(|| "the update failed".to_owned()),
            rolled_back: record.phase == RunPhase::RolledBack,
        }),
        RunPhase::Skipped => Some(Verdict::Skipped {
            reason: reason.unwrap_or_else(|| "skipped".to_owned()),
        }),
        _ => None,
    }
}

/// Applies `update.status` to `run`: step output, target, and the verdict.
pub(super) fn judge(
    run: &mut RunView,
    answer: &UpdateStatusResult,
    pid: Option<u32>,
    now: Instant,
) {
    if let Some(record) = record_for(run.run_id.as_ref(), answer) {
        run.record_steps(&record.steps, now);
        if run.target.is_none() {
            run.target = record.target_version().map(str::to_owned);
        }
        if record.phase == RunPhase::Restarting && run.stage == RunStage::Running {
            run.stage = RunStage::Restarting;
        }
    }
    if let Some(verdict) = verdict(run.run_id.as_ref(), run.target.as_deref(), answer, pid) {
        run.stage = verdict.into();
    }
}
