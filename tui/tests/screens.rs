//! Reducer tests of the Config, History and Logs screens.

mod common;

use molt_console::peer::KillSwitch;
use std::time::Instant;

use common::*;
use crossterm::event::KeyCode;
use molt_console::app::{App, Command, ConfigRow, Level, Screen};
use molt_console::client::GatewayEvent;
use molt_console::net::{NetCommand, Purpose};
use molt_protocol::ErrorShape;
use molt_protocol::Method;
use molt_protocol::error::ErrorCode;
use molt_protocol::event::{ConfigChanged, LogsLine};
use molt_protocol::update::RunPhase;
use serde_json::{Value, json};

fn find(commands: &[Command], purpose: Purpose) -> Option<(Method, Option<Value>)> {
    commands.iter().find_map(|c| match c {
        Command::Net(NetCommand::Request {
            purpose: p,
            method,
            params,
        }) if *p == purpose => Some((*method, params.clone())),
        _ => None,
    })
}

fn config_app() -> App {
    let mut app = connected_app(idle_status(), Instant::now());
    let commands = app.handle(key('c'));
    assert_eq!(app.screen, Screen::Config);
    assert_eq!(
        find(&commands, Purpose::ConfigGet),
        Some((Method::ConfigGet, None))
    );
    app.handle(response(Purpose::ConfigGet, config_value("h1")));
    app
}

fn patch_of(commands: &[Command]) -> (Value, String) {
    let (method, params) = find(commands, Purpose::ConfigPatch).expect("a config.patch");
    assert_eq!(method, Method::ConfigPatch);
    let params = params.unwrap();
    let raw: Value = serde_json::from_str(params["raw"].as_str().unwrap()).unwrap();
    (raw, params["baseHash"].as_str().unwrap().to_owned())
}

#[test]
fn config_toggles_go_through_config_patch_with_the_base_hash() {
    let mut app = config_app();
    let loaded = app.config.loaded.as_ref().unwrap();
    assert!(!loaded.auto_enabled());
    assert_eq!(loaded.channel(), "beta");
    assert!(loaded.check_on_start(), "unset means the default, true");

    let (raw, base) = patch_of(&app.handle(press(KeyCode::Enter)));
    assert_eq!(raw, json!({"update": {"auto": {"enabled": true}}}));
    assert_eq!(base, "h1");
    // One change at a time.
    assert!(find(&app.handle(key(' ')), Purpose::ConfigPatch).is_none());
    let mut patched = config_value("h2");
    patched["config"]["update"]["auto"]["enabled"] = json!(true);
    let result = json!({
        "config": patched["config"], "hash": "h2", "changedPaths": ["update.auto.enabled"]
    });
    let commands = app.handle(response(Purpose::ConfigPatch, result));
    assert!(
        find(&commands, Purpose::Status).is_some(),
        "the overview follows"
    );
    assert!(app.config.loaded.as_ref().unwrap().auto_enabled());
    assert_eq!(app.config.loaded.as_ref().unwrap().hash, "h2");
    assert_eq!(
        app.notice.as_ref().unwrap().text,
        "saved update.auto.enabled"
    );

    // The channel cycles: beta → dev.
    app.handle(key('j'));
    assert_eq!(app.config.row(), ConfigRow::Channel);
    let (raw, base) = patch_of(&app.handle(press(KeyCode::Enter)));
    assert_eq!(
        (raw, base.as_str()),
        (json!({"update": {"channel": "dev"}}), "h2")
    );
}

#[test]
fn a_conflict_reloads_and_says_so() {
    let mut app = config_app();
    app.handle(press(KeyCode::Enter));
    let commands = app.handle(gateway_error(
        Purpose::ConfigPatch,
        ErrorShape::new(ErrorCode::Conflict, "config changed since it was read")
            .with_details(json!({"currentHash": "h9"})),
    ));
    assert_eq!(
        find(&commands, Purpose::ConfigGet),
        Some((Method::ConfigGet, None))
    );
    let notice = app.notice.as_ref().unwrap();
    assert_eq!(notice.level, Level::Warn);
    assert!(notice.text.contains("changed elsewhere"), "{}", notice.text);
    assert!(notice.text.contains("reloaded"), "{}", notice.text);
    app.handle(response(Purpose::ConfigGet, config_value("h9")));
    let (_, base) = patch_of(&app.handle(press(KeyCode::Enter)));
    assert_eq!(base, "h9", "the retry uses the reloaded hash");
}

