//! The Update screen: the confirm dialog, the live run, the handoff that
//! follows and the verdict from `update.status`.

use std::time::{Duration, Instant};

use molt_protocol::Method;
use molt_protocol::event::{StepProgress, UpdateProgress};
use molt_protocol::ids::RunId;
use molt_protocol::method::{
    RestartScheduled, UpdateCheckResult, UpdateRunParams, UpdateRunResult, UpdateStatusParams,
    UpdateStatusResult,
};
use molt_protocol::update::{RunPhase, RunRecord, StepRecord, UpdateStatus};
use serde_json::Value;

use super::keymap::TextKey;
use super::{App, Command, ConnState, Level, request};
use crate::client::RequestError;
use crate::net::Purpose;

/// Longest note or target the console sends.
const MAX_NOTE: usize = 200;
const MAX_TAG: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Cancel,
    Update,
}

/// Which text a [`TextInput`] edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Note,
    Target,
    DeferralTimeout,
}

/// A one-line text field with the focus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextInput {
    pub field: Field,
    pub text: String,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

impl TextInput {
    pub fn new(field: Field, text: impl Into<String>) -> Self {
        Self {
            field,
            text: text.into(),
            error: None,
        }
    }

    /// Applies an editing key; true when the key was Enter.
    pub fn edit(&mut self, key: &TextKey, max: usize) -> bool {
        match key {
            TextKey::Insert(c) if !c.is_control() && self.text.chars().count() < max => {
                self.text.push(*c);
                self.error = None;
            }
            TextKey::Backspace => {
                self.text.pop();
                self.error = None;
            }
            TextKey::Accept => return true,
            _ => {}
        }
        false
    }
}

/// What the dry run said the update would do.
#[derive(Clone, Debug, PartialEq)]
pub enum Preview {
    Resolving,
    Ready(Box<UpdateRunResult>),
    Failed(String),
}

/// The confirm dialog. Cancel is selected when it opens.
#[derive(Clone, Debug, PartialEq)]
pub struct Dialog {
    pub current: Option<String>,
    pub preview: Preview,
    pub note: String,
    /// Target version or dist-tag; empty means the configured channel.
    pub tag: String,
    pub editing: Option<TextInput>,
    pub choice: Choice,
    /// Why the last Update press did nothing.
    pub refusal: Option<String>,
}

impl Dialog {
    fn new(current: Option<String>) -> Self {
        Self {
            current,
            preview: Preview::Resolving,
            note: String::new(),
            tag: String::new(),
            editing: None,
            choice: Choice::Cancel,
            refusal: None,
        }
    }

    pub fn switch_choice(&mut self) {
        self.choice = match self.choice {
            Choice::Cancel => Choice::Update,
            Choice::Update => Choice::Cancel,
        };
    }

    /// The version the run would install, once resolved.
    pub fn target(&self) -> Option<&str> {
        match &self.preview {
            Preview::Ready(result) => result.result.after.version.as_deref(),
            _ => None,
        }
    }

    /// Why Update cannot be taken now, if it cannot.
    pub fn blocker(&self) -> Option<String> {
        match &self.preview {
            Preview::Resolving => Some("still resolving the target".to_owned()),
            Preview::Failed(problem) => Some(problem.clone()),
            Preview::Ready(result) => match result.result.status {
                UpdateStatus::Ok => None,
                UpdateStatus::Skipped => Some(format!(
                    "nothing to do: {}",
                    result.result.reason.as_deref().unwrap_or("skipped")
                )),
                UpdateStatus::Error => Some(format!(
                    "the dry run failed: {}",
                    result.result.reason.as_deref().unwrap_or("error")
                )),
            },
        }
    }
}

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
    /// Connected again; asking `update.status` for the verdict.
    Verifying,
    Verified {
        version: String,
        pid: u32,
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
            Self::Verified { .. } | Self::Failed { .. } | Self::Skipped { .. }
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
    pub record: Option<StepRecord>,
}

