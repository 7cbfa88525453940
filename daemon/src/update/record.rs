//! One update run while it is in progress: its durable record, its steps
//! and the `update.progress` events clients follow.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use molt_protocol::event::{EventName, StepProgress, UpdateProgress};
use molt_protocol::method::UpdateRunResult;
use molt_protocol::update::{RunPhase, RunRecord, StepRecord, UpdateResult, UpdateStatus};

use super::runs::RunStore;
use super::steps::{StepSpec, internal_step, run_step_with_stdout};
use crate::gateway::{Gateway, unix_ms};

/// Stdout kept whole for parsing (package metadata, git output).
const MAX_PARSED_STDOUT: usize = 8 * 1024 * 1024;

pub struct Run {
    pub record: RunRecord,
    started: Instant,
    store: RunStore,
    gw: Gateway,
    /// Per-step bound from `timeoutMs`.
    pub timeout: Duration,
    /// A dry run changes nothing: no record, no events.
    dry_run: bool,
}

impl Run {
    pub fn new(gw: &Gateway, record: RunRecord, timeout: Duration, dry_run: bool) -> Run {
        Run {
            record,
            started: Instant::now(),
            store: gw.runs().clone(),
            gw: gw.clone(),
            timeout,
            dry_run,
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn set_phase(&mut self, phase: RunPhase) {
        advance(&mut self.record, phase);
        self.save();
        self.progress(None);
    }

    fn save(&self) {
        if self.dry_run {
            return;
        }
        if let Err(e) = self.store.record(&self.record) {
            tracing::error!(run_id = %self.record.run_id, "cannot record the update run: {e}");
        }
    }

    fn progress(&self, step: Option<StepProgress>) {
        if self.dry_run {
            return;
        }
        self.gw.broadcast(
            EventName::UpdateProgress,
            UpdateProgress {
                run_id: self.record.run_id.clone(),
                phase: self.record.phase,
                step,
            },
        );
    }

    fn step_started(&self, name: &str) {
        self.progress(Some(StepProgress {
            name: name.to_owned(),
            state: "started".to_owned(),
            duration_ms: None,
            exit_code: None,
        }));
    }

    /// Records a finished step; true when it succeeded.
    fn step_finished(&mut self, step: StepRecord) -> bool {
        let ok = step.exit_code == Some(0);
        self.progress(Some(StepProgress {
            name: step.name.clone(),
            state: if ok { "finished" } else { "failed" }.to_owned(),
            duration_ms: Some(step.duration_ms),
            exit_code: step.exit_code,
        }));
        tracing::info!(
            run_id = %self.record.run_id, step = %step.name, exit = ?step.exit_code,
            ms = step.duration_ms, "update step finished"
        );
        self.record.steps.push(step);
        self.record.updated_at = unix_ms();
        self.save();
        ok
    }

    /// Runs an external command as a step; its stdout on success, a
    /// one-line summary of the failure otherwise.
    pub async fn command(
        &mut self,
        name: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
    ) -> Result<String, String> {
        self.step_started(name);
        let spec = StepSpec {
            name: name.to_owned(),
            argv,
            cwd,
            env,
            timeout: self.timeout,
        };
        let cancel = self.gw.stopping().child_token();
        let (step, stdout) = run_step_with_stdout(&spec, &cancel, MAX_PARSED_STDOUT).await;
        let summary = step_failure(&step);
        if self.step_finished(step) {
            stdout.ok_or_else(|| format!("{name}: output larger than {MAX_PARSED_STDOUT} bytes"))
        } else {
            Err(summary)
        }
    }

    /// A step molt does itself (file system work, a `--version` run),
    /// recorded like the others and run on the blocking pool.
    pub async fn internal<T: Send + 'static>(
        &mut self,
        name: &str,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        self.step_started(name);
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(format!("{name} did not finish: {e}")));
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        self.step_finished(internal_step(name, started, &outcome));
        result
    }

    /// The `update.run` result for how this run ended.
    pub fn result(&self, status: UpdateStatus, reason: Option<&str>) -> UpdateResult {
        UpdateResult {
            status,
            mode: self.record.mode,
            root: self.record.root.clone(),
            reason: reason.map(str::to_owned),
            before: self.record.before.clone(),
            after: self.record.after.clone(),
            steps: self.record.steps.clone(),
            duration_ms: self.elapsed_ms(),
        }
    }

    /// Ends the run with `reason`; nothing is restarted.
    pub fn end(&mut self, ended: Ended, reason: &str) -> UpdateRunResult {
        let (phase, status) = match ended {
            Ended::Skipped => (RunPhase::Skipped, UpdateStatus::Skipped),
            Ended::Failed => (RunPhase::Failed, UpdateStatus::Error),
            Ended::RolledBack => (RunPhase::RolledBack, UpdateStatus::Error),
        };
        self.record.reason = Some(reason.to_owned());
        self.set_phase(phase);
        tracing::info!(run_id = %self.record.run_id, %reason, ?phase, "update run ended");
        UpdateRunResult {
            ok: status != UpdateStatus::Error,
            run_id: self.record.run_id.clone(),
            result: self.result(status, Some(reason)),
            restart: None,
            sentinel: None,
        }
    }
}

/// Moves `record` to `phase` now; a terminal phase also ends it.
pub fn advance(record: &mut RunRecord, phase: RunPhase) {
    record.phase = phase;
    record.updated_at = unix_ms();
    if phase.is_terminal() {
        record.finished_at = Some(record.updated_at);
    }
}

/// How a run ended without a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Skipped,
    Failed,
    RolledBack,
}

/// `"<step> failed (exited 1): <last stderr line>"`.
pub fn step_failure(step: &StepRecord) -> String {
    let how = match (step.termination, step.exit_code) {
        (molt_protocol::update::Termination::Exited, Some(code)) => format!("exit {code}"),
        (termination, _) => format!("{termination:?}").to_lowercase(),
    };
    let detail = [&step.stderr_tail, &step.stdout_tail]
        .into_iter()
        .find_map(|out| out.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    if detail.is_empty() {
        format!("{} failed ({how})", step.name)
    } else {
        format!("{} failed ({how}): {detail}", step.name)
    }
}
