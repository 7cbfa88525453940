//! The console against OpenClaw gateways, from the payloads real ones sent
//! (`fixtures/openclaw/`): what each screen offers and shows, and both
//! update generations followed to the process that runs afterwards.
//! Reducer in, whole screens out (80×24 and 120×40 snapshots).

mod common;
mod openclaw_fixtures;

use std::time::{Duration, Instant};

use common::{key, press, response};
use crossterm::event::KeyCode;
use molt_console::app::{App, Command, Event, Preview, RunStage};
use molt_console::client::{CloseInfo, ClosedBy, GatewayEvent};
use molt_console::net::{NetCommand, NetEvent, Outage, Purpose};
use molt_console::peer::{Hello, RunChanged};
use molt_console::ui;
use molt_protocol::Method;
use molt_protocol::ids::RunId;
use openclaw_fixtures::{fixture, hello};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};

const URL: &str = "ws://127.0.0.1:24000";
const RUN: &str = "97f96331-749d-4ec2-bc1a-8d846fd9ee45";

fn draw(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(app, frame)).unwrap();
    terminal.backend().to_string()
}

fn snap(name: &str, app: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), draw(app, 120, 40));
}

fn connected(hello: Hello, outage: Option<Outage>) -> Event {
    Event::Net(NetEvent::Connected {
        hello: Box::new(hello),
        handoff_gap: outage.map(|o| o.gap),
        outage,
    })
}

/// Connected to the gateway of `version`, its `status` answered.
fn app_on(version: &str, base: Instant) -> App {
    let mut app = App::new(URL, true, base);
    app.handle(connected(hello(&format!("{version}-hello-ok")), None));
    app.handle(response(
        Purpose::Status,
        fixture(&format!("{version}-status")),
    ));
    app
}

/// The requests among `commands`: (purpose, method name, params).
fn requests(commands: &[Command]) -> Vec<(Purpose, String, Option<Value>)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Net(NetCommand::Request {
                purpose,
                method,
                params,
            }) => Some((*purpose, method.as_str().to_owned(), params.clone())),
            Command::Net(NetCommand::Call {
                purpose,
                method,
                params,
            }) => Some((*purpose, method.clone(), params.clone())),
            _ => None,
        })
        .collect()
}

fn find(commands: &[Command], purpose: Purpose) -> Option<(String, Option<Value>)> {
    requests(commands)
        .into_iter()
        .find(|(p, ..)| *p == purpose)
        .map(|(_, m, params)| (m, params))
}

fn stage(app: &App) -> RunStage {
    app.update.run.as_ref().expect("a run").stage.clone()
}

