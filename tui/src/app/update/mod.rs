//! The Update screen: the confirm dialog, the live run, the handoff that
//! follows and the verdict — for moltd and for both OpenClaw update
//! generations (see [`UpdateApi`]).

mod dialog;
mod run;
mod verdict;

use molt_protocol::Method;
use molt_protocol::error::UnavailableReason;
use molt_protocol::event::UpdateProgress;
use molt_protocol::ids::RunId;
use molt_protocol::method::{UpdateCheckResult, UpdateRunParams, UpdateStatusParams};
use molt_protocol::update::RunPhase;
use serde_json::{Value, json};

pub use dialog::{Choice, Dialog, Field, Preview, TextInput, edit_text, validate_tag};
pub use run::{RunStage, RunView, StepView, UpdateView};

use super::keymap::TextKey;
use super::{App, Command, ConnState, Level, request};
use crate::client::RequestError;
use crate::net::Purpose;
use crate::peer::{Claim, Outcome, RunAnswer, RunChanged, UpdateApi, UpdateReport};
use dialog::{MAX_NOTE, MAX_TAG};
use verdict::{judge, judge_record};

/// OpenClaw 2026.9.x's `update.runs.get`.
pub const RUNS_GET: &str = "update.runs.get";
/// OpenClaw 2026.9.x's `update.hold`: defers an automatic-update campaign.
pub const HOLD: &str = "update.hold";

/// The run that holds the install, from `UNAVAILABLE` `update-in-progress`.
fn running_id(shape: &molt_protocol::ErrorShape) -> Option<RunId> {
    let details = shape.details.as_ref()?;
    let id = details
        .get("runId")
        .or_else(|| details.get("runningRunId"))?;
    id.as_str().map(RunId::from)
}

impl App {
    pub(super) fn open_update_dialog(&mut self) -> Vec<Command> {
        if self.update.running() {
            self.set_notice(Level::Warn, "an update is already running");
            return Vec::new();
        }
        let current = self.facts().and_then(|f| f.version.clone());
        let mut dialog = Dialog::new(current);
        if self.conn != ConnState::Connected {
            dialog.preview = Preview::Failed("not connected to the gateway".to_owned());
            self.update.dialog = Some(dialog);
            return Vec::new();
        }
        match self.update_api() {
            UpdateApi::Molt => {
                self.update.dialog = Some(dialog);
                self.request_preview()
            }
            UpdateApi::None => {
                dialog.preview =
                    Preview::Failed("this gateway does not serve update.run".to_owned());
                self.update.dialog = Some(dialog);
                Vec::new()
            }
            UpdateApi::Sentinel | UpdateApi::Runs => {
                let latest = self
                    .update
                    .status
                    .as_ref()
                    .and_then(|r| r.update_available.as_ref())
                    .or(self.facts().and_then(|f| f.update_available.as_ref()))
                    .map(|a| a.latest.clone());
                dialog.preview = Preview::Unplanned { latest };
                self.update.dialog = Some(dialog);
                Vec::new()
            }
        }
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
        if !self.serves(Method::UpdateStatus.as_str()) {
            return Vec::new();
        }
        if self.update.status_in_flight {
            self.update.status_wanted = true;
            return Vec::new();
        }
        self.update.status_in_flight = true;
        self.update.status_wanted = false;
        // Only moltd takes a run id; OpenClaw refuses unknown params.
        let params = match self.update_api() {
            UpdateApi::Molt => {
                let run_id = self.update.run.as_ref().and_then(|r| r.run_id.clone());
                serde_json::to_value(UpdateStatusParams { run_id }).ok()
            }
            _ => Some(json!({})),
        };
        vec![request(Purpose::UpdateStatus, Method::UpdateStatus, params)]
    }

    /// OpenClaw 2026.9.x: the run record of the run followed.
    fn request_run_record(&mut self) -> Vec<Command> {
        let Some(run_id) = self.update.run.as_ref().and_then(|r| r.run_id.clone()) else {
            return Vec::new();
        };
        if self.update.run_get_in_flight || self.conn != ConnState::Connected {
            return Vec::new();
        }
        self.update.run_get_in_flight = true;
        vec![Command::Net(crate::net::NetCommand::Call {
            purpose: Purpose::RunRecord,
            method: RUNS_GET.to_owned(),
            params: Some(json!({ "runId": run_id })),
        })]
    }

