//! Reducer tests: events in, state and commands out. No I/O, no clock.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use molt_console::app::{
    App, Command, ConnState, Event, Level, STATUS_REFRESH, STATUS_REFRESH_IN_MOTION,
};
use molt_console::client::{GatewayEvent, RequestError};
use molt_console::net::{NetCommand, NetEvent, Purpose};
use molt_protocol::Method;
use molt_protocol::event::Tick;
use molt_protocol::method::RestartScheduled;
use molt_protocol::status::{PendingWork, RestartPhase};

fn key(c: char) -> Event {
    Event::Key(KeyEvent::from(KeyCode::Char(c)))
}

fn status_request() -> Vec<Command> {
    vec![Command::Net(NetCommand::Request {
        purpose: Purpose::Status,
        method: Method::Status,
        params: None,
    })]
}

#[test]
fn connect_hello_then_status() {
    let base = Instant::now();
    let mut app = App::new(URL, true, base);
    assert_eq!(app.conn, ConnState::Connecting);
    assert!(app.take_dirty(), "the first frame is drawn");

    let cmds = app.handle(Event::Net(NetEvent::Connecting {
        url: "ws://127.0.0.1:4000".into(),
        attempt: 0,
    }));
    assert!(cmds.is_empty());
    assert_eq!(app.url, "ws://127.0.0.1:4000");

    // hello-ok: the snapshot shows at once, and a fresh status is asked for.
    let cmds = app.handle(connected(status()));
    assert_eq!(cmds, status_request());
    assert_eq!(app.conn, ConnState::Connected);
    assert_eq!(app.facts().unwrap().pid, Some(4343));
    let server = app.server.as_ref().unwrap();
    assert_eq!(
        (server.version.as_deref(), server.protocol),
        (Some("0.1.0"), Some(4))
    );

    let mut newer = status();
    newer.connections = 3;
    assert!(app.handle(status_response(&newer)).is_empty());
    assert_eq!(app.facts().unwrap().connections, Some(3));
    assert_eq!(app.status_error, None);
}

/// A gateway with nothing scheduled and nothing pending.
fn idle_status() -> molt_protocol::status::StatusResult {
    let mut idle = status();
    idle.restart.phase = RestartPhase::Idle;
    idle.restart.reason = None;
    idle.restart.fire_at = None;
    idle.pending_work = PendingWork::default();
    idle
}

#[test]
fn status_refreshes_every_few_seconds_and_never_twice_at_once() {
    let base = Instant::now();
    let mut app = connected_app(idle_status(), base);
    app.set_now(base + secs(1));
    assert!(app.handle(Event::Tick).is_empty(), "not due yet");
    app.set_now(base + STATUS_REFRESH);
    assert_eq!(app.handle(Event::Tick), status_request());
    // In flight: neither ticks nor events send a second one...
    app.set_now(base + STATUS_REFRESH * 3);
    assert!(app.handle(Event::Tick).is_empty());
    let scheduled = GatewayEvent::RestartScheduled(RestartScheduled {
        ok: true,
        pid: 4343,
        signal: None,
        delay_ms: 2000,
        reason: "config".into(),
        mode: molt_protocol::status::RestartStrategy::Respawn,
        coalesced: false,
        cooldown_ms_applied: 0,
    });
    assert!(
        app.handle(Event::Net(NetEvent::Gateway(scheduled)))
            .is_empty()
    );
    // ...but the event's refresh runs once the answer is in.
    assert_eq!(
        app.handle(status_response(&idle_status())),
        status_request()
    );
    assert!(app.handle(status_response(&idle_status())).is_empty());
}

/// A restart that fails without a handoff sends no close: while a restart
/// is scheduled or work is pending, the status is read every second, so
/// the screens see the gateway idle again within one.
#[test]
fn status_refreshes_every_second_while_a_restart_or_work_is_pending() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.set_now(base + STATUS_REFRESH_IN_MOTION);
    assert_eq!(app.handle(Event::Tick), status_request());
    assert!(app.handle(status_response(&idle_status())).is_empty());
    assert_eq!(
        app.facts().unwrap().restart.as_ref().unwrap().phase,
        RestartPhase::Idle
    );
    // Idle again: back to the slow pace.
    app.set_now(base + STATUS_REFRESH_IN_MOTION * 2);
    assert!(app.handle(Event::Tick).is_empty());
    app.set_now(base + STATUS_REFRESH_IN_MOTION + STATUS_REFRESH);
    assert_eq!(app.handle(Event::Tick), status_request());
}