fn lines_with(screen: &str, needle: &str) -> usize {
    screen.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn overview_of_each_generation() {
    let base = Instant::now();
    let old = app_on("2026.4.26", base);
    snap("openclaw_2026_4_overview", &old);
    let screen = draw(&old, 120, 40);
    assert!(
        screen.contains("openclaw 2026.4.26  protocol 3"),
        "{screen}"
    );
    assert!(screen.contains("pid          unknown, up 15s"), "{screen}");
    let new = app_on("2026.9.6", base);
    snap("openclaw_2026_9_overview", &new);
    let screen = draw(&new, 120, 40);
    assert!(
        screen.contains("boot id      d04d1335-9ec9-4405-88ff-65f26ab9e5ff"),
        "{screen}"
    );
    assert!(screen.contains("pid          5303"), "{screen}");
}

#[test]
fn the_2026_4_update_is_followed_to_the_process_that_runs() {
    let base = Instant::now();
    let mut app = app_on("2026.4.26", base);
    // No dry run: OpenClaw takes none and resolves the target itself.
    let commands = app.handle(key('u'));
    assert_eq!(find(&commands, Purpose::UpdatePreview), None);
    let dialog = app.update.dialog.as_ref().unwrap();
    assert_eq!(
        dialog.preview,
        Preview::Unplanned {
            latest: Some("2026.9.6".into())
        }
    );
    app.handle(key('t'));
    assert!(
        app.update
            .dialog
            .as_ref()
            .unwrap()
            .refusal
            .as_deref()
            .unwrap()
            .contains("update channel")
    );
    snap("openclaw_2026_4_update_dialog", &app);
    app.handle(press(KeyCode::Right));
    let commands = app.handle(press(KeyCode::Enter));
    // Only what 2026.4.x's closed UpdateRunParams takes.
    assert_eq!(
        find(&commands, Purpose::UpdateRun),
        Some(("update.run".into(), Some(json!({}))))
    );
    app.set_now(base + Duration::from_secs(44));
    app.handle(response(
        Purpose::UpdateRun,
        fixture("2026.4.26-update-run"),
    ));
    assert_eq!(stage(&app), RunStage::Restarting);
    app.handle(Event::Net(NetEvent::Gateway(GatewayEvent::Shutdown(
        molt_protocol::event::Shutdown {
            reason: "gateway restarting".into(),
            restart_expected_ms: Some(1500),
        },
    ))));
    app.handle(Event::Net(NetEvent::Closed(CloseInfo::new(
        1012,
        "service restart",
        ClosedBy::Server,
    ))));
    assert_eq!(stage(&app), RunStage::Reconnecting);

    // Measured: dark for about two minutes, then the *same old code* back.
    app.set_now(base + Duration::from_secs(170));
    let outage = Outage {
        gap: Duration::from_millis(124_100),
        dark: Some(Duration::from_millis(123_700)),
        refused: 118,
        attempts: 121,
        precision: Duration::from_secs(1),
    };
    let commands = app.handle(connected(hello("2026.4.26-hello-ok"), Some(outage)));
    assert_eq!(stage(&app), RunStage::Verifying);
    assert_eq!(
        find(&commands, Purpose::UpdateStatus),
        Some(("update.status".into(), Some(json!({}))))
    );
    app.handle(response(Purpose::Status, fixture("2026.4.26-status")));
    app.handle(response(
        Purpose::UpdateStatus,
        fixture("2026.4.26-update-status-after-update"),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Mismatch {
            claimed: "2026.9.6".into(),
            running: "2026.4.26".into()
        }
    );
    assert!(!app.update.busy());
    snap("openclaw_2026_4_update_mismatch", &app);
    let screen = draw(&app, 120, 40);
    for line in [
        "state       ✗ not in effect: install says 2026.9.6, process runs 2026.4.26",
        "claims      sentinel ok: 2026.4.26 → 2026.9.6",
        "live        2026.4.26 (hello-ok), 2026.4.26 (status), pid not reported",
        "verdict     MISMATCH: install says 2026.9.6, process runs 2026.4.26",
        "port dark   123.7 s (118 of 121 reconnect attempts refused; ±1000 ms)",
        "process     not reported by this gateway (no boot id, no pid)",
    ] {
        assert_eq!(lines_with(&screen, line), 1, "{line}\n{screen}");
    }
    assert_eq!(lines_with(&screen, "global update"), 1, "{screen}");
}

/// A 2026.9.x process after its restart (new boot id and version).
fn successor_2026_9(version: &str, build: &str) -> Hello {
    let mut payload = fixture("2026.9.6-hello-ok");
    payload["server"]["version"] = json!(version);
    payload["server"]["buildId"] = json!(build);
    payload["server"]["bootId"] = json!("6a1f0c2e-5d0b-4c43-9d77-2f1e3c9b8a10");
    Hello::from_payload(payload).unwrap()
}

fn record(status: &str, phase: &str, after: &str, build: &str) -> Value {
    let mut run = fixture("2026.9.6-update-runs-get")["run"].clone();
    run["status"] = json!(status);
    run["phase"] = json!(phase);
    run["reason"] = Value::Null;
    run["after"] = json!({"version": after, "buildId": build});
    run["target"]["version"] = json!(after);
    json!({ "run": run })
}

/// u, Update, the 2026.9.x handoff answer and the updater's first phases.
fn run_2026_9(base: Instant) -> App {
    let mut app = app_on("2026.9.6", base);
    app.handle(key('u'));
    app.handle(press(KeyCode::Right));
    app.handle(press(KeyCode::Enter));
    let commands = app.handle(response(
        Purpose::UpdateRun,
        fixture("2026.9.6-update-run-handoff-started"),
    ));
    assert_eq!(
        find(&commands, Purpose::RunRecord),
        Some(("update.runs.get".into(), Some(json!({"runId": RUN}))))
    );
    assert_eq!(stage(&app), RunStage::Running);
    for phase in ["staging", "validating", "activating"] {
        app.handle(Event::Net(NetEvent::Gateway(
            GatewayEvent::UpdateRunChanged(RunChanged {
                run_id: RunId::from(RUN),
                phase: Some(phase.into()),
                status: Some("running".into()),
            }),
        )));
    }
    assert_eq!(
        app.update.run.as_ref().unwrap().phase.as_deref(),
        Some("activating")
    );
    // Polled each tick while it runs.
    app.set_now(base + Duration::from_secs(30));
    app.handle(response(
        Purpose::RunRecord,
        record("running", "activating", "2026.9.7", "2026.9.7-release-1"),
    ));
    let commands = app.handle(Event::Tick);
    assert!(find(&commands, Purpose::RunRecord).is_some());
    app.handle(Event::Net(NetEvent::Response {
        purpose: Purpose::RunRecord,
        result: Err(molt_console::client::RequestError::Disconnected { close: None }),
    }));
    app.handle(Event::Net(NetEvent::Closed(CloseInfo::new(
        1012,
        "service restart",
        ClosedBy::Server,
    ))));
    app
}

fn outage() -> Outage {
    Outage {
        gap: Duration::from_millis(6_400),
        dark: Some(Duration::from_millis(5_950)),
        refused: 40,
        attempts: 43,
        precision: Duration::from_millis(50),
    }
}

#[test]
fn the_2026_9_run_is_followed_through_its_record_to_the_new_process() {
    let base = Instant::now();
    let mut app = run_2026_9(base);
    app.set_now(base + Duration::from_secs(60));
    let successor = successor_2026_9("2026.9.7", "2026.9.7-release-1");
    let commands = app.handle(connected(successor, Some(outage())));
    assert_eq!(
        find(&commands, Purpose::RunRecord),
        Some(("update.runs.get".into(), Some(json!({"runId": RUN}))))
    );
    let mut status = fixture("2026.9.6-status");
    status["runtimeVersion"] = json!("2026.9.7");
    app.handle(response(Purpose::Status, status));
    app.handle(response(
        Purpose::RunRecord,
        record("succeeded", "finished", "2026.9.7", "2026.9.7-release-1"),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Verified {
            version: "2026.9.7".into(),
            pid: Some(5303)
        }
    );
    snap("openclaw_2026_9_update_verified", &app);
    let screen = draw(&app, 120, 40);
    for line in [
        "✓ verified: v2026.9.7 runs as pid 5303",
        "process     new boot id 6a1f0c2e-5d0b-4c43-9d77-2f1e3c9b8a10 (was d04d1335-9ec9-4405-88ff-65f26ab9e5ff)",
        "port dark   5950 ms (40 of 43 reconnect attempts refused; ±50 ms)",
    ] {
        assert_eq!(lines_with(&screen, line), 1, "{line}\n{screen}");
    }
    // The record's steps, each once, although it was read three times.
    assert_eq!(lines_with(&screen, " staging "), 1, "{screen}");
    assert_eq!(lines_with(&screen, " target-resolution "), 1, "{screen}");
}

/// Scripted: the record claims 2026.9.7, the process that came back runs
/// 2026.9.6. The console must not call that a success.
#[test]
fn a_2026_9_record_claiming_more_than_runs_is_a_mismatch() {
    let base = Instant::now();
    let mut app = run_2026_9(base);
    let successor = successor_2026_9(
        "2026.9.6",
        "2026.9.6-release-eb377ac59e6c-2026-09-23T16-33-12.144Z",
    );
    app.handle(connected(successor, Some(outage())));
    app.handle(response(
        Purpose::RunRecord,
        record("succeeded", "finished", "2026.9.7", "2026.9.7-release-1"),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Mismatch {
            claimed: "2026.9.7".into(),
            running: "2026.9.6".into()
        }
    );
    snap("openclaw_2026_9_update_mismatch", &app);
}

#[test]
fn a_handoff_the_gateway_cannot_make_is_shown_with_its_advice() {
    let base = Instant::now();
    let mut app = app_on("2026.9.6", base);
    app.handle(key('u'));
    app.handle(press(KeyCode::Right));
    app.handle(press(KeyCode::Enter));
    app.handle(response(
        Purpose::UpdateRun,
        fixture("2026.9.5-update-run-handoff-unavailable"),
    ));
    assert_eq!(
        stage(&app),
        RunStage::Skipped {
            reason: "managed-service-handoff-unavailable".into()
        }
    );
    snap("openclaw_update_handoff_unavailable", &app);
    let screen = draw(&app, 120, 40);
    assert!(
        screen.contains("openclaw update --yes --timeout 900"),
        "{screen}"
    );
}

#[test]
fn auto_update_and_the_kill_switch_on_openclaw() {
    let base = Instant::now();
    let mut app = app_on("2026.9.6", base);
    let commands = app.handle(key('4'));
    assert_eq!(
        find(&commands, Purpose::ConfigGet).map(|(m, _)| m),
        Some("config.get".into())
    );
    // Configured on, but the gateway's schedule applies nothing: something
    // in its environment blocks it.
    let mut got = fixture("2026.4.26-config-get");
    got["config"] = json!({"update": {"auto": {"enabled": true}, "channel": "stable"}});
    got["hash"] = json!("hmac-sha256:v1:abc");
    app.handle(response(Purpose::ConfigGet, got));
    snap("openclaw_config", &app);
    let screen = draw(&app, 120, 40);
    assert!(screen.contains("something blocks them"), "{screen}");
    assert!(
        screen.contains("(OPENCLAW_NO_AUTO_UPDATE, update.checkOnStart false"),
        "{screen}"
    );

    // The kill switch cannot be set from here: Enter says where and how.
    for _ in 0..3 {
        app.handle(key('j'));
    }
    let commands = app.handle(press(KeyCode::Enter));
    assert!(requests(&commands).is_empty());
    let notice = &app.notice.as_ref().unwrap().text;
    assert!(notice.contains("OPENCLAW_NO_AUTO_UPDATE=1"), "{notice}");
    assert!(notice.contains("/home/op/.openclaw/.env"), "{notice}");
    // Toggling auto-update is a config.patch against the hash read.
    for _ in 0..3 {
        app.handle(key('k'));
    }
    let commands = app.handle(press(KeyCode::Enter));
    assert_eq!(
        find(&commands, Purpose::ConfigPatch),
        Some((
            "config.patch".into(),
            Some(json!({
                "raw": "{\"update\":{\"auto\":{\"enabled\":false}}}",
                "baseHash": "hmac-sha256:v1:abc"
            }))
        ))
    );
    // OpenClaw answers in its own shape; the console reads the config again.
    let commands = app.handle(response(Purpose::ConfigPatch, json!({"ok": true})));
    assert!(find(&commands, Purpose::ConfigGet).is_some());
}

#[test]
fn history_and_logs_follow_what_the_gateway_serves() {
    let base = Instant::now();
    let mut old = app_on("2026.4.26", base);
    assert!(requests(&old.handle(key('3'))).is_empty());
    let screen = draw(&old, 80, 24);
    assert!(screen.contains("keeps no update history"), "{screen}");

    let mut new = app_on("2026.9.6", base);
    let commands = new.handle(key('3'));
    assert_eq!(
        find(&commands, Purpose::RunsList),
        Some(("update.runs.list".into(), Some(json!({"limit": 50}))))
    );
    new.handle(response(
        Purpose::RunsList,
        json!({"runs": [fixture("2026.9.6-update-runs-get")["run"]]}),
    ));
    snap("openclaw_2026_9_history", &new);

    // No logs.line events: the tail is polled from its cursor.
    let commands = new.handle(key('5'));
    assert_eq!(
        find(&commands, Purpose::LogsTail),
        Some((
            Method::LogsTail.as_str().into(),
            Some(json!({"limit": 500}))
        ))
    );
    new.handle(response(
        Purpose::LogsTail,
        json!({"file": "/tmp/openclaw/openclaw.log", "cursor": 900, "size": 900, "lines": ["one", "two"]}),
    ));
    let commands = new.handle(Event::Tick);
    assert_eq!(
        find(&commands, Purpose::LogsTail),
        Some((
            Method::LogsTail.as_str().into(),
            Some(json!({"cursor": 900, "limit": 500}))
        ))
    );
    new.handle(response(
        Purpose::LogsTail,
        json!({"file": "/tmp/openclaw/openclaw.log", "cursor": 950, "size": 950, "lines": ["three"]}),
    ));
    assert_eq!(
        new.logs
            .lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
}

#[test]
fn refresh_and_hold_use_only_what_the_gateway_serves() {
    let base = Instant::now();
    let mut old = app_on("2026.4.26", base);
    old.handle(key('2'));
    let commands = old.handle(key('r'));
    assert_eq!(
        find(&commands, Purpose::UpdateCheck),
        None,
        "OpenClaw serves no update.check"
    );
    assert!(requests(&old.handle(key('p'))).is_empty());
    assert!(
        old.notice
            .as_ref()
            .unwrap()
            .text
            .contains("does not serve update.hold")
    );

    let mut new = app_on("2026.9.6", base);
    new.handle(key('2'));
    new.handle(response(
        Purpose::UpdateStatus,
        fixture("2026.9.6-update-status"),
    ));
    let commands = new.handle(key('p'));
    assert_eq!(
        find(&commands, Purpose::Hold),
        Some(("update.hold".into(), Some(json!({}))))
    );
    let commands = new.handle(response(Purpose::Hold, json!({"ok": false})));
    assert!(find(&commands, Purpose::UpdateStatus).is_some());
    assert!(
        new.notice
            .as_ref()
            .unwrap()
            .text
            .contains("nothing to hold")
    );
}

#[test]
fn openclaws_own_audit_list_is_not_read_as_moltds() {
    // OpenClaw 2026.9 lists a method named audit.list, of another shape.
    let mut app = app_on("2026.9.6", Instant::now());
    assert!(requests(&app.handle(key('a'))).is_empty());
    let screen = draw(&app, 80, 24);
    assert!(
        screen.contains("serves no audit trail the console reads"),
        "{screen}"
    );
}