#[test]
fn other_patch_errors_are_shown_on_the_screen() {
    let mut app = config_app();
    app.handle(press(KeyCode::Enter));
    app.handle(gateway_error(
        Purpose::ConfigPatch,
        ErrorShape::invalid_request("update.channel must be stable, beta or dev"),
    ));
    assert!(
        app.config
            .error
            .as_deref()
            .unwrap()
            .contains("INVALID_REQUEST")
    );
    assert!(app.config.saving.is_none());
}

#[test]
fn the_deferral_timeout_is_typed_and_checked() {
    let mut app = config_app();
    for _ in 0..4 {
        app.handle(key('j'));
    }
    assert_eq!(app.config.row(), ConfigRow::DeferralTimeout);
    app.handle(press(KeyCode::Enter));
    assert_eq!(app.text_input().unwrap().text, "300000");
    for _ in 0..6 {
        app.handle(press(KeyCode::Backspace));
    }
    type_text(&mut app, "5 min");
    assert!(find(&app.handle(press(KeyCode::Enter)), Purpose::ConfigPatch).is_none());
    assert!(app.text_input().unwrap().error.is_some());
    for _ in 0..5 {
        app.handle(press(KeyCode::Backspace));
    }
    type_text(&mut app, "30s");
    let (raw, _) = patch_of(&app.handle(press(KeyCode::Enter)));
    assert_eq!(
        raw,
        json!({"gateway": {"reload": {"deferralTimeoutMs": 30000}}})
    );
    assert!(app.text_input().is_none());
}

#[test]
fn the_kill_switch_goes_through_no_auto_update_set() {
    let mut app = config_app();
    for _ in 0..3 {
        app.handle(key('j'));
    }
    assert_eq!(app.config.row(), ConfigRow::KillSwitch);
    assert_eq!(app.kill_switch(), Some(KillSwitch::Off));
    let commands = app.handle(press(KeyCode::Enter));
    assert_eq!(
        find(&commands, Purpose::KillSwitch),
        Some((Method::NoAutoUpdateSet, Some(json!({"enabled": true}))))
    );
    let commands = app.handle(response(
        Purpose::KillSwitch,
        json!({"enabled": true, "source": "env-file"}),
    ));
    assert!(find(&commands, Purpose::Status).is_some());
    assert!(app.notice.as_ref().unwrap().text.contains("ON (.env)"));

    // Set in the process env, it cannot be removed from here: say where.
    let mut status = idle_status();
    status.auto.blocked_by = Some("env".into());
    status.auto.source = Some(molt_protocol::status::EnvSource::ProcessEnv);
    app.handle(status_response(&status));
    assert_eq!(
        app.kill_switch(),
        Some(KillSwitch::On {
            source: Some(molt_protocol::status::EnvSource::ProcessEnv)
        })
    );
    let commands = app.handle(press(KeyCode::Enter));
    assert_eq!(
        find(&commands, Purpose::KillSwitch),
        Some((Method::NoAutoUpdateSet, Some(json!({"enabled": false}))))
    );
    app.handle(response(
        Purpose::KillSwitch,
        json!({"enabled": true, "source": "process-env"}),
    ));
    let notice = app.notice.as_ref().unwrap();
    assert_eq!(notice.level, Level::Warn);
    assert!(
        notice.text.contains("still ON (process env)"),
        "{}",
        notice.text
    );
}

#[test]
fn a_change_made_elsewhere_reloads_the_config() {
    let mut app = config_app();
    let same = GatewayEvent::ConfigChanged(ConfigChanged {
        hash: "h1".into(),
        changed_paths: vec!["update.channel".into()],
    });
    assert!(find(&app.handle(gateway_event(same)), Purpose::ConfigGet).is_none());
    let other = GatewayEvent::ConfigChanged(ConfigChanged {
        hash: "h5".into(),
        changed_paths: vec!["update.channel".into()],
    });
    assert!(find(&app.handle(gateway_event(other)), Purpose::ConfigGet).is_some());
}

#[test]
fn changes_need_a_connection() {
    let mut app = config_app();
    app.handle(closed(1001, "stopping"));
    assert!(find(&app.handle(press(KeyCode::Enter)), Purpose::ConfigPatch).is_none());
    assert!(app.notice.as_ref().unwrap().text.contains("not connected"));
}

