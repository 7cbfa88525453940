//! A run as the console follows it, step by step.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use molt_protocol::changelog::Changelog;
use molt_protocol::event::StepProgress;
use molt_protocol::ids::RunId;
use molt_protocol::method::UpdateCheckResult;

use super::dialog::{Dialog, Preview};
use crate::peer::{Live, RestartPlan, Step, UpdateReport};

/// Where a run is, as the console knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStage {
    /// `update.run` sent, nothing heard yet.
    Starting,
    Running,
    /// Steps done; the gateway restarts into the new version.
    Restarting,
    /// The old process closed; waiting for its successor.
    Reconnecting,
    /// Connected again; asking the gateway for the verdict.
    Verifying,
    /// The live process runs the version the update installed.
    Verified {
        version: String,
        pid: Option<u32>,
    },
    /// The install claims one version, the live process reports another.
    Mismatch {
        claimed: String,
        running: String,
    },
    Failed {
        reason: String,
        rolled_back: bool,
    },
    Skipped {
        reason: String,
    },
}

impl RunStage {
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            Self::Verified { .. }
                | Self::Mismatch { .. }
                | Self::Failed { .. }
                | Self::Skipped { .. }
        )
    }
}

/// One step as it happens; `record` holds its output once the run reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepView {
    pub name: String,
    pub started_at: Instant,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub record: Option<Step>,
}

impl StepView {
    pub fn finished(&self) -> bool {
        match &self.record {
            Some(record) => record.finished(),
            None => self.duration_ms.is_some(),
        }
    }

    pub fn failed(&self) -> bool {
        match &self.record {
            Some(record) => record.failed,
            // Only the progress event so far.
            None => self.exit_code.is_some_and(|c| c != 0),
        }
    }
}

/// A run this console started or watches.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    pub run_id: Option<RunId>,
    pub stage: RunStage,
    /// False for a run someone else started (auto-update, another console).
    pub ours: bool,
    pub from_pid: Option<u32>,
    pub from_version: Option<String>,
    /// The process before the run, for the comparison after it.
    pub from_live: Option<Live>,
    pub target: Option<String>,
    pub note: Option<String>,
    pub steps: Vec<StepView>,
    pub restart: Option<RestartPlan>,
    pub started_at: Instant,
    /// A problem worth showing that did not end the run (a timeout).
    pub warning: Option<String>,
    /// OpenClaw 2026.9.x: the run's phase as its updater reports it.
    pub phase: Option<String>,
    /// What the gateway advises the operator to do (OpenClaw).
    pub advice: Option<String>,
    /// The console reconnected during the run: the process answering now
    /// is not the one that started it.
    pub restarted: bool,
    /// moltd: what the new version's changelog says changed since the
    /// version before (from the answer or the run record).
    pub changelog: Option<Changelog>,
}

impl RunView {
    pub fn new(now: Instant, ours: bool, from: Option<Live>) -> RunView {
        RunView {
            run_id: None,
            stage: RunStage::Starting,
            ours,
            from_pid: from.as_ref().and_then(|l| l.pid),
            from_version: from.as_ref().and_then(|l| l.version().map(str::to_owned)),
            from_live: from,
            target: None,
            note: None,
            steps: Vec::new(),
            restart: None,
            started_at: now,
            warning: None,
            phase: None,
            advice: None,
            restarted: false,
            changelog: None,
        }
    }

    /// Merges reported steps into the view. A step is the same step when
    /// its name and its place among steps of that name match, so the same
    /// report read again (after a reload, after a reconnect, on every poll)
    /// updates the steps shown instead of listing them again.
    pub(super) fn record_steps(&mut self, records: &[Step], now: Instant) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for record in records {
            let nth = seen.entry(record.name.as_str()).or_default();
            let existing = self
                .steps
                .iter_mut()
                .filter(|s| s.name == record.name)
                .nth(*nth);
            *nth += 1;
            match existing {
                Some(step) => {
                    step.duration_ms = record.duration_ms.or(step.duration_ms);
                    step.exit_code = record.exit_code.or(step.exit_code);
                    step.record = Some(record.clone());
                }
                None => self.steps.push(StepView {
                    name: record.name.clone(),
                    started_at: now,
                    duration_ms: record.duration_ms,
                    exit_code: record.exit_code,
                    record: Some(record.clone()),
                }),
            }
        }
    }

    pub(super) fn on_step(&mut self, step: StepProgress, now: Instant) {
        let running = self
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.name == step.name && !s.finished());
        match (step.state.as_str(), running) {
            ("started", _) => self.steps.push(StepView {
                name: step.name,
                started_at: now,
                duration_ms: None,
                exit_code: None,
                record: None,
            }),
            (_, Some(view)) => {
                view.duration_ms = Some(
                    step.duration_ms
                        .unwrap_or_else(|| millis(now.saturating_duration_since(view.started_at))),
                );
                view.exit_code = step.exit_code;
            }
            (_, None) => self.steps.push(StepView {
                name: step.name,
                started_at: now,
                duration_ms: Some(step.duration_ms.unwrap_or(0)),
                exit_code: step.exit_code,
                record: None,
            }),
        }
    }

    /// The first failing step, for the head and tail of its output.
    pub fn failing_step(&self) -> Option<&StepView> {
        self.steps.iter().find(|s| s.failed())
    }

    /// A failure reason with the line of the failing step's output that
    /// names the problem, when the gateway's reason does not.
    pub fn explain(&self, reason: String) -> String {
        let steps: Vec<Step> = self.steps.iter().filter_map(|s| s.record.clone()).collect();
        crate::peer::explain_failure(&reason, &steps)
    }
}

/// Everything the Update screen shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateView {
    pub dialog: Option<Dialog>,
    pub run: Option<RunView>,
    /// The latest `update.status` answer.
    pub status: Option<UpdateReport>,
    /// OpenClaw 2026.9.x: the latest record of the run followed.
    pub record: Option<crate::peer::Claim>,
    pub status_error: Option<String>,
    /// The latest `update.check` answer, or why it failed.
    pub check: Option<Result<UpdateCheckResult, String>>,
    pub(super) status_in_flight: bool,
    /// Asked again while one was in flight: its answer may predate the run.
    pub(super) status_wanted: bool,
    pub(super) run_get_in_flight: bool,
}

impl UpdateView {
    /// Something is in progress: spinners turn, the verdict is polled.
    pub fn busy(&self) -> bool {
        matches!(
            &self.dialog,
            Some(Dialog {
                preview: Preview::Resolving,
                ..
            })
        ) || self.run.as_ref().is_some_and(|r| !r.stage.is_done())
    }

    pub(super) fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.stage.is_done())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