impl StepView {
    pub fn finished(&self) -> bool {
        self.duration_ms.is_some() || self.record.is_some()
    }

    pub fn failed(&self) -> bool {
        let code = self
            .exit_code
            .or(self.record.as_ref().and_then(|r| r.exit_code));
        let abnormal = self.record.as_ref().is_some_and(|r| {
            !matches!(
                r.termination,
                molt_protocol::update::Termination::Exited
                    | molt_protocol::update::Termination::Internal
            )
        });
        code.is_some_and(|c| c != 0) || abnormal
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
    pub target: Option<String>,
    pub note: Option<String>,
    pub steps: Vec<StepView>,
    pub restart: Option<RestartScheduled>,
    pub started_at: Instant,
    /// A problem worth showing that did not end the run (a timeout).
    pub warning: Option<String>,
}

impl RunView {
    fn record_steps(&mut self, records: &[StepRecord], now: Instant) {
        for record in records {
            match self
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.name == record.name && s.record.is_none())
            {
                Some(step) => {
                    step.duration_ms = Some(record.duration_ms);
                    step.exit_code = record.exit_code;
                    step.record = Some(record.clone());
                }
                None => self.steps.push(StepView {
                    name: record.name.clone(),
                    started_at: now,
                    duration_ms: Some(record.duration_ms),
                    exit_code: record.exit_code,
                    record: Some(record.clone()),
                }),
            }
        }
    }

    fn on_step(&mut self, step: StepProgress, now: Instant) {
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
}

/// Everything the Update screen shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateView {
    pub dialog: Option<Dialog>,
    pub run: Option<RunView>,
    /// The latest `update.status` answer.
    pub status: Option<UpdateStatusResult>,
    pub status_error: Option<String>,
    /// The latest `update.check` answer, or why it failed.
    pub check: Option<Result<UpdateCheckResult, String>>,
    status_in_flight: bool,
    /// Asked again while one was in flight: its answer may predate the run.
    status_wanted: bool,
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

    fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.stage.is_done())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A version (`1.2.3`, `v1.2.3-beta.1`) or a dist-tag (`latest`, `beta`).
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_');
    if tag.len() > MAX_TAG {
        return Err(format!("at most {MAX_TAG} characters"));
    }
    match tag.chars().next() {
        None => Ok(()),
        Some(first) if !first.is_ascii_alphanumeric() => {
            Err("must start with a letter or digit".to_owned())
        }
        Some(_) if !tag.chars().all(ok_char) => {
            Err("only letters, digits and . - + _ (a version or a dist-tag)".to_owned())
        }
        Some(_) => Ok(()),
    }
}

fn decode<T: serde::de::DeserializeOwned>(method: Method, value: Value) -> Result<T, String> {
    molt_protocol::frame::decode(value)
        .map_err(|problem| format!("unexpected {} result: {problem}", method.as_str()))
}

impl App {
    pub(super) fn open_update_dialog(&mut self) -> Vec<Command> {
        if self.update.running() {
            self.set_notice(Level::Warn, "an update is already running");
            return Vec::new();
        }
        let current = self.status.as_ref().map(|s| s.status.version.clone());
        let mut dialog = Dialog::new(current);
        if self.conn != ConnState::Connected {
            dialog.preview = Preview::Failed("not connected to the gateway".to_owned());
            self.update.dialog = Some(dialog);
            return Vec::new();
        }
        self.update.dialog = Some(dialog);
        self.request_preview()
    }

    fn request_preview(&mut self) -> Vec<Command> {
        let Some(dialog) = &mut self.update.dialog else {
            return Vec::new();
        };
        dialog.preview = Preview::Resolving;
        let params = UpdateRunParams {
            tag: (!dialog.tag.is_empty()).then(|| dialog.tag.clone()),
            dry_run: Some(true),
            ..UpdateRunParams::default()
        };
        vec![request(
            Purpose::UpdatePreview,
            Method::UpdateRun,
            serde_json::to_value(params).ok(),
        )]
    }

