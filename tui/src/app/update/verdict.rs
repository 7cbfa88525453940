//! The verdict on a run, from what the gateway claims and what its live
//! process reports (see [`crate::peer::verdict`]).

use std::time::Instant;

use super::run::{RunStage, RunView};
use crate::peer::{self, Claim, Live, UpdateApi, UpdateReport, Verdict};

impl From<Verdict> for RunStage {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Verified { version, pid } => RunStage::Verified { version, pid },
            Verdict::Mismatch { claimed, running } => RunStage::Mismatch { claimed, running },
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

/// Applies an `update.status` answer to `run`: step output, target,
/// phase, and the verdict once there is one.
pub(super) fn judge(
    run: &mut RunView,
    api: UpdateApi,
    report: &UpdateReport,
    live: &Live,
    now: Instant,
) {
    if let Some(record) = report.record_for(run.run_id.as_ref()) {
        absorb(run, record, now);
    }
    if let Some(verdict) = peer::verdict(
        api,
        run.run_id.as_ref(),
        run.target.as_deref(),
        report,
        live,
        run.restarted,
    ) {
        run.stage = verdict.into();
    }
}

/// Applies one run record (`update.runs.get`) to `run`.
pub(super) fn judge_record(
    run: &mut RunView,
    api: UpdateApi,
    record: Claim,
    live: &Live,
    now: Instant,
) {
    let report = UpdateReport {
        run: Some(record),
        ..UpdateReport::default()
    };
    judge(run, api, &report, live, now);
}

fn absorb(run: &mut RunView, record: &Claim, now: Instant) {
    run.record_steps(&record.steps, now);
    if run.target.is_none() {
        run.target = record.target_version().map(str::to_owned);
    }
    if record.phase.is_some() {
        run.phase = record.phase.clone();
    }
    if record.next_action.is_some() {
        run.advice = record.next_action.clone();
    }
    // A finished record is the last word: a rollback takes the entries away.
    if record.changelog.is_some() || record.is_done() {
        run.changelog = record.changelog.clone();
    }
    if record.phase.as_deref() == Some("restarting") && run.stage == RunStage::Running {
        run.stage = RunStage::Restarting;
    }
}