    /// `p` on the Update screen: hold OpenClaw's automatic-update campaign.
    pub(super) fn hold_campaign(&mut self) -> Vec<Command> {
        if !self
            .hello
            .as_ref()
            .is_some_and(|h| h.features.methods.is_some() && h.features.serves(HOLD))
        {
            self.set_notice(Level::Warn, "this gateway does not serve update.hold");
            return Vec::new();
        }
        if self.conn != ConnState::Connected {
            self.set_notice(Level::Warn, "not connected to the gateway");
            return Vec::new();
        }
        vec![Command::Net(crate::net::NetCommand::Call {
            purpose: Purpose::Hold,
            method: HOLD.to_owned(),
            params: Some(json!({})),
        })]
    }

    pub(super) fn on_hold(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        match result {
            Ok(value) if value.get("ok").and_then(Value::as_bool) == Some(true) => {
                self.set_notice(Level::Info, "automatic update held (update.hold)");
            }
            Ok(_) => self.set_notice(
                Level::Warn,
                "update.hold: nothing to hold (no campaign, already held, or applying)",
            ),
            Err(error) => self.set_notice(Level::Error, format!("update.hold: {error}")),
        }
        self.request_update_status()
    }

    pub(super) fn update_edit(&mut self, field: Field) -> Vec<Command> {
        let molt = self.update_api() == UpdateApi::Molt;
        let Some(dialog) = &mut self.update.dialog else {
            return Vec::new();
        };
        if field == Field::Target && !molt {
            dialog.refusal = Some(
                "this gateway resolves the target from its update channel; \
                 a version cannot be chosen here"
                    .to_owned(),
            );
            return Vec::new();
        }
        let text = match field {
            Field::Note => dialog.note.clone(),
            _ => dialog.tag.clone(),
        };
        dialog.editing = Some(TextInput::new(field, text));
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
        let mut run = RunView::new(self.now, true, self.live());
        run.target = dialog.target().map(str::to_owned);
        run.note = note;
        self.update.run = Some(run);
        self.handoff = None;
        vec![request(
            Purpose::UpdateRun,
            Method::UpdateRun,
            serde_json::to_value(params).ok(),
        )]
    }

