//! Every screen rendered into `TestBackend` at 80x24 and 120x40 and
//! snapshotted. States come from fixed values and a fixed clock; the
//! filter below hides the one thing that is not ours to fix: the build's
//! own version in the header.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crossterm::event::KeyCode;
use molt_console::app::{App, Event};
use molt_console::net::Purpose;
use molt_console::ui;
use molt_protocol::event::LogsLine;
use molt_protocol::update::{RunPhase, UpdateStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

fn draw(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(app, frame)).unwrap();
    terminal.backend().to_string()
}

/// Snapshots `app` at both sizes under `name`.
fn snap(name: &str, app: &App) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        r"moltd \d+\.\d+\.\d+  protocol",
        "moltd [version]  protocol",
    );
    settings.bind(|| {
        insta::assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24));
        insta::assert_snapshot!(format!("{name}_120x40"), draw(app, 120, 40));
    });
}

fn update_app(base: Instant) -> App {
    let mut app = connected_app(status(), base);
    app.handle(key('2'));
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    app
}

#[test]
fn overview() {
    snap("overview", &connected_app(status(), Instant::now()));
}

#[test]
fn update_idle() {
    snap("update_idle", &update_app(Instant::now()));
}

#[test]
fn update_dialog() {
    let mut app = update_app(Instant::now());
    app.handle(key('u'));
    app.handle(response(Purpose::UpdatePreview, dry_run("0.2.0")));
    app.handle(key('n'));
    type_text(&mut app, "weekly patch");
    app.handle(press(KeyCode::Enter));
    snap("update_dialog", &app);
    app.handle(key('t'));
    type_text(&mut app, "0.1.9");
    snap("update_dialog_editing_target", &app);
}

#[test]
fn update_dialog_blocked() {
    let mut app = update_app(Instant::now());
    app.handle(key('u'));
    app.handle(gateway_error(
        Purpose::UpdatePreview,
        molt_protocol::ErrorShape::invalid_request(
            "method update.run is not served by this gateway",
        ),
    ));
    app.handle(key('l'));
    app.handle(press(KeyCode::Enter));
    snap("update_dialog_blocked", &app);
}

fn running(base: Instant) -> App {
    let mut app = update_app(base);
    app.handle(key('u'));
    app.handle(response(Purpose::UpdatePreview, dry_run("0.2.0")));
    app.handle(key('l'));
    app.handle(press(KeyCode::Enter));
    app.set_now(base + Duration::from_millis(300));
    app.handle(progress(
        RunPhase::Running,
        Some(("resolve", "started", None)),
    ));
    app.handle(progress(
        RunPhase::Running,
        Some(("resolve", "finished", Some(0))),
    ));
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
    app.set_now(base + Duration::from_secs(13));
    app.handle(Event::Tick);
    app
}

#[test]
fn update_running() {
    snap("update_running", &running(Instant::now()));
}

#[test]
fn update_verified_after_handoff() {
    let base = Instant::now();
    let mut app = running(base);
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "finished", Some(0))),
    ));
    app.handle(response(
        Purpose::UpdateRun,
        run_result(UpdateStatus::Ok, "0.2.0", Vec::new()),
    ));
    app.handle(closed(1012, "update.run"));
    snap("update_handing_off", &app);
    app.handle(successor_connected("0.2.0", 37));
    app.handle(verified_status("0.2.0"));
    app.notice = None;
    snap("update_verified", &app);
}

/// What 0.2.0's changelog says changed since 0.1.0: two releases, a
/// protocol change, a bullet long enough to wrap, a nested bullet.
fn changelog() -> serde_json::Value {
    json!({
        "entries": [
            {
                "version": "0.2.0",
                "date": "2026-12-04",
                "protocol": true,
                "text": "### Protocol\n- `update.status` runs carry `changelog`.\n\n\
                         ### Added\n- The Update screen shows what a verified update changed, \
                         newest release first, each bullet wrapped under its own text.\n\
                         - `molt update --json` prints the entries.\n  - With their dates.\n\n\
                         ### Fixed\n- A handoff no longer waits for an idle client."
            },
            {
                "version": "0.1.1",
                "date": "2026-11-30",
                "text": "### Fixed\n- Logs wrap under their message.\n- Config edits keep comments."
            }
        ]
    })
}

