//! Fixed fixtures for reducer and rendering tests: no clocks, no network.
//! Answers whose shape picks the console's branch are the ones recorded
//! from a real moltd ([`recorded`]).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use molt_console::app::{App, Event};
use molt_console::client::{CloseInfo, ClosedBy};
use molt_console::net::{NetEvent, Purpose};
use molt_protocol::Scope;
use molt_protocol::handshake::{Features, GrantedAuth, HelloOk, Policy, ServerInfo};
use molt_protocol::ids::{ConnId, RunId};
use molt_protocol::status::*;
use molt_protocol::update::*;

/// Versions stay at or below the console's own, so no "newer gateway"
/// notice appears unless a test asks for one.
pub const URL: &str = "ws://127.0.0.1:18789";

/// 2023-11-14T22:13:20Z
pub const STARTED_AT: u64 = 1_700_000_000_000;
/// 1h 02m 03s
pub const UPTIME_MS: u64 = 3_723_000;
pub const GATEWAY_NOW: u64 = STARTED_AT + UPTIME_MS;

pub fn status() -> StatusResult {
    StatusResult {
        version: "0.1.0".into(),
        build: BuildInfo {
            version: "0.1.0".into(),
            protocol: 4,
            profile: "release".into(),
        },
        pid: 4343,
        started_at: STARTED_AT,
        uptime_ms: UPTIME_MS,
        listen: "127.0.0.1:18789".into(),
        state_dir: "/home/op/.openclaw".into(),
        install: InstallInfo {
            surface: InstallMode::Npm,
            root: Some("/usr/local/lib/node_modules/@molt/moltd".into()),
            entrypoint: Some("/usr/local/bin/moltd".into()),
            source: "detected".into(),
        },
        supervisor: SupervisorInfo {
            kind: SupervisorKind::Systemd,
            detail: Some("moltd.service".into()),
        },
        restart: RestartInfo {
            strategy: RestartStrategy::Respawn,
            phase: RestartPhase::Deferring,
            reason: Some("update.run".into()),
            fire_at: Some(GATEWAY_NOW + 12_000),
            forced: false,
            last_failure: Some(RestartFailure {
                at: GATEWAY_NOW - 600_000,
                reason: "successor exited with status 1".into(),
                successor: None,
            }),
        },
        pending_work: PendingWork {
            in_flight_requests: 1,
            holds: 1,
            update_steps: 0,
        },
        auto: AutoUpdateState {
            enabled: true,
            channel: Channel::Stable,
            blocked_by: Some("env".into()),
            source: Some(EnvSource::EnvFile),
            next_check_at: Some(GATEWAY_NOW + 3_540_000),
            next_apply_at: None,
        },
        update_available: Some(UpdateAvailable {
            current_version: "0.1.0".into(),
            latest_version: "0.2.0".into(),
            channel: Channel::Stable,
        }),
        latest_run: Some(RunRecord {
            run_id: RunId::from("run-7"),
            trigger: RunTrigger::Manual,
            actor: Some("molt-console".into()),
            phase: RunPhase::Verified,
            mode: InstallMode::Npm,
            root: Some("/usr/local/lib/node_modules/@molt/moltd".into()),
            target: RunTarget {
                version: Some("0.1.0".into()),
                tag: None,
                channel: Some(Channel::Stable),
            },
            before: VersionRef::new("0.0.9"),
            after: VersionRef::new("0.1.0"),
            note: None,
            reason: None,
            steps: Vec::new(),
            owner: RunOwner {
                pid: 4000,
                started_at: STARTED_AT - 86_400_000,
            },
            requested_at: STARTED_AT - 20_000,
            updated_at: STARTED_AT - 5_000,
            finished_at: Some(STARTED_AT - 5_000),
            changelog: None,
        }),
        connections: 2,
        auth: None,
    }
}

/// A quiet gateway: nothing pending, no update, kill switch off.
pub fn idle_status() -> StatusResult {
    let mut s = status();
    s.restart.phase = RestartPhase::Idle;
    s.restart.reason = None;
    s.restart.fire_at = None;
    s.restart.last_failure = None;
    s.pending_work = PendingWork::default();
    s.auto.blocked_by = None;
    s.auto.source = None;
    s.update_available = None;
    s
}

pub fn hello(status: StatusResult) -> HelloOk {
    HelloOk {
        kind: "hello-ok".into(),
        protocol: 4,
        server: ServerInfo {
            version: status.version.clone(),
            conn_id: ConnId::from("c-1"),
        },
        // What moltd advertises: every method it serves, every event.
        features: Features {
            methods: molt_protocol::Method::ALL
                .iter()
                .filter(|m| **m != molt_protocol::Method::Connect)
                .map(|m| m.as_str().to_owned())
                .collect(),
            events: molt_protocol::event::EventName::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        },
        snapshot: status,
        auth: GrantedAuth {
            role: "operator".into(),
            scopes: vec![Scope::Read, Scope::Admin],
        },
        policy: Policy::default(),
    }
}