    /// While a run goes on, ask again each tick: moltd and OpenClaw
    /// 2026.4.x once the restart is under way, OpenClaw 2026.9.x's run
    /// record throughout.
    pub(super) fn update_tick(&mut self) -> Vec<Command> {
        if self.conn != ConnState::Connected {
            return Vec::new();
        }
        let Some(run) = &self.update.run else {
            return Vec::new();
        };
        if run.stage.is_done() {
            return Vec::new();
        }
        match self.update_api() {
            UpdateApi::Runs if run.run_id.is_some() => self.request_run_record(),
            UpdateApi::Sentinel
                if matches!(run.stage, RunStage::Restarting | RunStage::Verifying) =>
            {
                self.request_update_status()
            }
            _ if matches!(run.stage, RunStage::Restarting | RunStage::Verifying)
                && run.run_id.is_some() =>
            {
                self.request_update_status()
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn update_on_closed(&mut self) {
        self.update.status_in_flight = false;
        self.update.status_wanted = false;
        self.update.run_get_in_flight = false;
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
        let api = self.update_api();
        let Some(run) = &mut self.update.run else {
            return Vec::new();
        };
        if matches!(run.stage, RunStage::Reconnecting | RunStage::Restarting) {
            run.stage = RunStage::Verifying;
            run.restarted = true;
            return match api {
                UpdateApi::Runs => self.request_run_record(),
                _ => self.request_update_status(),
            };
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
            let mut run = RunView::new(now, false, self.live());
            run.run_id = Some(progress.run_id.clone());
            run.stage = RunStage::Running;
            self.update.run = Some(run);
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

    /// OpenClaw 2026.9.x `update.run.changed`: ours, or one started
    /// elsewhere (a campaign, another client), moved on.
    pub(super) fn on_run_changed(&mut self, changed: RunChanged) -> Vec<Command> {
        let now = self.now;
        let ours = match &mut self.update.run {
            Some(run) if run.run_id.is_none() && !run.stage.is_done() && run.ours => {
                run.run_id = Some(changed.run_id.clone());
                true
            }
            Some(run) => run.run_id.as_ref() == Some(&changed.run_id),
            None => false,
        };
        if !ours {
            if self.update.running() || changed.status.as_deref().is_none_or(|s| s != "running") {
                return self.request_history_if_shown();
            }
            let mut run = RunView::new(now, false, self.live());
            run.run_id = Some(changed.run_id.clone());
            run.stage = RunStage::Running;
            self.update.run = Some(run);
        }
        let Some(run) = &mut self.update.run else {
            return Vec::new();
        };
        if changed.phase.is_some() {
            run.phase = changed.phase.clone();
        }
        if run.stage == RunStage::Starting {
            run.stage = RunStage::Running;
        }
        if changed.phase.as_deref() == Some("restarting") && run.stage == RunStage::Running {
            run.stage = RunStage::Restarting;
        }
        if changed.is_terminal() {
            let mut commands = self.request_run_record();
            commands.extend(self.request_history_if_shown());
            return commands;
        }
        Vec::new()
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
            .and_then(|v| RunAnswer::from_value(&v))
        {
            Ok(answer) => Preview::Ready(Box::new(answer)),
            Err(problem) => Preview::Failed(problem),
        };
        Vec::new()
    }

    pub(super) fn on_update_run(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        let now = self.now;
        let api = self.update_api();
        let Some(run) = self.update.run.as_mut().filter(|r| r.ours) else {
            return Vec::new();
        };
        let answer = match result {
            Ok(value) => RunAnswer::from_value(&value),
            Err(RequestError::Disconnected { .. }) => {
                // The restart may have closed the socket before the answer
                // came; the successor tells what happened.
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
        if answer.run_id.is_some() {
            run.run_id = answer.run_id.clone();
        }
        run.record_steps(&answer.steps, now);
        if answer.after.is_some() {
            run.target = answer.after.clone();
        }
        run.restart = answer.restart.clone();
        run.changelog = answer.changelog.clone();
        if answer.message.is_some() {
            run.advice = answer.message.clone();
        }
        let reason = answer.reason.clone();
        if answer.handed_off() {
            // OpenClaw 2026.9.x: acknowledged, not done. The run record
            // follows it through the updater and the restart.
            if let Some(handoff) = &answer.handoff {
                run.phase = Some(match handoff.pid {
                    Some(pid) => format!("handed to the updater (pid {pid})"),
                    None => "handed to the updater".to_owned(),
                });
            }
            if matches!(run.stage, RunStage::Starting | RunStage::Running) {
                run.stage = RunStage::Running;
            }
            return self.request_run_record();
        }
        match answer.outcome {
            Outcome::Succeeded | Outcome::Running => {
                if matches!(run.stage, RunStage::Starting | RunStage::Running) {
                    run.stage = RunStage::Restarting;
                }
                Vec::new()
            }
            Outcome::Skipped => {
                run.stage = RunStage::Skipped {
                    reason: reason.unwrap_or_else(|| "skipped".to_owned()),
                };
                self.request_history_if_shown()
            }
            Outcome::Failed { .. } => {
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
                let mut commands = if api == UpdateApi::Molt {
                    self.request_update_status()
                } else {
                    Vec::new()
                };
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
        let report = match result
            .map_err(|e| e.to_string())
            .and_then(|v| UpdateReport::from_value(&v))
        {
            Ok(report) => report,
            Err(problem) => {
                self.update.status_error = Some(problem);
                return commands;
            }
        };
        self.update.status_error = None;
        let api = self.update_api();
        let live = self.live().unwrap_or_default();
        let now = self.now;
        let mut finished = false;
        if let Some(run) = &mut self.update.run {
            let was_done = run.stage.is_done();
            judge(run, api, &report, &live, now);
            finished = !was_done && run.stage.is_done();
        }
        self.update.status = Some(report);
        if finished {
            commands.extend(self.request_history_if_shown());
        }
        commands
    }

    /// OpenClaw 2026.9.x `update.runs.get`.
    pub(super) fn on_run_record(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.update.run_get_in_flight = false;
        let api = self.update_api();
        let live = self.live().unwrap_or_default();
        let now = self.now;
        let record = match result {
            Ok(value) => value.get("run").and_then(Claim::from_record),
            Err(RequestError::Disconnected { .. }) => return Vec::new(),
            Err(error) => {
                self.update.status_error = Some(format!("{RUNS_GET}: {error}"));
                return Vec::new();
            }
        };
        let Some(run) = &mut self.update.run else {
            return Vec::new();
        };
        let Some(record) = record else {
            run.warning = Some(format!("{RUNS_GET}: the gateway knows no such run"));
            return Vec::new();
        };
        let was_done = run.stage.is_done();
        judge_record(run, api, record.clone(), &live, now);
        self.update.record = Some(record);
        if !was_done && run.stage.is_done() {
            let mut commands = self.request_history_if_shown();
            commands.extend(self.request_update_status());
            return commands;
        }
        Vec::new()
    }

    pub(super) fn on_update_check(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.update.check = Some(
            result
                .map_err(|e| e.to_string())
                .and_then(|v| super::decode::<UpdateCheckResult>(Method::UpdateCheck, v)),
        );
        self.request_status(true)
    }
}