#[test]
fn a_restart_that_ended_without_a_handoff_refreshes_status() {
    let base = Instant::now();
    let mut app = connected_app(idle_status(), base);
    let changed = GatewayEvent::RestartChanged(Box::new(idle_status().restart));
    assert_eq!(
        app.handle(Event::Net(NetEvent::Gateway(changed))),
        status_request()
    );
}

#[test]
fn relevant_events_refresh_status_and_ticks_do_not_redraw() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.take_dirty();
    let tick = GatewayEvent::Tick(Tick { ts: GATEWAY_NOW });
    assert!(app.handle(Event::Net(NetEvent::Gateway(tick))).is_empty());
    assert!(!app.take_dirty(), "a server tick changes nothing on screen");
    assert_eq!(
        app.handle(Event::Net(NetEvent::Lagged(3))),
        status_request()
    );
}

#[test]
fn status_errors_are_shown_but_disconnects_are_not_errors() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.set_now(base + STATUS_REFRESH);
    app.handle(Event::Tick);
    app.handle(Event::Net(NetEvent::Response {
        purpose: Purpose::Status,
        result: Err(RequestError::Timeout {
            method: "status".into(),
            timeout: secs(15),
        }),
    }));
    assert_eq!(
        app.status_error.as_deref(),
        Some("no answer to status within 15s")
    );
    // A field of an unexpected type is unknown, never an error: what the
    // hello-ok snapshot said stays.
    app.handle(Event::Net(NetEvent::Response {
        purpose: Purpose::Status,
        result: Ok(serde_json::json!({"version": 1})),
    }));
    assert_eq!(app.status_error, None);
    assert_eq!(app.facts().unwrap().pid, Some(4343), "kept");
    assert_eq!(app.facts().unwrap().version.as_deref(), Some("0.1.0"));
    app.handle(Event::Net(NetEvent::Response {
        purpose: Purpose::Status,
        result: Ok(serde_json::json!([1, 2])),
    }));
    assert!(
        app.status_error
            .as_deref()
            .unwrap()
            .contains("not an object")
    );
    app.handle(Event::Net(NetEvent::Response {
        purpose: Purpose::Status,
        result: Err(RequestError::Disconnected { close: None }),
    }));
    assert!(app.status_error.is_some(), "unchanged by a disconnect");
}

#[test]
fn close_1012_hands_off_then_reconnects_with_the_gap() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.set_now(base + secs(10));
    assert!(app.handle(closed(1012, "update.run")).is_empty());
    assert_eq!(app.conn, ConnState::HandingOff { attempt: 0 });
    assert_eq!(app.disconnected_for(), Some(Duration::ZERO));
    // The uptime stops at the disconnect: that process may be gone.
    app.set_now(base + secs(12));
    assert_eq!(
        app.uptime(),
        Some(Duration::from_millis(UPTIME_MS) + secs(10))
    );

    app.handle(Event::Net(NetEvent::Retrying {
        attempt: 1,
        delay: Duration::from_millis(50),
        handoff: true,
        error: None,
    }));
    assert_eq!(app.conn, ConnState::HandingOff { attempt: 1 });
    app.handle(Event::Net(NetEvent::Connecting {
        url: URL.into(),
        attempt: 1,
    }));
    assert_eq!(app.conn, ConnState::HandingOff { attempt: 1 });

    let mut successor = status();
    successor.pid = 5151;
    successor.version = "1.3.0".into();
    successor.uptime_ms = 300;
    let cmds = app.handle(Event::Net(NetEvent::Connected {
        hello: Box::new(hello(successor).into()),
        handoff_gap: Some(Duration::from_millis(42)),
        outage: None,
    }));
    assert_eq!(cmds, status_request());
    assert_eq!(app.conn, ConnState::Connected);
    assert_eq!(app.disconnected_at, None);
    let notice = app.notice.as_ref().unwrap();
    assert_eq!(
        notice.text,
        "handed off: pid 4343 v0.1.0 → pid 5151 v1.3.0, gap 42 ms"
    );
    assert_eq!(app.facts().unwrap().pid, Some(5151));
}