pub fn connected(status: StatusResult) -> Event {
    Event::Net(NetEvent::Connected {
        hello: Box::new(hello(status).into()),
        handoff_gap: None,
        outage: None,
    })
}

pub fn closed(code: u16, reason: &str) -> Event {
    Event::Net(NetEvent::Closed(CloseInfo::new(
        code,
        reason,
        ClosedBy::Server,
    )))
}

pub fn status_response(status: &StatusResult) -> Event {
    Event::Net(NetEvent::Response {
        purpose: Purpose::Status,
        result: Ok(serde_json::to_value(status).unwrap()),
    })
}

/// An app at a fixed instant, connected, with `status` answered.
pub fn connected_app(status: StatusResult, base: Instant) -> App {
    let mut app = App::new(URL, true, base);
    app.handle(connected(status.clone()));
    app.handle(status_response(&status));
    app
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn key(c: char) -> Event {
    Event::Key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Char(c),
    ))
}

pub fn press(code: crossterm::event::KeyCode) -> Event {
    Event::Key(crossterm::event::KeyEvent::from(code))
}

/// Types `text` into whatever has the focus.
pub fn type_text(app: &mut App, text: &str) -> Vec<molt_console::app::Command> {
    text.chars().flat_map(|c| app.handle(key(c))).collect()
}

pub fn response(purpose: Purpose, value: serde_json::Value) -> Event {
    Event::Net(NetEvent::Response {
        purpose,
        result: Ok(value),
    })
}

pub fn gateway_error(purpose: Purpose, error: molt_protocol::ErrorShape) -> Event {
    Event::Net(NetEvent::Response {
        purpose,
        result: Err(molt_console::client::RequestError::Gateway(error)),
    })
}

pub fn gateway_event(event: molt_console::client::GatewayEvent) -> Event {
    Event::Net(NetEvent::Gateway(event))
}

pub fn step_record(name: &str, exit_code: i32, stderr_tail: &str) -> StepRecord {
    StepRecord {
        name: name.into(),
        command: format!("npm i -g --prefix /usr/local/.molt-stage-1 @molt/moltd@0.2.0 ({name})"),
        argv: Vec::new(),
        cwd: None,
        duration_ms: 1500,
        exit_code: Some(exit_code),
        termination: Termination::Exited,
        stdout_head: String::new(),
        stdout_tail: String::new(),
        stderr_head: if exit_code == 0 {
            String::new()
        } else {
            "npm warn using --force".into()
        },
        stderr_tail: stderr_tail.into(),
    }
}