    pub(super) fn request_update_status(&mut self) -> Vec<Command> {
        if self.update.status_in_flight {
            self.update.status_wanted = true;
            return Vec::new();
        }
        self.update.status_in_flight = true;
        self.update.status_wanted = false;
        let run_id = self.update.run.as_ref().and_then(|r| r.run_id.clone());
        let params = serde_json::to_value(UpdateStatusParams { run_id }).ok();
        vec![request(Purpose::UpdateStatus, Method::UpdateStatus, params)]
    }

    pub(super) fn update_edit(&mut self, field: Field) -> Vec<Command> {
        if let Some(dialog) = &mut self.update.dialog {
            let text = match field {
                Field::Note => dialog.note.clone(),
                _ => dialog.tag.clone(),
            };
            dialog.editing = Some(TextInput::new(field, text));
        }
        Vec::new()
    }

    pub(super) fn update_text_key(&mut self, key: TextKey) -> Vec<Command> {
        let Some(dialog) = &mut self.update.dialog else {
            return Vec::new();
        };
        let Some(input) = &mut dialog.editing else {
            return Vec::new();
        };
        if key == TextKey::Discard {
            dialog.editing = None;
            return Vec::new();
        }
        let max = if input.field == Field::Note {
            MAX_NOTE
        } else {
            MAX_TAG
        };
        if !input.edit(&key, max) {
            return Vec::new();
        }
        let text = input.text.trim().to_owned();
        match input.field {
            Field::Target => {
                if let Err(problem) = validate_tag(&text) {
                    input.error = Some(format!("bad target {text:?}: {problem}"));
                    return Vec::new();
                }
                dialog.editing = None;
                dialog.choice = Choice::Cancel;
                let changed = dialog.tag != text;
                dialog.tag = text;
                if changed && self.conn == ConnState::Connected {
                    return self.request_preview();
                }
            }
            _ => {
                dialog.note = text;
                dialog.editing = None;
            }
        }
        Vec::new()
    }

    pub(super) fn update_activate(&mut self) -> Vec<Command> {
        let Some(dialog) = &mut self.update.dialog else {
            return self.open_update_dialog();
        };
        if dialog.choice == Choice::Cancel {
            self.update.dialog = None;
            return Vec::new();
        }
        if let Some(blocker) = dialog.blocker() {
            dialog.refusal = Some(blocker);
            return Vec::new();
        }
        if self.conn != ConnState::Connected {
            dialog.refusal = Some("not connected to the gateway".to_owned());
            return Vec::new();
        }
        let Some(dialog) = self.update.dialog.take() else {
            return Vec::new();
        };
        let note = (!dialog.note.is_empty()).then(|| dialog.note.clone());
        let params = UpdateRunParams {
            note: note.clone(),
            tag: (!dialog.tag.is_empty()).then(|| dialog.tag.clone()),
            ..UpdateRunParams::default()
        };
        let status = self.status.as_ref().map(|s| &s.status);
        self.update.run = Some(RunView {
            run_id: None,
            stage: RunStage::Starting,
            ours: true,
            from_pid: status.map(|s| s.pid),
            from_version: status.map(|s| s.version.clone()),
            target: dialog.target().map(str::to_owned),
            note,
            steps: Vec::new(),
            restart: None,
            started_at: self.now,
            warning: None,
        });
        self.handoff = None;
        vec![request(
            Purpose::UpdateRun,
            Method::UpdateRun,
            serde_json::to_value(params).ok(),
        )]
    }

    /// While waiting for a verdict, ask again each tick.
    pub(super) fn update_tick(&mut self) -> Vec<Command> {
        let waiting = self.update.run.as_ref().is_some_and(|r| {
            matches!(r.stage, RunStage::Restarting | RunStage::Verifying) && r.run_id.is_some()
        });
        if waiting && self.conn == ConnState::Connected {
            return self.request_update_status();
        }
        Vec::new()
    }

