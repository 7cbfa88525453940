//! One update run while it is in progress: its durable record, its steps
//! and the `update.progress` events clients follow.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use molt_protocol::event::{EventName, StepProgress, StepState, UpdateProgress};
use molt_protocol::method::UpdateRunResult;
use molt_protocol::update::{
    RunPhase, RunRecord, StepRecord, Termination, UpdateResult, UpdateStatus,
};

use super::context::RunContext;
use super::failure::Ended;
use super::steps::{StepSpec, internal_step};
use crate::clock::unix_ms;
use crate::metrics::metrics;

/// Stdout kept whole for parsing (package metadata, git output).
const MAX_PARSED_STDOUT: usize = 8 * 1024 * 1024;

/// Why a step did not succeed; the text goes into the run's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A command ended without success: `"<step> failed (exit 1): <last
    /// line of its output>"`.
    #[error("{0}")]
    Command(String),
    #[error("{step}: output larger than {limit} bytes")]
    OutputTooLarge { step: String, limit: usize },
    /// A step molt does itself failed.
    #[error("{0}")]
    Internal(String),
    #[error("{step} did not finish: {cause}")]
    Interrupted { step: String, cause: String },
}

pub struct Run {
    pub record: RunRecord,
    started: Instant,
    ctx: RunContext,
    /// Per-step bound from `timeoutMs`.
    pub timeout: Duration,
    /// A dry run changes nothing: no record, no events.
    dry_run: bool,
}

impl Run {
    pub fn new(ctx: &RunContext, record: RunRecord, timeout: Duration, dry_run: bool) -> Run {
        Run {
            record,
            started: Instant::now(),
            ctx: ctx.clone(),
            timeout,
            dry_run,
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The state dir's files (the swap journal lives there).
    pub fn paths(&self) -> &crate::paths::StatePaths {
        &self.ctx.paths
    }

    pub async fn set_phase(&mut self, phase: RunPhase) {
        advance(&mut self.record, phase);
        self.save().await;
        self.progress(None);
    }

    async fn save(&self) {
        if self.dry_run {
            return;
        }
        save(&self.ctx, self.record.clone()).await;
    }

    fn progress(&self, step: Option<StepProgress>) {
        if self.dry_run {
            return;
        }
        self.ctx.events.send(
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
            state: StepState::Started,
            duration_ms: None,
            exit_code: None,
        }));
    }

    /// Records a finished step; true when it succeeded.
    async fn step_finished(&mut self, step: StepRecord) -> bool {
        let ok = !step.failed();
        metrics().update_step(&step.name, step.duration_ms as f64 / 1000.0);
        self.progress(Some(StepProgress {
            name: step.name.clone(),
            state: if ok {
                StepState::Finished
            } else {
                StepState::Failed
            },
            duration_ms: Some(step.duration_ms),
            exit_code: step.exit_code,
        }));
        tracing::info!(
            run_id = %self.record.run_id, step = %step.name, exit = ?step.exit_code,
            ms = step.duration_ms, "update step finished"
        );
        self.record.steps.push(step);
        self.record.updated_at = unix_ms();
        self.save().await;
        ok
    }

    /// Runs an external command as a step; its stdout on success.
    pub async fn command(
        &mut self,
        name: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
    ) -> Result<String, StepError> {
        self.step_started(name);
        let spec = StepSpec {
            name: name.to_owned(),
            argv,
            cwd,
            env,
            timeout: self.timeout,
        };
        let cancel = self.ctx.cancel.child_token();
        let (step, stdout) = self.ctx.steps.run(&spec, &cancel, MAX_PARSED_STDOUT).await;
        let summary = step_failure(&step);
        if self.step_finished(step).await {
            stdout.ok_or_else(|| StepError::OutputTooLarge {
                step: name.to_owned(),
                limit: MAX_PARSED_STDOUT,
            })
        } else {
            Err(StepError::Command(summary))
        }
    }

    /// A step molt does itself (file system work, a `--version` run),
    /// recorded like the others and run on the blocking pool.
    pub async fn internal<T, E>(
        &mut self,
        name: &str,
        work: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, StepError>
    where
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.step_started(name);
        let started = Instant::now();
        let result = match tokio::task::spawn_blocking(work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StepError::Internal(e.to_string())),
            Err(e) => Err(StepError::Interrupted {
                step: name.to_owned(),
                cause: e.to_string(),
            }),
        };
        let error = result.as_ref().err().map(ToString::to_string);
        self.step_finished(internal_step(name, started, error.as_deref()))
            .await;
        result
    }

    /// The `update.run` result for how this run ended.
    pub fn result(&self, status: UpdateStatus, reason: Option<String>) -> UpdateResult {
        UpdateResult {
            status,
            mode: self.record.mode,
            root: self.record.root.clone(),
            reason,
            before: self.record.before.clone(),
            after: self.record.after.clone(),
            steps: self.record.steps.clone(),
            duration_ms: self.elapsed_ms(),
            changelog: self.record.changelog.clone(),
        }
    }

    /// Ends the run as `ended` says; nothing is restarted.
    pub async fn end(&mut self, ended: Ended) -> UpdateRunResult {
        let (phase, status) = ended.phase();
        if status != UpdateStatus::Ok {
            // An update that did not take brought nothing.
            self.record.changelog = None;
        }
        let reason = ended.reason();
        self.record.reason = Some(reason.clone());
        self.set_phase(phase).await;
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

/// Appends `record` to the run store on the blocking pool (flock, fsync);
/// a failure is logged: the run goes on, and says so in the log.
pub async fn save(ctx: &RunContext, record: RunRecord) {
    let store = ctx.runs.clone();
    let run_id = record.run_id.clone();
    let saved = tokio::task::spawn_blocking(move || store.record(&record)).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(%run_id, "cannot record the update run: {e}"),
        Err(e) => tracing::error!(%run_id, "recording the update run did not finish: {e}"),
    }
}

/// Moves `record` to `phase` now; a terminal phase also ends it.
pub fn advance(record: &mut RunRecord, phase: RunPhase) {
    if phase.is_terminal() && !record.phase.is_terminal() {
        metrics().update_run_ended(record.trigger.as_str(), phase.as_str());
    }
    record.phase = phase;
    record.updated_at = unix_ms();
    if phase.is_terminal() {
        record.finished_at = Some(record.updated_at);
    }
}

/// `"<step> failed (exited 1): <last stderr line>"`.
pub fn step_failure(step: &StepRecord) -> String {
    let how = match (step.termination, step.exit_code) {
        (Termination::Exited, Some(code)) => format!("exit {code}"),
        (termination, _) => termination.as_str().to_owned(),
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
