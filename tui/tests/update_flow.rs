//! Reducer tests of the Update screen: the dialog, the run, the restart
//! that follows and the verdict. Events in, state and commands out.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crossterm::event::KeyCode;
use molt_console::app::{App, Choice, Command, ConnState, Event, Preview, RunStage, Screen};
use molt_console::client::RequestError;
use molt_console::net::{NetCommand, NetEvent, Purpose};
use molt_protocol::ErrorShape;
use molt_protocol::Method;
use molt_protocol::update::{RunPhase, UpdateStatus};
use serde_json::{Value, json};

/// The requests among `commands`, as (purpose, method, params).
fn requests(commands: &[Command]) -> Vec<(Purpose, Method, Option<Value>)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Net(NetCommand::Request {
                purpose,
                method,
                params,
            }) => Some((*purpose, *method, params.clone())),
            _ => None,
        })
        .collect()
}

fn find(commands: &[Command], purpose: Purpose) -> Option<Option<Value>> {
    requests(commands)
        .into_iter()
        .find(|(p, ..)| *p == purpose)
        .map(|(.., params)| params)
}

fn stage(app: &App) -> RunStage {
    app.update.run.as_ref().expect("a run").stage.clone()
}

/// Connected, `u` pressed, the dry run answered with `after`.
fn dialog_ready(base: Instant, after: &str) -> App {
    let mut app = connected_app(idle_status(), base);
    app.handle(key('u'));
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    app.handle(response(Purpose::UpdatePreview, dry_run(after)));
    app
}

/// A dialog confirmed: `update.run` sent.
fn started(base: Instant) -> (App, Vec<Command>) {
    let mut app = dialog_ready(base, "0.2.0");
    app.handle(press(KeyCode::Right));
    let commands = app.handle(press(KeyCode::Enter));
    (app, commands)
}

#[test]
fn u_opens_the_dialog_with_cancel_selected_and_a_dry_run() {
    let mut app = connected_app(idle_status(), Instant::now());
    let commands = app.handle(key('u'));
    assert_eq!(app.screen, Screen::Update);
    let dialog = app.update.dialog.as_ref().expect("dialog open");
    assert_eq!(dialog.choice, Choice::Cancel);
    assert_eq!(dialog.preview, Preview::Resolving);
    assert_eq!(dialog.current.as_deref(), Some("0.1.0"));
    assert_eq!(
        find(&commands, Purpose::UpdatePreview),
        Some(Some(json!({"dryRun": true})))
    );
    // Enter on the default choice cancels: nothing runs.
    app.handle(response(Purpose::UpdatePreview, dry_run("0.2.0")));
    let dialog = app.update.dialog.as_ref().unwrap();
    assert_eq!(dialog.target(), Some("0.2.0"));
    // moltd answers a dry run `skipped` with its plan in the reason.
    assert!(matches!(&dialog.preview, Preview::Ready(plan) if plan.planned));
    assert_eq!(dialog.blocker(), None);
    let commands = app.handle(press(KeyCode::Enter));
    assert!(requests(&commands).is_empty());
    assert!(app.update.dialog.is_none());
    assert!(app.update.run.is_none());
}

#[test]
fn target_and_note_are_sent_with_the_run() {
    let base = Instant::now();
    let mut app = dialog_ready(base, "0.2.0");
    app.handle(key('t'));
    // A text field takes every key, q included.
    assert!(type_text(&mut app, "0.0.9").is_empty());
    assert!(!app.should_quit());
    let commands = app.handle(press(KeyCode::Enter));
    assert_eq!(
        find(&commands, Purpose::UpdatePreview),
        Some(Some(json!({"tag": "0.0.9", "dryRun": true}))),
        "a new target is resolved again"
    );
    app.handle(response(Purpose::UpdatePreview, dry_run("0.0.9")));
    app.handle(key('n'));
    type_text(&mut app, "roll back quickly");
    app.handle(press(KeyCode::Enter));
    let dialog = app.update.dialog.as_ref().unwrap();
    assert_eq!(
        (dialog.tag.as_str(), dialog.note.as_str()),
        ("0.0.9", "roll back quickly")
    );
    assert_eq!(
        dialog.choice,
        Choice::Cancel,
        "a new target selects Cancel again"
    );

    app.handle(key('l'));
    let commands = app.handle(press(KeyCode::Enter));
    assert_eq!(
        find(&commands, Purpose::UpdateRun),
        Some(Some(json!({"note": "roll back quickly", "tag": "0.0.9"})))
    );
    assert!(app.update.dialog.is_none());
    let run = app.update.run.as_ref().unwrap();
    assert_eq!(run.stage, RunStage::Starting);
    assert_eq!(
        (run.from_version.as_deref(), run.target.as_deref()),
        (Some("0.1.0"), Some("0.0.9"))
    );
}