    pub(super) fn update_on_closed(&mut self) {
        self.update.status_in_flight = false;
        self.update.status_wanted = false;
        if let Some(dialog) = &mut self.update.dialog
            && dialog.preview == Preview::Resolving
        {
            dialog.preview = Preview::Failed("connection lost; press u to try again".to_owned());
        }
        if let Some(run) = &mut self.update.run
            && matches!(
                run.stage,
                RunStage::Starting | RunStage::Running | RunStage::Restarting
            )
        {
            run.stage = RunStage::Reconnecting;
        }
    }

    pub(super) fn update_on_connected(&mut self) -> Vec<Command> {
        let Some(run) = &mut self.update.run else {
            return Vec::new();
        };
        if matches!(run.stage, RunStage::Reconnecting | RunStage::Restarting) {
            run.stage = RunStage::Verifying;
            return self.request_update_status();
        }
        Vec::new()
    }

    pub(super) fn on_update_progress(&mut self, progress: UpdateProgress) -> Vec<Command> {
        let now = self.now;
        let ours = match &mut self.update.run {
            Some(run) if run.run_id.is_none() && !run.stage.is_done() => {
                run.run_id = Some(progress.run_id.clone());
                true
            }
            Some(run) => run.run_id.as_ref() == Some(&progress.run_id),
            None => false,
        };
        if !ours {
            if self.update.running() {
                // Ours runs; another run's events are for the history.
                return Vec::new();
            }
            // Someone else's run (auto-update, another console): follow it.
            let status = self.status.as_ref().map(|s| &s.status);
            self.update.run = Some(RunView {
                run_id: Some(progress.run_id.clone()),
                stage: RunStage::Running,
                ours: false,
                from_pid: status.map(|s| s.pid),
                from_version: status.map(|s| s.version.clone()),
                target: None,
                note: None,
                steps: Vec::new(),
                restart: None,
                started_at: now,
                warning: None,
            });
        }
        let Some(run) = &mut self.update.run else {
            return Vec::new();
        };
        if let Some(step) = progress.step {
            run.on_step(step, now);
        }
        match progress.phase {
            RunPhase::Requested | RunPhase::Running => {
                if run.stage == RunStage::Starting {
                    run.stage = RunStage::Running;
                }
                Vec::new()
            }
            RunPhase::Restarting => {
                if matches!(run.stage, RunStage::Starting | RunStage::Running) {
                    run.stage = RunStage::Restarting;
                }
                Vec::new()
            }
            RunPhase::Verified => {
                if !run.stage.is_done() {
                    run.stage = RunStage::Verifying;
                }
                self.request_update_status()
            }
            RunPhase::Failed | RunPhase::RolledBack => {
                run.stage = RunStage::Failed {
                    reason: "the gateway reports the run failed".to_owned(),
                    rolled_back: progress.phase == RunPhase::RolledBack,
                };
                let mut commands = self.request_update_status();
                commands.extend(self.request_history_if_shown());
                commands
            }
            RunPhase::Skipped => {
                run.stage = RunStage::Skipped {
                    reason: "skipped".to_owned(),
                };
                self.request_update_status()
            }
        }
    }

    pub(super) fn on_update_preview(
        &mut self,
        result: Result<Value, RequestError>,
    ) -> Vec<Command> {
        let Some(dialog) = &mut self.update.dialog else {
            return Vec::new();
        };
        dialog.preview = match result
            .map_err(|e| e.to_string())
            .and_then(|v| decode::<UpdateRunResult>(Method::UpdateRun, v))
        {
            Ok(result) => Preview::Ready(Box::new(result)),
            Err(problem) => Preview::Failed(problem),
        };
        Vec::new()
    }