#[test]
fn history_loads_newest_first_and_keeps_the_selection() {
    let mut app = connected_app(idle_status(), Instant::now());
    let commands = app.handle(key('h'));
    assert_eq!(
        find(&commands, Purpose::History),
        Some((Method::UpdateHistory, Some(json!({"limit": 50}))))
    );
    let runs = vec![
        run_record("run-9", RunPhase::RolledBack, "0.1.0", "0.2.0"),
        run_record("run-8", RunPhase::Verified, "0.0.9", "0.1.0"),
    ];
    app.handle(response(Purpose::History, json!({"runs": runs})));
    assert_eq!(app.history.runs.as_ref().unwrap().len(), 2);
    app.handle(key('j'));
    assert_eq!(
        app.history
            .selected_run()
            .unwrap()
            .run_id
            .as_ref()
            .unwrap()
            .as_str(),
        "run-8"
    );
    app.handle(key('j'));
    assert_eq!(app.history.selected, 1, "stops at the last run");
    // A newer run arrives on top: the selection stays on run-8.
    let commands = app.handle(key('r'));
    assert!(find(&commands, Purpose::History).is_some());
    let mut newer = vec![run_record("run-10", RunPhase::Verified, "0.1.0", "0.2.0")];
    newer.extend(runs);
    app.handle(response(Purpose::History, json!({"runs": newer})));
    assert_eq!(
        app.history
            .selected_run()
            .unwrap()
            .run_id
            .as_ref()
            .unwrap()
            .as_str(),
        "run-8"
    );

    app.handle(gateway_error(
        Purpose::History,
        ErrorShape::invalid_request("method update.history is not served by this gateway"),
    ));
    assert!(app.history.error.as_deref().unwrap().contains("not served"));
}

fn line(text: &str) -> molt_console::app::Event {
    gateway_event(GatewayEvent::LogsLine(LogsLine { line: text.into() }))
}

#[test]
fn logs_follow_scroll_pause_and_resubscribe_after_a_reconnect() {
    let mut app = connected_app(idle_status(), Instant::now());
    // Lines before the screen subscribed are not for it.
    app.handle(line("early"));
    let commands = app.handle(key('l'));
    assert_eq!(
        find(&commands, Purpose::LogsTail),
        Some((
            Method::LogsTail,
            Some(json!({"lines": 500, "follow": true}))
        ))
    );
    app.handle(response(
        Purpose::LogsTail,
        json!({"file": "/s/logs/moltd.log.2026-11-24", "lines": ["a", "b", "c"], "following": true}),
    ));
    app.take_dirty();
    app.handle(line("d"));
    assert!(app.take_dirty(), "a followed line redraws the Logs screen");
    assert_eq!(app.logs.lines, ["a", "b", "c", "d"]);

    app.handle(key('k'));
    assert!(app.logs.paused, "scrolling up stops following");
    assert_eq!(app.logs.scroll, 1);
    app.handle(line("e"));
    assert_eq!(
        (app.logs.scroll, app.logs.unseen),
        (2, 1),
        "the view stays put"
    );
    app.handle(key('G'));
    assert_eq!(
        (app.logs.scroll, app.logs.paused, app.logs.unseen),
        (0, false, 0)
    );
    app.handle(key('p'));
    assert!(app.logs.paused);
    app.handle(key('p'));
    assert!(!app.logs.paused);

    // Follow is per connection: the successor gets asked again.
    app.handle(closed(1012, "restart"));
    let commands = app.handle(connected(idle_status()));
    assert!(find(&commands, Purpose::LogsTail).is_some());
}

#[test]
fn log_lines_off_screen_do_not_redraw() {
    let mut app = connected_app(idle_status(), Instant::now());
    app.handle(key('l'));
    app.handle(response(
        Purpose::LogsTail,
        json!({"file": null, "lines": [], "following": true}),
    ));
    app.handle(key('o'));
    app.take_dirty();
    app.handle(line("x"));
    assert!(!app.take_dirty());
    assert_eq!(app.logs.lines, ["x"], "kept for when the screen is shown");
}

#[test]
fn ticks_redraw_only_screens_that_show_time() {
    let base = Instant::now();
    let mut app = connected_app(idle_status(), base);
    app.take_dirty();
    app.handle(molt_console::app::Event::Tick);
    assert!(app.take_dirty(), "the overview's uptime moves");
    app.handle(key('l'));
    app.handle(response(
        Purpose::LogsTail,
        json!({"file": null, "lines": ["a"], "following": true}),
    ));
    app.take_dirty();
    app.handle(molt_console::app::Event::Tick);
    assert!(
        !app.take_dirty(),
        "nothing on the Logs screen changes with time"
    );
}