#[test]
fn bad_targets_are_refused_in_the_field_and_esc_discards() {
    let mut app = dialog_ready(Instant::now(), "0.2.0");
    app.handle(key('t'));
    type_text(&mut app, "1;rm -rf");
    let commands = app.handle(press(KeyCode::Enter));
    assert!(requests(&commands).is_empty());
    let input = app.text_input().expect("still editing");
    assert!(
        input.error.as_deref().unwrap().contains("bad target"),
        "{input:?}"
    );
    app.handle(press(KeyCode::Esc));
    assert!(app.text_input().is_none());
    assert_eq!(app.update.dialog.as_ref().unwrap().tag, "");
    // Esc again closes the dialog.
    app.handle(press(KeyCode::Esc));
    assert!(app.update.dialog.is_none());
}

#[test]
fn up_to_date_or_unserved_blocks_the_update_button() {
    let mut app = connected_app(idle_status(), Instant::now());
    app.handle(key('u'));
    app.handle(response(Purpose::UpdatePreview, up_to_date()));
    app.handle(key('l'));
    let commands = app.handle(press(KeyCode::Enter));
    assert!(find(&commands, Purpose::UpdateRun).is_none());
    let dialog = app.update.dialog.as_ref().unwrap();
    assert!(dialog.refusal.as_deref().unwrap().contains("up-to-date"));

    // Today's moltd does not serve update.run: its error is shown.
    let mut app = connected_app(idle_status(), Instant::now());
    app.handle(key('u'));
    app.handle(gateway_error(
        Purpose::UpdatePreview,
        ErrorShape::invalid_request("method update.run is not served by this gateway"),
    ));
    app.handle(key('l'));
    assert!(find(&app.handle(press(KeyCode::Enter)), Purpose::UpdateRun).is_none());
    assert!(matches!(
        &app.update.dialog.as_ref().unwrap().preview,
        Preview::Failed(p) if p.contains("not served")
    ));
}

