//! The whole screen rendered into ratatui's `TestBackend` and snapshotted
//! at 80x24 (the SSH minimum) and 120x40, at named moments. States are
//! built from fixed values and a fixed "now", so snapshots are stable.

mod common;

use std::time::{Duration, Instant};

use common::*;
use molt_console::app::{App, Event};
use molt_console::net::NetEvent;
use molt_console::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(app, frame)).unwrap();
    terminal
}

#[test]
fn overview_connected_80x24() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    // Time passes on the console's clock; the uptime follows it.
    app.set_now(base + Duration::from_secs(2));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn overview_idle_gateway_80x24() {
    let app = connected_app(idle_status(), Instant::now());
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn connecting_before_any_status_80x24() {
    let mut app = App::new(URL, true, Instant::now());
    app.origin = "url from /home/op/.openclaw/gateway.lock (pid 4343); token from /home/op/.openclaw/openclaw.json".into();
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn auth_failed_80x24() {
    let mut app = App::new(URL, true, Instant::now());
    app.handle(Event::Net(NetEvent::AuthFailed {
        message: "unauthorized: gateway token missing or wrong".into(),
    }));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn reconnecting_shows_last_known_status_80x24() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.handle(closed(1001, "gateway stopping"));
    app.handle(Event::Net(NetEvent::Retrying {
        attempt: 3,
        delay: Duration::from_secs(1),
        handoff: false,
        error: Some("cannot reach ws://127.0.0.1:18789: Connection refused (os error 111)".into()),
    }));
    app.set_now(base + Duration::from_secs(7));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn after_handoff_80x24() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.handle(closed(1012, "update.run"));
    assert!(
        draw(&app, 80, 24)
            .backend()
            .to_string()
            .contains("handing off")
    );
    let mut successor = idle_status();
    successor.pid = 5151;
    successor.uptime_ms = 120;
    app.handle(Event::Net(NetEvent::Connected {
        hello: Box::new(hello(successor).into()),
        handoff_gap: Some(Duration::from_millis(42)),
        outage: None,
    }));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn newer_gateway_notice_80x24() {
    let mut newer = idle_status();
    newer.version = "9.0.0".into();
    newer.build.protocol = 5;
    let app = connected_app(newer, Instant::now());
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn no_color_uses_no_colors() {
    let mut app = connected_app(status(), Instant::now());
    app.color = false;
    app.handle(closed(1001, "gateway stopping"));
    let terminal = draw(&app, 80, 24);
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, ratatui::style::Color::Reset, "{cell:?}");
    }
}

#[test]
fn incompatible_gateway_80x24() {
    let mut app = App::new(URL, true, Instant::now());
    app.handle(Event::Net(NetEvent::Incompatible {
        message: molt_console::net::incompatible(Some(5), "protocol mismatch"),
    }));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}