#[test]
fn other_closes_reconnect_with_backoff_and_keep_the_reason() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.handle(closed(1001, "gateway stopping"));
    assert_eq!(
        app.conn,
        ConnState::Reconnecting {
            attempt: 0,
            error: Some("1001 gateway stopping: gateway stopping".into())
        }
    );
    app.handle(Event::Net(NetEvent::Retrying {
        attempt: 2,
        delay: Duration::from_millis(500),
        handoff: false,
        error: Some("cannot reach ws://127.0.0.1:18789: Connection refused".into()),
    }));
    assert!(matches!(
        &app.conn,
        ConnState::Reconnecting { attempt: 2, error: Some(e) } if e.contains("refused")
    ));
    // While down: no status polling; r asks the network task to retry now.
    app.set_now(base + STATUS_REFRESH * 2);
    assert!(app.handle(Event::Tick).is_empty());
    assert_eq!(
        app.handle(key('r')),
        vec![Command::Net(NetCommand::ReconnectNow)]
    );
}

#[test]
fn auth_failure_stops_until_the_operator_retries() {
    let base = Instant::now();
    let mut app = App::new(URL, true, base);
    app.handle(Event::Net(NetEvent::AuthFailed {
        message: "unauthorized: gateway token missing or wrong".into(),
    }));
    assert!(matches!(app.conn, ConnState::AuthFailed { .. }));
    app.set_now(base + STATUS_REFRESH * 2);
    assert!(app.handle(Event::Tick).is_empty());
    assert_eq!(
        app.handle(key('r')),
        vec![Command::Net(NetCommand::ReconnectNow)]
    );
    app.handle(Event::Net(NetEvent::Connecting {
        url: URL.into(),
        attempt: 0,
    }));
    assert_eq!(app.conn, ConnState::Connecting);
}

#[test]
fn a_newer_gateway_is_a_notice_not_a_failure() {
    let base = Instant::now();
    let mut newer = status();
    newer.build.protocol = 5;
    let app = connected_app(newer, base);
    assert_eq!(app.conn, ConnState::Connected);
    assert!(
        app.version_notice
            .as_deref()
            .unwrap()
            .contains("protocol 5, this console 4"),
    );

    let mut newer = status();
    newer.version = "99.0.0".into();
    let app = connected_app(newer, base);
    assert!(
        app.version_notice
            .as_deref()
            .unwrap()
            .contains("99.0.0 is newer")
    );

    let app = connected_app(status(), base);
    assert_eq!(app.version_notice, None, "same version: no notice");
}

#[test]
fn help_toggles_and_swallows_other_keys() {
    let mut app = connected_app(status(), Instant::now());
    assert!(app.handle(key('?')).is_empty());
    assert!(app.show_help);
    assert!(app.handle(key('r')).is_empty(), "keys go to the overlay");
    assert!(app.handle(key('?')).is_empty());
    assert!(!app.show_help);
    app.handle(key('?'));
    app.handle(Event::Key(KeyEvent::from(KeyCode::Esc)));
    assert!(!app.show_help);
    // Esc without an overlay dismisses the notice.
    app.set_notice(Level::Warn, "x");
    app.handle(Event::Key(KeyEvent::from(KeyCode::Esc)));
    assert_eq!(app.notice, None);
}

#[test]
fn q_and_ctrl_c_quit_even_from_help() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('?'));
    assert_eq!(app.handle(key('q')), vec![Command::Quit]);
    assert!(app.should_quit());

    let mut app = connected_app(status(), Instant::now());
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle(Event::Key(ctrl_c)), vec![Command::Quit]);
}

#[test]
fn refresh_when_connected_asks_for_status() {
    let base = Instant::now();
    let mut app = App::new(URL, true, base);
    app.handle(connected(status()));
    // The hello's own request is in flight: r queues one more.
    assert!(app.handle(key('r')).is_empty());
    assert_eq!(app.handle(status_response(&status())), status_request());
}

#[test]
fn no_common_protocol_stops_retrying_and_says_what_to_update() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    app.handle(closed(1012, "update.run"));
    let message = molt_console::net::incompatible(Some(5), "protocol mismatch");
    assert_eq!(
        message,
        "the gateway speaks protocol 5, this console 3-4: update molt"
    );
    app.handle(Event::Net(NetEvent::Incompatible { message }));
    assert!(
        matches!(&app.conn, ConnState::Incompatible { message } if message.contains("update molt"))
    );
    // No polling meanwhile; r asks for one more attempt.
    app.set_now(base + STATUS_REFRESH * 2);
    assert!(app.handle(Event::Tick).is_empty());
    assert_eq!(
        app.handle(key('r')),
        vec![Command::Net(NetCommand::ReconnectNow)]
    );
    assert!(molt_console::net::incompatible(Some(2), "x").ends_with("update moltd"));
}