#[test]
fn steps_restart_handoff_and_verification() {
    let base = Instant::now();
    let (mut app, commands) = started(base);
    assert!(find(&commands, Purpose::UpdateRun).is_some());

    app.set_now(base + Duration::from_millis(100));
    app.handle(progress(
        RunPhase::Running,
        Some(("resolve", "started", None)),
    ));
    assert_eq!(stage(&app), RunStage::Running);
    assert_eq!(
        app.update
            .run
            .as_ref()
            .unwrap()
            .run_id
            .as_ref()
            .map(|r| r.as_str()),
        Some("run-8"),
        "the first event names the run"
    );
    app.handle(progress(
        RunPhase::Running,
        Some(("resolve", "finished", Some(0))),
    ));
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "started", None)),
    ));
    let steps = &app.update.run.as_ref().unwrap().steps;
    assert_eq!(steps.len(), 2);
    assert!(steps[0].finished() && !steps[0].failed());
    assert!(!steps[1].finished());
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "finished", Some(0))),
    ));
    app.handle(progress(RunPhase::Restarting, None));
    assert_eq!(stage(&app), RunStage::Restarting);

    app.handle(response(
        Purpose::UpdateRun,
        run_result(
            UpdateStatus::Ok,
            "0.2.0",
            vec![step_record("resolve", 0, ""), step_record("install", 0, "")],
        ),
    ));
    assert_eq!(stage(&app), RunStage::Restarting);
    let run = app.update.run.as_ref().unwrap();
    assert_eq!(run.steps.len(), 2, "records join the live steps");
    assert_eq!(run.restart.as_ref().unwrap().delay_ms, Some(0));

    // The old process closes with 1012: the handoff starts.
    app.handle(closed(1012, "update.run"));
    assert_eq!(stage(&app), RunStage::Reconnecting);
    assert!(matches!(app.conn, ConnState::HandingOff { .. }));
    assert_eq!(
        app.handoff.as_ref().unwrap().describe(),
        "handing off: pid 4343 v0.1.0 → waiting for the successor"
    );

    let commands = app.handle(successor_connected("0.2.0", 37));
    assert_eq!(stage(&app), RunStage::Verifying);
    assert_eq!(
        find(&commands, Purpose::UpdateStatus),
        Some(Some(json!({"runId": "run-8"})))
    );
    assert_eq!(
        app.handoff.as_ref().unwrap().describe(),
        "handed off: pid 4343 v0.1.0 → pid 5151 v0.2.0, gap 37 ms"
    );

    app.handle(verified_status("0.2.0"));
    assert_eq!(
        stage(&app),
        RunStage::Verified {
            version: "0.2.0".into(),
            pid: Some(5151)
        }
    );
    assert!(!app.update.busy());
}

#[test]
fn an_answer_lost_to_the_close_is_settled_by_update_status() {
    let base = Instant::now();
    let (mut app, _) = started(base);
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "started", None)),
    ));
    app.handle(closed(1012, "update.run"));
    app.handle(Event::Net(NetEvent::Response {
        purpose: Purpose::UpdateRun,
        result: Err(RequestError::Disconnected {
            close: Some(molt_console::client::CloseInfo::new(
                1012,
                "update.run",
                molt_console::client::ClosedBy::Server,
            )),
        }),
    }));
    assert_eq!(stage(&app), RunStage::Reconnecting);
    app.handle(successor_connected("0.2.0", 12));
    // No sentinel yet; the record says verified.
    let record = run_record("run-8", RunPhase::Verified, "0.1.0", "0.2.0");
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.2.0", None, Some(record)),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Verified {
            version: "0.2.0".into(),
            pid: Some(5151)
        }
    );
}

#[test]
fn a_server_error_mid_update_is_a_failure_then_the_record_tells_the_rest() {
    let base = Instant::now();
    let (mut app, _) = started(base);
    app.handle(progress(
        RunPhase::Running,
        Some(("stage", "started", None)),
    ));
    app.handle(progress(
        RunPhase::Running,
        Some(("stage", "finished", Some(0))),
    ));
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "started", None)),
    ));
    let commands = app.handle(gateway_error(
        Purpose::UpdateRun,
        ErrorShape::internal("install step lost its child process"),
    ));
    assert!(matches!(
        stage(&app),
        RunStage::Failed { reason, rolled_back: false } if reason.contains("INTERNAL: install step lost")
    ));
    assert_eq!(
        find(&commands, Purpose::UpdateStatus),
        Some(Some(json!({"runId": "run-8"}))),
        "the console asks what the gateway recorded"
    );
    let mut record = run_record("run-8", RunPhase::RolledBack, "0.1.0", "0.2.0");
    record.reason = Some("install-failed".into());
    record.steps = vec![step_record(
        "install",
        1,
        "npm error code E404\nnpm error 404 Not Found",
    )];
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, Some(record)),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Failed {
            reason: "install-failed".into(),
            rolled_back: true
        }
    );
    let run = app.update.run.as_ref().unwrap();
    let failing = run.failing_step().expect("the failing step");
    assert_eq!(failing.name, "install");
    assert!(
        failing
            .record
            .as_ref()
            .unwrap()
            .stderr_tail
            .contains("E404")
    );
}