#[test]
fn update_verified_shows_what_changed() {
    let base = Instant::now();
    let mut app = running(base);
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "finished", Some(0))),
    ));
    let mut answer = run_result(UpdateStatus::Ok, "0.2.0", Vec::new());
    answer["result"]["changelog"] = changelog();
    app.handle(response(Purpose::UpdateRun, answer));
    app.handle(closed(1012, "update.run"));
    app.handle(successor_connected("0.2.0", 37));
    app.handle(verified_status("0.2.0"));
    app.notice = None;
    // 80x24 keeps the steps and says how much of the changes it cut.
    snap("update_verified_changes", &app);
}

#[test]
fn update_failed_and_rolled_back() {
    let base = Instant::now();
    let mut app = running(base);
    app.handle(progress(
        RunPhase::Running,
        Some(("install", "finished", Some(1))),
    ));
    app.handle(response(
        Purpose::UpdateRun,
        run_result(
            UpdateStatus::Error,
            "0.2.0",
            vec![
                step_record("resolve", 0, ""),
                step_record("stage", 0, ""),
                step_record(
                    "install",
                    1,
                    "npm error code E404\nnpm error 404 Not Found - GET http://127.0.0.1:4873/@molt%2fmoltd/-/moltd-0.2.0.tgz",
                ),
            ],
        ),
    ));
    let mut record = run_record("run-8", RunPhase::RolledBack, "0.1.0", "0.2.0");
    record.reason = Some("install-failed".into());
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, Some(record)),
    ));
    snap("update_failed", &app);
}

#[test]
fn history() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('h'));
    let mut failed = run_record("run-9", RunPhase::RolledBack, "0.1.0", "0.2.0");
    failed.reason = Some("restart-unhealthy".into());
    failed.note = Some("weekly patch".into());
    failed.steps = vec![step_record("install", 0, ""), step_record("verify", 1, "")];
    failed.finished_at = Some(GATEWAY_NOW - 60_000);
    failed.requested_at = GATEWAY_NOW - 75_000;
    let mut auto = run_record("run-8", RunPhase::Skipped, "0.1.0", "0.1.0");
    auto.trigger = molt_protocol::update::RunTrigger::Auto;
    auto.reason = Some("up-to-date".into());
    let verified = run_record("run-7", RunPhase::Verified, "0.0.9", "0.1.0");
    app.handle(response(
        Purpose::History,
        json!({"runs": [failed, auto, verified]}),
    ));
    snap("history", &app);
}

/// A version that died at start and was put back, as a real moltd
/// reports it (recorded): the successor's own words, why, what runs now.
#[test]
fn history_of_a_version_that_died_at_start() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('h'));
    app.handle(response(
        Purpose::History,
        recorded_pinned("update-history-after-rollback"),
    ));
    snap("history_died_at_start", &app);
}

#[test]
fn overview_after_a_version_that_died_at_start() {
    let status = serde_json::from_value(recorded_pinned("status-after-rollback")).unwrap();
    let mut app = connected_app(status, Instant::now());
    snap("overview_died_at_start", &app);
    // Taller than 80x24: Down scrolls to the latest run, and no further.
    draw(&app, 80, 24);
    for _ in 0..10 {
        app.handle(press(KeyCode::Down));
    }
    insta::assert_snapshot!("overview_died_at_start_scrolled_80x24", draw(&app, 80, 24));
    for _ in 0..10 {
        app.handle(press(KeyCode::Up));
    }
    assert_eq!(
        draw(&app, 80, 24).lines().nth(2),
        draw(
            &connected_app(
                serde_json::from_value(recorded_pinned("status-after-rollback")).unwrap(),
                Instant::now(),
            ),
            80,
            24
        )
        .lines()
        .nth(2),
        "Up scrolls back to the top"
    );
}

#[test]
fn history_empty_and_unserved() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('h'));
    app.handle(gateway_error(
        Purpose::History,
        molt_protocol::ErrorShape::invalid_request(
            "method update.history is not served by this gateway",
        ),
    ));
    snap("history_unserved", &app);
}

#[test]
fn history_audit_trail() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('a'));
    app.handle(response(Purpose::Audit, audit_page()));
    snap("history_audit", &app);
    // The failed run selected: its reason wraps under its own column.
    app.handle(key('j'));
    snap("history_audit_failed_run", &app);
    // Scrolled to the end: the list follows the selection.
    for _ in 0..7 {
        app.handle(key('j'));
    }
    snap("history_audit_scrolled", &app);
}

#[test]
fn config() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('c'));
    app.handle(response(
        Purpose::ConfigGet,
        config_value("3f9a0c1b2d4e5f60718293a4"),
    ));
    app.handle(key('j'));
    snap("config", &app);
    for _ in 0..3 {
        app.handle(key('j'));
    }
    app.handle(press(KeyCode::Enter));
    type_text(&mut app, "x");
    app.handle(press(KeyCode::Enter));
    snap("config_editing_timeout", &app);
}