/// A payload or event list recorded from a real moltd
/// (`fixtures/moltd/NAME.json`, regenerated by `cargo run -p molt-e2e
/// --bin record-console-fixtures` and checked against the moltd of these
/// sources by `tests/tests/console_fixtures.rs`).
pub fn recorded(name: &str) -> serde_json::Value {
    molt_e2e::console_fixtures::read(&molt_e2e::console_fixtures::dir(), name)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// [`recorded`] with what differs between recordings pinned, so a
/// snapshot of it holds: times one minute before [`GATEWAY_NOW`] (the
/// start at [`STARTED_AT`], a request 75 s before), durations 1.5 s,
/// the supervisor, pids 4343, run ids `run-9`,
/// the listen port, the client's port and the stage dir's random suffix.
pub fn recorded_pinned(name: &str) -> serde_json::Value {
    pin(None, recorded(name))
}

fn pin(key: Option<&str>, value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (key, value) {
        (Some("startedAt"), Value::Number(_)) => STARTED_AT.into(),
        (Some("uptimeMs"), Value::Number(_)) => UPTIME_MS.into(),
        (Some("durationMs"), Value::Number(_)) => 1500.into(),
        (Some("pid"), Value::Number(_)) => 4343.into(),
        (Some("requestedAt"), Value::Number(_)) => (GATEWAY_NOW - 75_000).into(),
        // Where the recording ran (a container, a service) is the
        // machine's, not moltd's.
        (Some("supervisor"), Value::Object(_)) => {
            serde_json::json!({"kind": "systemd", "detail": "moltd.service"})
        }
        (Some(k), Value::Number(_)) if k == "at" || k == "ts" || k.ends_with("At") => {
            (GATEWAY_NOW - 60_000).into()
        }
        (Some("runId"), Value::String(_)) => "run-9".into(),
        (Some("listen"), Value::String(_)) => "127.0.0.1:18789".into(),
        (_, Value::String(s)) => Value::String(pin_text(&s)),
        (_, Value::Array(items)) => items.into_iter().map(|v| pin(key, v)).collect(),
        (_, Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let pinned = pin(Some(&k), v);
                (k, pinned)
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        (_, other) => other,
    }
}

/// A stage dir's suffix, a client's port and its `(pid-n)` connection id.
fn pin_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = [".molt-stage-", "127.0.0.1:", "("]
        .iter()
        .filter_map(|mark| rest.find(mark).map(|i| (i, *mark)))
        .min()
    {
        let (i, mark) = at;
        out.push_str(&rest[..i + mark.len()]);
        rest = &rest[i + mark.len()..];
        let end = rest
            .find(|c: char| match mark {
                ".molt-stage-" => !c.is_ascii_hexdigit(),
                "(" => !(c.is_ascii_digit() || c == '-'),
                _ => !c.is_ascii_digit(),
            })
            .unwrap_or(rest.len());
        if end > 0 {
            out.push_str(if mark == "(" { "4343-1" } else { "1" });
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// moltd's answer to the dry run of an update from 0.1.0 to `after`: the
/// recorded answer at these versions and the install root of [`status`].
pub fn dry_run(after: &str) -> serde_json::Value {
    let mut answer = recorded("update-run-dry-run");
    let result = &mut answer["result"];
    result["before"]["version"] = "0.1.0".into();
    result["after"]["version"] = after.into();
    result["reason"] = format!("dry-run: would install @molt/moltd@{after}").into();
    result["root"] = "/usr/local/lib/node_modules/@molt/moltd".into();
    answer
}

/// moltd's answer to a dry run when 0.1.0 is the newest: recorded.
pub fn up_to_date() -> serde_json::Value {
    let mut answer = recorded("update-run-up-to-date");
    let result = &mut answer["result"];
    result["before"]["version"] = "0.1.0".into();
    result["after"]["version"] = "0.1.0".into();
    result["root"] = "/usr/local/lib/node_modules/@molt/moltd".into();
    answer
}

/// An `update.run` result; `status` decides the outcome.
pub fn run_result(status: UpdateStatus, after: &str, steps: Vec<StepRecord>) -> serde_json::Value {
    let restart = (status == UpdateStatus::Ok).then(|| {
        serde_json::json!({
            "ok": true, "pid": 4343, "delayMs": 0, "reason": "update.run",
            "mode": "respawn", "coalesced": false, "cooldownMsApplied": 0
        })
    });
    serde_json::json!({
        "ok": status != UpdateStatus::Error,
        "runId": "run-8",
        "result": {
            "status": status,
            "mode": "npm",
            "root": "/usr/local/lib/node_modules/@molt/moltd",
            "reason": match status {
                UpdateStatus::Skipped => Some("up-to-date"),
                UpdateStatus::Error => Some("install-failed"),
                UpdateStatus::Ok => None,
            },
            "before": {"version": "0.1.0"},
            "after": {"version": after},
            "steps": steps,
            "durationMs": 4200,
        },
        "restart": restart,
        "sentinel": null,
    })
}

pub fn progress(phase: RunPhase, step: Option<(&str, &str, Option<i32>)>) -> Event {
    gateway_event(molt_console::client::GatewayEvent::UpdateProgress(
        molt_protocol::event::UpdateProgress {
            run_id: RunId::from("run-8"),
            phase,
            step: step.map(
                |(name, state, exit_code)| molt_protocol::event::StepProgress {
                    name: name.into(),
                    state: state.parse().unwrap(),
                    duration_ms: exit_code.map(|_| 1500),
                    exit_code,
                },
            ),
        },
    ))
}

pub fn run_record(id: &str, phase: RunPhase, before: &str, after: &str) -> RunRecord {
    let mut run = status().latest_run.unwrap();
    run.run_id = RunId::from(id);
    run.phase = phase;
    run.before = VersionRef::new(before);
    run.after = VersionRef::new(after);
    run.target.version = Some(after.into());
    run
}

/// An `update.status` answer about run-8.
pub fn update_status(
    running: &str,
    sentinel: Option<serde_json::Value>,
    run: Option<RunRecord>,
) -> serde_json::Value {
    serde_json::json!({
        "sentinel": sentinel,
        "runningVersion": running,
        "run": run,
        "lastRun": null,
        "updateAvailable": null,
        "auto": idle_status().auto,
    })
}

/// The sentinel the successor verified (or the old process rolled back).
pub fn sentinel(
    status: UpdateStatus,
    verified: Option<(&str, u32, Option<&str>)>,
    rolled_back: bool,
) -> serde_json::Value {
    let verified = verified.map(|(version, pid, mismatch)| {
        serde_json::json!({"runningVersion": version, "pid": pid, "at": GATEWAY_NOW, "mismatch": mismatch})
    });
    serde_json::json!({
        "kind": "update",
        "status": status,
        "ts": GATEWAY_NOW,
        "runId": "run-8",
        "message": null,
        "stats": {
            "mode": "npm",
            "root": "/usr/local/lib/node_modules/@molt/moltd",
            "before": {"version": "0.1.0"},
            "after": {"version": "0.2.0"},
            "steps": [],
            "reason": if rolled_back { Some("restart-unhealthy") } else { None },
            "durationMs": 4200
        },
        "verified": verified,
        "rolledBack": rolled_back,
    })
}

pub fn config_value(hash: &str) -> serde_json::Value {
    serde_json::json!({
        "path": "/home/op/.openclaw/openclaw.json",
        "config": {
            "gateway": {"port": 18789, "auth": {"mode": "token", "token": "secret"}},
            "update": {"channel": "beta", "auto": {"enabled": false}}
        },
        "hash": hash,
    })
}

/// The pid the successor of a handoff gets in these tests.
pub const SUCCESSOR_PID: u32 = 5151;

/// The successor of a handoff at `version` connected, `gap_ms` after the
/// old process closed.
pub fn successor_connected(version: &str, gap_ms: u64) -> Event {
    let mut successor = idle_status();
    successor.pid = SUCCESSOR_PID;
    successor.version = version.into();
    Event::Net(NetEvent::Connected {
        hello: Box::new(hello(successor).into()),
        handoff_gap: Some(Duration::from_millis(gap_ms)),
        outage: None,
    })
}

/// `update.status` from the successor: `version` runs, the sentinel is
/// `ok` and verified by it.
pub fn verified_status(version: &str) -> Event {
    response(
        Purpose::UpdateStatus,
        update_status(
            version,
            Some(sentinel(
                UpdateStatus::Ok,
                Some((version, SUCCESSOR_PID, None)),
                false,
            )),
            None,
        ),
    )
}

/// An incident's audit trail as moltd lists it, newest first: clients
/// over TCP and the local socket, the auto-updater, a signal; refusals and
/// a failed run among them.
pub fn audit_page() -> serde_json::Value {
    use molt_protocol::actor::Actor;
    use molt_protocol::audit::{AuditAction, AuditEntry, AuditListResult, AuditOutcome};
    let alice = || {
        Actor::client("ops-alice", "10.0.4.17:51234", "4242-7".into())
            .with_credential("gateway-token")
    };
    let bob = || {
        Actor::client("ops-bob", "the local socket, uid 1000", "4242-9".into())
            .with_credential("local-owner")
    };
    let entry = |ago_s: u64, action, actor, params, outcome, run: Option<&str>| AuditEntry {
        id: format!("audit-{ago_s}"),
        at: GATEWAY_NOW - ago_s * 1000,
        action,
        actor,
        params,
        outcome,
        run_id: run.map(Into::into),
        pid: 4242,
    };
    let entries = vec![
        entry(
            40,
            AuditAction::UpdateRun,
            bob(),
            serde_json::json!({"tag": "0.2.0", "note": "weekly patch"}),
            AuditOutcome::ok(),
            Some("run-10"),
        ),
        entry(
            180,
            AuditAction::UpdateRun,
            alice(),
            serde_json::json!({"tag": "0.3.0"}),
            AuditOutcome::failed(
                "error",
                "restart-unhealthy: successor pid 5151 exited before it was ready (exit status: 1); rolled back to 0.1.0",
            ),
            Some("run-9"),
        ),
        entry(
            600,
            AuditAction::ConfigPatch,
            bob(),
            serde_json::json!({"changes": {"models.providers.acme.apiKey": "[redacted]"}}),
            AuditOutcome::failed(
                "CONFLICT",
                "baseHash is stale: the config changed since it was read",
            ),
            None,
        ),
        entry(
            660,
            AuditAction::ConfigPatch,
            alice(),
            serde_json::json!({"changes": {"update.channel": "beta"}}),
            AuditOutcome::ok(),
            None,
        ),
        entry(
            900,
            AuditAction::KillSwitch,
            alice(),
            serde_json::json!({"enabled": true}),
            AuditOutcome::ok(),
            None,
        ),
        entry(
            3_000,
            AuditAction::SignalRestart,
            Actor::Signal {
                signal: "SIGUSR1".into(),
            },
            serde_json::json!({}),
            AuditOutcome::ok(),
            None,
        ),
        entry(
            7_200,
            AuditAction::UpdateRun,
            Actor::AutoUpdater,
            serde_json::json!({"tag": "0.1.0"}),
            AuditOutcome::ok(),
            Some("run-8"),
        ),
        entry(
            86_400,
            AuditAction::HoldAcquire,
            alice(),
            serde_json::json!({"reason": "migration", "ttlMs": 600000}),
            AuditOutcome::ok(),
            None,
        ),
    ];
    serde_json::to_value(AuditListResult {
        entries,
        next_before: Some("audit-86400".into()),
    })
    .unwrap()
}
