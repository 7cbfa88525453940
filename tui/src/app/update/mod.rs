//! The Update screen: the confirm dialog, the live run, the handoff that
//! follows and the verdict from `update.status`.

mod dialog;
mod run;
mod verdict;

use molt_protocol::Method;
use molt_protocol::error::UnavailableReason;
use molt_protocol::event::UpdateProgress;
use molt_protocol::ids::RunId;
use molt_protocol::method::{
    UpdateCheckResult, UpdateRunParams, UpdateRunResult, UpdateStatusParams, UpdateStatusResult,
};
use molt_protocol::update::{RunPhase, UpdateStatus};
use serde_json::Value;

pub use dialog::{Choice, Dialog, Field, Preview, TextInput, validate_tag};
pub use run::{RunStage, RunView, StepView, UpdateView};
pub use verdict::{Verdict, record_for, verdict};

use super::keymap::TextKey;
use super::{App, Command, ConnState, Level, request};
use crate::client::RequestError;
use crate::net::Purpose;
use dialog::{MAX_NOTE, MAX_TAG};
use verdict::judge;

/// The run that holds the install, from `UNAVAILABLE` `update-in-progress`.
fn running_id(shape: &molt_protocol::ErrorShape) -> Option<RunId> {
    let details = shape.details.as_ref()?;
    let id = details
        .get("runId")
        .or_else(|| details.get("runningRunId"))?;
    id.as_str().map(RunId::from)
}

use super::decode;

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
            Err(RequestError::Gateway(shape))
                if shape.unavailable_reason() == Some(UnavailableReason::UpdateInProgress)
                    && running_id(&shape).is_some() =>
            {
                // Another run holds the install: follow that one instead.
                run.run_id = running_id(&shape);
                run.ours = false;
                run.stage = RunStage::Running;
                run.target = None;
                run.warning = Some(format!("not started: {shape}; following that run"));
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