#[test]
fn another_update_running_is_reported_not_hidden() {
    let (mut app, _) = started(Instant::now());
    app.handle(gateway_error(
        Purpose::UpdateRun,
        ErrorShape::unavailable(
            molt_protocol::error::UnavailableReason::UpdateInProgress,
            "update run-3 is in progress",
        ),
    ));
    assert!(matches!(
        stage(&app),
        RunStage::Failed { reason, .. } if reason.contains("UNAVAILABLE") && reason.contains("run-3")
    ));
}

#[test]
fn a_run_holding_the_install_is_followed_when_the_gateway_names_it() {
    let (mut app, _) = started(Instant::now());
    let commands = app.handle(gateway_error(
        Purpose::UpdateRun,
        ErrorShape::unavailable(
            molt_protocol::error::UnavailableReason::UpdateInProgress,
            "an update is in progress",
        )
        .with_details(json!({"reason": "update-in-progress", "runId": "run-3"})),
    ));
    let run = app.update.run.as_ref().unwrap();
    assert_eq!(run.stage, RunStage::Running);
    assert!(!run.ours);
    assert_eq!(run.run_id.as_ref().unwrap().as_str(), "run-3");
    assert!(
        run.warning
            .as_deref()
            .unwrap()
            .contains("following that run")
    );
    assert_eq!(
        find(&commands, Purpose::UpdateStatus),
        Some(Some(json!({"runId": "run-3"})))
    );
}

#[test]
fn a_failed_successor_rolls_back_while_the_old_process_keeps_serving() {
    let base = Instant::now();
    let (mut app, _) = started(base);
    app.handle(response(
        Purpose::UpdateRun,
        run_result(
            UpdateStatus::Ok,
            "0.2.0",
            vec![step_record("install", 0, "")],
        ),
    ));
    assert_eq!(stage(&app), RunStage::Restarting);
    // No close comes: the console asks for the verdict on its ticks.
    app.set_now(base + Duration::from_secs(1));
    let commands = app.handle(Event::Tick);
    assert_eq!(
        find(&commands, Purpose::UpdateStatus),
        Some(Some(json!({"runId": "run-8"})))
    );
    app.handle(response(
        Purpose::UpdateStatus,
        update_status(
            "0.1.0",
            Some(sentinel(UpdateStatus::Error, None, true)),
            None,
        ),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Failed {
            reason: "restart-unhealthy".into(),
            rolled_back: true
        }
    );
    // Settled: no more polling.
    app.set_now(base + Duration::from_secs(2));
    assert!(find(&app.handle(Event::Tick), Purpose::UpdateStatus).is_none());
}

#[test]
fn a_rolled_back_record_takes_the_answers_changes_away() {
    let base = Instant::now();
    let (mut app, _) = started(base);
    let mut answer = run_result(UpdateStatus::Ok, "0.2.0", Vec::new());
    answer["result"]["changelog"] = json!({"entries": [{"version": "0.2.0", "text": "- new"}]});
    app.handle(response(Purpose::UpdateRun, answer));
    let changelog = |app: &App| app.update.run.as_ref().unwrap().changelog.clone();
    let versions: Vec<String> = changelog(&app)
        .expect("the answer's changes")
        .entries
        .into_iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, ["0.2.0"]);
    // The record is the last word: rolled back, nothing changed.
    let mut record = run_record("run-8", RunPhase::RolledBack, "0.1.0", "0.2.0");
    record.reason = Some("restart-unhealthy".into());
    app.handle(response(
        Purpose::UpdateStatus,
        update_status(
            "0.1.0",
            Some(sentinel(UpdateStatus::Error, None, true)),
            Some(record),
        ),
    ));
    assert!(
        matches!(stage(&app), RunStage::Failed { .. }),
        "{:?}",
        stage(&app)
    );
    assert_eq!(changelog(&app), None);
}