    pub(super) fn on_update_run(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        let now = self.now;
        let Some(run) = self.update.run.as_mut().filter(|r| r.ours) else {
            return Vec::new();
        };
        let answer = match result {
            Ok(value) => decode::<UpdateRunResult>(Method::UpdateRun, value),
            Err(RequestError::Disconnected { .. }) => {
                // The restart may have closed the socket before the answer
                // came; the successor's update.status tells what happened.
                if !run.stage.is_done() {
                    run.stage = RunStage::Reconnecting;
                }
                return Vec::new();
            }
            Err(error @ RequestError::Timeout { .. }) => {
                run.warning = Some(format!("{error}; following update.status"));
                return self.request_update_status();
            }
            Err(error) => Err(error.to_string()),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                run.stage = RunStage::Failed {
                    reason,
                    rolled_back: false,
                };
                let known = run.run_id.is_some();
                let mut commands = self.request_history_if_shown();
                if known {
                    commands.extend(self.request_update_status());
                }
                return commands;
            }
        };
        run.run_id = Some(answer.run_id.clone());
        run.record_steps(&answer.result.steps, now);
        if answer.result.after.version.is_some() {
            run.target = answer.result.after.version.clone();
        }
        run.restart = answer.restart.clone();
        let reason = answer.result.reason.clone();
        match answer.result.status {
            UpdateStatus::Ok => {
                if matches!(run.stage, RunStage::Starting | RunStage::Running) {
                    run.stage = RunStage::Restarting;
                }
                Vec::new()
            }
            UpdateStatus::Skipped => {
                run.stage = RunStage::Skipped {
                    reason: reason.unwrap_or_else(|| "skipped".to_owned()),
                };
                self.request_history_if_shown()
            }
            UpdateStatus::Error => {
                let failing = run.failing_step().map(|s| s.name.clone());
                let reason = match (reason, failing) {
                    (Some(reason), _) => reason,
                    (None, Some(step)) => format!("step {step} failed"),
                    (None, None) => "the update failed".to_owned(),
                };
                run.stage = RunStage::Failed {
                    reason,
                    rolled_back: false,
                };
                let mut commands = self.request_update_status();
                commands.extend(self.request_history_if_shown());
                commands
            }
        }
    }

    pub(super) fn on_update_status(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.update.status_in_flight = false;
        let mut commands = Vec::new();
        if self.update.status_wanted && self.conn == ConnState::Connected {
            commands = self.request_update_status();
        }
        let answer = match result
            .map_err(|e| e.to_string())
            .and_then(|v| decode::<UpdateStatusResult>(Method::UpdateStatus, v))
        {
            Ok(answer) => answer,
            Err(problem) => {
                self.update.status_error = Some(problem);
                return commands;
            }
        };
        self.update.status_error = None;
        let pid = self.status.as_ref().map(|s| s.status.pid);
        let now = self.now;
        let mut finished = false;
        if let Some(run) = &mut self.update.run {
            let was_done = run.stage.is_done();
            judge(run, &answer, pid, now);
            finished = !was_done && run.stage.is_done();
        }
        self.update.status = Some(answer);
        if finished {
            commands.extend(self.request_history_if_shown());
        }
        commands
    }

    pub(super) fn on_update_check(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.update.check = Some(
            result
                .map_err(|e| e.to_string())
                .and_then(|v| decode::<UpdateCheckResult>(Method::UpdateCheck, v)),
        );
        self.request_status(true)
    }
}

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
fn judge(run: &mut RunView, answer: &UpdateStatusResult, pid: Option<u32>, now: Instant) {
    if let Some(record) = record_for(run.run_id.as_ref(), answer) {
        run.record_steps(&record.steps, now);
        if run.target.is_none() {
            run.target = record
                .after
                .version
                .clone()
                .or(record.target.version.clone());
        }
        if record.phase == RunPhase::Restarting && run.stage == RunStage::Running {
            run.stage = RunStage::Restarting;
        }
    }
    if let Some(verdict) = verdict(run.run_id.as_ref(), run.target.as_deref(), answer, pid) {
        run.stage = verdict.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_versions_or_dist_tags() {
        for ok in [
            "",
            "1.2.3",
            "v1.2.3-beta.1",
            "latest",
            "next_2",
            "1.0.0+build.5",
        ] {
            assert_eq!(validate_tag(ok), Ok(()), "{ok}");
        }
        for bad in ["-rf", "1.2 3", "a;b", "$(x)", &"9".repeat(65)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