/// A day's end and the next day's start as moltd writes them: most lines
/// short, a few long, every level, the date changing once.
fn log_lines() -> Vec<String> {
    let mut lines = vec![
        "2026-11-23T23:59:58.120000Z  INFO molt_daemon::server: listening addr=127.0.0.1:18789".to_owned(),
        "2026-11-24T00:00:01.000000Z DEBUG molt_daemon::autoupdate::driver: auto-update check channel=stable current=0.1.0".to_owned(),
        "2026-11-24T00:00:02.000000Z  INFO molt_daemon::autoupdate::driver: auto-update found 0.3.0 on stable; it installs after the quiet window of 5m".to_owned(),
        "2026-11-24T00:05:02.000000Z  WARN molt_daemon::autoupdate::driver: auto-update deferred: 2 requests and 1 update step pending, trying again in 5m reason=pending-work".to_owned(),
        "2026-11-24T00:10:04.000000Z ERROR molt_daemon::restart::handoff: successor exited before it was ready (exit status: 1) stderr=\"dies at start\" version=0.3.0".to_owned(),
        "2026-11-24T00:10:04.100000Z  WARN molt_daemon::update::swap: swap reverted; 0.1.0 keeps serving run=run-9".to_owned(),
    ];
    lines.extend((0..12).map(|i| {
        format!("2026-11-24T00:11:{i:02}.000000Z  INFO molt_daemon::server: request done method=status n={i}")
    }));
    lines
}

fn logs_app() -> App {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('l'));
    app.handle(response(
        Purpose::LogsTail,
        json!({"file": "/home/op/.openclaw/logs/moltd.log.2026-11-24", "lines": log_lines(), "following": true}),
    ));
    app
}

#[test]
fn logs() {
    let mut app = logs_app();
    snap("logs_following", &app);
    app.handle(key('k'));
    app.handle(key('k'));
    app.handle(gateway_event(molt_console::client::GatewayEvent::LogsLine(
        LogsLine { line: "new".into() },
    )));
    snap("logs_paused", &app);
}

#[test]
fn logs_wrapped_filtered_and_searched() {
    let mut app = logs_app();
    app.handle(key('f'));
    app.handle(key('f'));
    app.handle(key('f'));
    snap("logs_warn_and_above_cut", &app);
    app.handle(press(KeyCode::Right));
    snap("logs_scrolled_sideways", &app);
    app.handle(key('w'));
    snap("logs_warn_and_above_wrapped", &app);
    for _ in 0..3 {
        app.handle(key('f'));
    }
    app.handle(key('/'));
    type_text(&mut app, "Quiet window");
    snap("logs_search_typing", &app);
    app.handle(press(KeyCode::Enter));
    snap("logs_search_found", &app);
    // The match is drawn in the search colour, and only the match.
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::render(&app, frame)).unwrap();
    let found: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .filter(|cell| cell.bg == ratatui::style::Color::Yellow)
        .map(|cell| cell.symbol())
        .collect();
    assert_eq!(found, "quiet window");
    // n: no older match; N: none newer either.
    app.handle(key('n'));
    app.handle(key('N'));
    assert_eq!(
        app.logs.search_note.as_deref(),
        Some("no newer match for \"quiet window\"")
    );
}

#[test]
fn logs_without_color_name_the_level() {
    let mut app = logs_app();
    app.color = false;
    app.handle(key('w'));
    snap("logs_no_color_wrapped", &app);
}

#[test]
fn help() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('?'));
    snap("help", &app);
}

#[test]
fn every_screen_fits_a_tiny_terminal_without_panicking() {
    let mut app = running(Instant::now());
    for screen in ['o', 'h', 'a', 'c', 'l', '2', '?'] {
        app.handle(key(screen));
        for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 24)] {
            draw(&app, w, h);
        }
    }
}

#[test]
fn no_color_means_no_colors_on_any_screen() {
    let mut app = running(Instant::now());
    app.color = false;
    for screen in ['o', '2', 'h', 'a', 'c', 'l', '?'] {
        app.handle(key(screen));
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|frame| ui::render(&app, frame)).unwrap();
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, ratatui::style::Color::Reset, "{screen}: {cell:?}");
            assert_eq!(cell.bg, ratatui::style::Color::Reset, "{screen}: {cell:?}");
        }
    }
}