#[test]
fn a_version_mismatch_is_not_a_success() {
    let (mut app, _) = started(Instant::now());
    app.handle(response(
        Purpose::UpdateRun,
        run_result(UpdateStatus::Ok, "0.2.0", Vec::new()),
    ));
    app.handle(closed(1012, "update.run"));
    app.handle(connected(idle_status()));
    app.handle(verified_status("0.1.0"));
    assert_eq!(
        stage(&app),
        RunStage::Mismatch {
            claimed: "0.2.0".into(),
            running: "0.1.0".into()
        }
    );
}

#[test]
fn a_failed_run_result_names_the_failing_step() {
    let (mut app, _) = started(Instant::now());
    app.handle(response(
        Purpose::UpdateRun,
        run_result(
            UpdateStatus::Error,
            "0.2.0",
            vec![
                step_record("stage", 0, ""),
                step_record("install", 1, "npm error E404"),
            ],
        ),
    ));
    assert!(matches!(stage(&app), RunStage::Failed { reason, .. } if reason == "install-failed"));
    assert_eq!(
        app.update
            .run
            .as_ref()
            .unwrap()
            .failing_step()
            .unwrap()
            .name,
        "install"
    );
}

#[test]
fn a_run_started_elsewhere_is_followed() {
    let mut app = connected_app(idle_status(), Instant::now());
    app.handle(progress(
        RunPhase::Running,
        Some(("resolve", "started", None)),
    ));
    let run = app.update.run.as_ref().expect("followed");
    assert!(!run.ours);
    assert_eq!(run.run_id.as_ref().unwrap().as_str(), "run-8");
    // Its update.run answer is not ours to read.
    app.handle(response(
        Purpose::UpdateRun,
        run_result(UpdateStatus::Error, "0.2.0", Vec::new()),
    ));
    assert_eq!(stage(&app), RunStage::Running);
    // u does not open a second run while one is going.
    app.handle(key('u'));
    assert!(app.update.dialog.is_none());
    assert!(
        app.notice
            .as_ref()
            .unwrap()
            .text
            .contains("already running")
    );
}

#[test]
fn refresh_on_the_update_screen_checks_the_registry() {
    let mut app = connected_app(idle_status(), Instant::now());
    app.handle(key('2'));
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    let commands = app.handle(key('r'));
    assert!(find(&commands, Purpose::UpdateCheck).is_some());
    assert!(find(&commands, Purpose::UpdateStatus).is_some());
    let check = json!({
        "updateAvailable": {"currentVersion": "0.1.0", "latestVersion": "0.2.0", "channel": "stable"},
        "currentVersion": "0.1.0", "latestVersion": "0.2.0", "channel": "stable",
        "checkedAt": GATEWAY_NOW
    });
    app.handle(response(Purpose::UpdateCheck, check));
    assert!(
        matches!(&app.update.check, Some(Ok(c)) if c.latest_version.as_deref() == Some("0.2.0"))
    );
}

#[test]
fn a_verdict_asked_while_a_status_is_in_flight_is_asked_again() {
    let mut app = connected_app(idle_status(), Instant::now());
    app.handle(key('u'));
    app.handle(response(Purpose::UpdatePreview, dry_run("0.2.0")));
    app.handle(key('l'));
    app.handle(press(KeyCode::Enter));
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "started", None)),
    ));
    // The screen's own update.status is still out; a failure needs another.
    let commands = app.handle(gateway_error(
        Purpose::UpdateRun,
        ErrorShape::internal("boom"),
    ));
    assert!(find(&commands, Purpose::UpdateStatus).is_none());
    let commands = app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    assert_eq!(
        find(&commands, Purpose::UpdateStatus),
        Some(Some(json!({"runId": "run-8"})))
    );
}

#[test]
fn the_dialog_without_a_connection_says_so() {
    let mut app = App::new(URL, true, Instant::now());
    let commands = app.handle(key('u'));
    assert!(requests(&commands).is_empty());
    assert!(matches!(
        &app.update.dialog.as_ref().unwrap().preview,
        Preview::Failed(p) if p.contains("not connected")
    ));
}
