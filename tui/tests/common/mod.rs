//! Fixed fixtures for reducer and rendering tests: no clocks, no I/O.
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
        }),
        connections: 2,
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
        features: Features {
            methods: vec!["status".into()],
            events: vec!["tick".into()],
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
        hello: Box::new(hello(status)),
        handoff_gap: None,
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