#[test]
fn a_supervised_restart_closing_with_1001_is_shown_as_a_handoff() {
    let base = Instant::now();
    let mut app = connected_app(status(), base);
    let shutdown = GatewayEvent::Shutdown(molt_protocol::event::Shutdown {
        reason: "gateway.restart.request".into(),
        restart_expected_ms: Some(1500),
    });
    app.handle(Event::Net(NetEvent::Gateway(shutdown)));
    app.handle(closed(1001, "restarting"));
    assert_eq!(app.conn, ConnState::HandingOff { attempt: 0 });
    let mut successor = status();
    successor.pid = 5151;
    app.handle(Event::Net(NetEvent::Connected {
        hello: Box::new(hello(successor).into()),
        handoff_gap: Some(Duration::from_millis(900)),
        outage: None,
    }));
    assert_eq!(
        app.notice.as_ref().unwrap().text,
        "handed off: pid 4343 v0.1.0 → pid 5151 v0.1.0, gap 900 ms"
    );
    // A plain stop later is not a handoff.
    app.handle(closed(1001, "stopping"));
    assert!(matches!(app.conn, ConnState::Reconnecting { .. }));
}

/// One audit entry as moltd writes it.
fn audit_entry(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "at": GATEWAY_NOW, "action": "config.patch",
        "actor": {"kind": "client", "clientId": "ops", "addr": "127.0.0.1:5000", "connId": "1-1"},
        "params": {}, "outcome": {"ok": true}, "pid": 1,
    })
}

fn audit_request(before: Option<&str>) -> Command {
    let mut params = serde_json::json!({"limit": molt_console::app::AUDIT_PAGE});
    if let Some(before) = before {
        params["before"] = before.into();
    }
    Command::Net(NetCommand::Request {
        purpose: Purpose::Audit,
        method: Method::AuditList,
        params: Some(params),
    })
}

#[test]
fn a_shows_the_audit_trail_loads_older_pages_at_the_end_and_goes_back_to_runs() {
    let mut app = connected_app(status(), Instant::now());
    assert_eq!(app.handle(key('a')), vec![audit_request(None)]);
    // Asked once at a time.
    assert_eq!(app.handle(key('r')), status_request());
    let page = |ids: &[&str], next: Option<&str>| {
        let entries: Vec<_> = ids.iter().map(|id| audit_entry(id)).collect();
        response(
            Purpose::Audit,
            serde_json::json!({"entries": entries, "nextBefore": next}),
        )
    };
    assert!(app.handle(page(&["e3", "e2"], Some("e2"))).is_empty());
    // Moving onto the last entry asks for the page before it, once.
    assert!(app.handle(key('k')).is_empty());
    assert_eq!(app.handle(key('j')), vec![audit_request(Some("e2"))]);
    assert!(app.handle(key('j')).is_empty());
    app.handle(page(&["e1"], None));
    let ids: Vec<&str> = app
        .audit
        .entries
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, ["e3", "e2", "e1"]);
    assert_eq!(app.audit.selected, 1);
    // The last page: no more asked for.
    assert!(app.handle(key('j')).is_empty());
    assert_eq!(app.audit.selected, 2);
    // `a` again: the update runs.
    let commands = app.handle(key('a'));
    assert!(
        matches!(
            commands.as_slice(),
            [Command::Net(NetCommand::Request {
                method: Method::UpdateHistory,
                ..
            })]
        ),
        "{commands:?}"
    );
    assert_eq!(app.history.shown, molt_console::app::Shown::Runs);
}

#[test]
fn a_gateway_without_audit_list_says_so() {
    let mut app = App::new(URL, true, Instant::now());
    let mut hello = hello(status());
    hello.features.methods.retain(|m| m != "audit.list");
    app.handle(Event::Net(NetEvent::Connected {
        hello: Box::new(hello.into()),
        handoff_gap: None,
        outage: None,
    }));
    assert!(app.handle(key('a')).is_empty());
    assert!(
        app.audit
            .unserved
            .as_deref()
            .unwrap()
            .contains("audit.list"),
        "{:?}",
        app.audit
    );
}
