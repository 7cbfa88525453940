//! Golden JSON snapshots and round-trips of every frame, method and event
//! type, plus the negotiation table and request decoding.

use molt_protocol::changelog::{Changelog, ChangelogEntry};
use molt_protocol::error::{ErrorCode, ErrorShape, UnavailableReason};
use molt_protocol::event::*;
use molt_protocol::frame::{
    ClientFrame, EventFrame, FrameError, RequestFrame, ResponseFrame, ServerFrame,
};
use molt_protocol::handshake::*;
use molt_protocol::ids::*;
use molt_protocol::method::*;
use molt_protocol::status::*;
use molt_protocol::update::*;
use molt_protocol::{Request, Scope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Serializes, checks the golden snapshot, and checks that decoding the
/// JSON gives the same value back.
macro_rules! golden {
    ($name:literal, $value:expr) => {{
        let value = $value;
        insta::assert_json_snapshot!($name, value);
        assert_round_trip(&value);
    }};
}

fn assert_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "round trip of {text}");
}

fn step() -> StepRecord {
    StepRecord {
        name: "install".into(),
        command: "npm i -g --prefix /opt/stage @molt/moltd@1.2.0".into(),
        argv: vec![
            "npm".into(),
            "i".into(),
            "-g".into(),
            "--prefix".into(),
            "/opt/stage".into(),
            "@molt/moltd@1.2.0".into(),
        ],
        cwd: Some("/opt".into()),
        duration_ms: 4200,
        exit_code: Some(0),
        termination: Termination::Exited,
        stdout_head: "added 1 package".into(),
        stdout_tail: "added 1 package".into(),
        stderr_head: String::new(),
        stderr_tail: String::new(),
    }
}

fn run_record() -> RunRecord {
    RunRecord {
        run_id: RunId::from("run-1"),
        trigger: RunTrigger::Manual,
        actor: Some("molt-console".into()),
        phase: RunPhase::Verified,
        mode: InstallMode::Npm,
        root: Some("/opt/lib/node_modules/@molt/moltd".into()),
        target: RunTarget {
            version: Some("1.2.0".into()),
            tag: None,
            channel: Some(Channel::Stable),
        },
        before: VersionRef::new("1.1.0"),
        after: VersionRef::new("1.2.0"),
        note: Some("incident 42".into()),
        reason: None,
        steps: vec![step()],
        owner: RunOwner {
            pid: 4242,
            started_at: 1_700_000_000_000,
        },
        requested_at: 1_700_000_001_000,
        updated_at: 1_700_000_009_000,
        finished_at: Some(1_700_000_009_000),
        changelog: Some(changelog()),
    }
}

/// What 1.2.0's changelog says changed since 1.1.0.
fn changelog() -> Changelog {
    Changelog {
        entries: vec![ChangelogEntry {
            version: "1.2.0".into(),
            date: Some("2026-12-04".into()),
            protocol: true,
            text: "### Protocol\n- `update.status` names the run's changelog.".into(),
        }],
        truncated: false,
        problem: None,
    }
}

fn sentinel_payload() -> SentinelPayload {
    SentinelPayload {
        kind: "update".into(),
        status: UpdateStatus::Ok,
        ts: 1_700_000_005_000,
        run_id: Some(RunId::from("run-1")),
        message: Some("incident 42".into()),
        doctor_hint: None,
        stats: SentinelStats {
            mode: InstallMode::Npm,
            root: Some("/opt/lib/node_modules/@molt/moltd".into()),
            before: VersionRef::new("1.1.0"),
            after: VersionRef::new("1.2.0"),
            steps: vec![step()],
            reason: None,
            duration_ms: 4300,
        },
        verified: Some(Verified {
            running_version: "1.2.0".into(),
            pid: 4343,
            at: 1_700_000_006_000,
            mismatch: None,
        }),
        rolled_back: false,
    }
}

fn auto_state() -> AutoUpdateState {
    AutoUpdateState {
        enabled: true,
        channel: Channel::Stable,
        blocked_by: Some("env".into()),
        source: Some(EnvSource::EnvFile),
        next_check_at: Some(1_700_003_600_000),
        next_apply_at: None,
    }
}

fn update_available() -> UpdateAvailable {
    UpdateAvailable {
        current_version: "1.1.0".into(),
        latest_version: "1.2.0".into(),
        channel: Channel::Stable,
    }
}

fn status() -> StatusResult {
    StatusResult {
        version: "1.2.0".into(),
        build: BuildInfo {
            version: "1.2.0".into(),
            protocol: PROTOCOL_VERSION,
            profile: "release".into(),
        },
        pid: 4343,
        started_at: 1_700_000_006_000,
        uptime_ms: 1234,
        listen: "127.0.0.1:18789".into(),
        state_dir: "/home/op/.openclaw".into(),
        install: InstallInfo {
            surface: InstallMode::Npm,
            root: Some("/opt/lib/node_modules/@molt/moltd".into()),
            entrypoint: Some("/opt/bin/moltd".into()),
            source: "detected".into(),
        },
        supervisor: SupervisorInfo {
            kind: SupervisorKind::None,
            detail: None,
        },
        restart: RestartInfo {
            strategy: RestartStrategy::Respawn,
            phase: RestartPhase::Deferring,
            reason: Some("update.run".into()),
            fire_at: Some(1_700_000_008_000),
            forced: false,
            last_failure: Some(RestartFailure {
                at: 1_700_000_007_000,
                reason: "successor exited with status 1".into(),
                successor: None,
            }),
        },
        pending_work: PendingWork {
            in_flight_requests: 1,
            holds: 1,
            update_steps: 0,
        },
        auto: auto_state(),
        update_available: Some(update_available()),
        latest_run: Some(run_record()),
        connections: 2,
        auth: Some(molt_protocol::status::AuthStatus {
            mode: "token".to_owned(),
            read_token: true,
            short_tokens: vec!["gateway.auth.token".to_owned()],
        }),
    }
}

fn restart_scheduled() -> RestartScheduled {
    RestartScheduled {
        ok: true,
        pid: 4242,
        signal: None,
        delay_ms: 0,
        reason: "update.run".into(),
        mode: RestartStrategy::Respawn,
        coalesced: false,
        cooldown_ms_applied: 0,
    }
}

#[test]
fn frames() {
    golden!(
        "frame_req",
        ClientFrame::Req(RequestFrame {
            id: RequestId::from("1"),
            method: "health".into(),
            params: Some(json!({})),
        })
    );
    golden!(
        "frame_res_ok",
        ServerFrame::Res(ResponseFrame::success(
            RequestId::from("1"),
            json!({"ok": true})
        ))
    );
    golden!(
        "frame_res_error",
        ServerFrame::Res(ResponseFrame::failure(
            RequestId::from("2"),
            ErrorShape::unavailable(UnavailableReason::UpdateInProgress, "an update is running")
                .with_details(json!({"reason": "update-in-progress", "runId": "run-1"}))
                .retry_after(5000),
        ))
    );
    golden!(
        "frame_event",
        ServerFrame::Event(EventFrame {
            event: "tick".into(),
            payload: Some(json!({"ts": 1_700_000_000_000u64})),
            seq: Some(7),
        })
    );
}

#[test]
fn errors() {
    golden!(
        "error_missing_scope",
        ErrorShape::missing_scope(Scope::Admin, &[Scope::Admin])
    );
    golden!(
        "error_protocol_mismatch",
        ErrorShape::invalid_request("protocol mismatch")
            .with_details(json!({"expectedProtocol": PROTOCOL_VERSION}))
    );
    for code in ErrorCode::ALL {
        assert_round_trip(&ErrorShape::new(code, "x"));
    }
    let from_future: ErrorShape =
        serde_json::from_value(json!({"code": "SOMETHING_NEW", "message": "m"})).unwrap();
    assert_eq!(from_future.code, ErrorCode::Unknown);
}

#[test]
fn handshake() {
    golden!(
        "event_connect_challenge",
        ConnectChallenge {
            nonce: "3f1c".into(),
            ts: 1_700_000_000_000,
        }
    );
    golden!(
        "connect_params",
        ConnectParams {
            min_protocol: 3,
            max_protocol: 4,
            client: ClientInfo {
                display_name: None,
                id: "molt-console".into(),
                version: "0.1.0".into(),
                platform: "linux".into(),
                mode: "tui".into(),
            },
            role: "operator".into(),
            scopes: vec!["operator.read".into(), "operator.admin".into()],
            auth: ConnectAuth {
                token: Some("secret".into()),
                password: None,
            },
            device: None,
        }
    );
    golden!(
        "hello_ok",
        HelloOk {
            kind: "hello-ok".into(),
            protocol: 4,
            server: ServerInfo {
                version: "1.2.0".into(),
                conn_id: ConnId::from("c-1"),
            },
            features: Features {
                methods: vec!["health".into()],
                events: vec!["tick".into()],
            },
            snapshot: status(),
            auth: GrantedAuth {
                role: "operator".into(),
                scopes: vec![Scope::Read],
            },
            policy: Policy::default(),
        }
    );
}

#[test]
fn connect_params_ignore_unknown_fields_and_default_the_rest() {
    let params: ConnectParams = serde_json::from_value(json!({
        "minProtocol": 3, "maxProtocol": 4,
        "client": {"id": "openclaw-cli", "somethingNew": 1},
        "caps": ["x"], "locale": "en"
    }))
    .unwrap();
    assert_eq!(params.role, "operator");
    assert!(params.scopes.is_empty());
    assert_eq!(params.auth, ConnectAuth::default());
    assert_eq!(params.client.id, "openclaw-cli");
}

#[test]
fn method_params_and_results() {
    golden!(
        "health_result",
        HealthResult {
            ok: true,
            status: "live".into(),
            version: "1.2.0".into(),
            pid: 4343,
            uptime_ms: 10,
        }
    );
    golden!("status_result", status());
    golden!(
        "config_get_result",
        ConfigGetResult {
            path: "/home/op/.openclaw/openclaw.json".into(),
            config: json!({"gateway": {"port": 18789}}),
            hash: "ab12".into(),
        }
    );
    golden!(
        "config_patch_params",
        ConfigPatchParams {
            raw: r#"{"update":{"channel":"beta"}}"#.into(),
            base_hash: "ab12".into(),
        }
    );
    golden!(
        "config_patch_result",
        ConfigPatchResult {
            config: json!({"update": {"channel": "beta"}}),
            hash: "cd34".into(),
            changed_paths: vec!["update.channel".into()],
            restart: Some(restart_scheduled()),
        }
    );
    golden!(
        "restart_request_params",
        RestartRequestParams {
            reason: Some("operator".into()),
            delay_ms: Some(0),
            skip_deferral: Some(true),
        }
    );
    golden!("restart_scheduled", restart_scheduled());
    golden!(
        "update_run_params",
        UpdateRunParams {
            note: Some("incident 42".into()),
            restart_delay_ms: Some(0),
            timeout_ms: Some(600_000),
            tag: Some("1.1.0".into()),
            channel: Some(Channel::Beta),
            dry_run: Some(false),
            session_key: None,
        }
    );
    golden!(
        "update_run_result",
        UpdateRunResult {
            ok: true,
            run_id: RunId::from("run-1"),
            result: UpdateResult {
                status: UpdateStatus::Ok,
                mode: InstallMode::Npm,
                root: Some("/opt/lib/node_modules/@molt/moltd".into()),
                reason: None,
                before: VersionRef::new("1.1.0"),
                after: VersionRef::new("1.2.0"),
                steps: vec![step()],
                duration_ms: 4300,
                changelog: Some(changelog()),
            },
            restart: Some(restart_scheduled()),
            sentinel: Some(SentinelRef {
                path: "/home/op/.openclaw/restart-sentinel.json".into(),
                payload: sentinel_payload(),
            }),
        }
    );
    golden!(
        "update_status_params",
        UpdateStatusParams {
            run_id: Some(RunId::from("run-1")),
        }
    );
    golden!(
        "update_status_result",
        UpdateStatusResult {
            sentinel: Some(sentinel_payload()),
            running_version: "1.2.0".into(),
            run: None,
            last_run: Some(run_record()),
            update_available: None,
            auto: auto_state(),
        }
    );
    golden!(
        "update_check_result",
        UpdateCheckResult {
            update_available: Some(update_available()),
            current_version: "1.1.0".into(),
            latest_version: Some("1.2.0".into()),
            channel: Channel::Stable,
            checked_at: 1_700_000_000_000,
        }
    );
    golden!(
        "update_history_params",
        UpdateHistoryParams { limit: Some(20) }
    );
    golden!(
        "update_history_result",
        UpdateHistoryResult {
            runs: vec![run_record()],
        }
    );
    golden!(
        "no_auto_update_set_params",
        NoAutoUpdateSetParams { enabled: true }
    );
    golden!(
        "no_auto_update_set_result",
        NoAutoUpdateSetResult {
            enabled: true,
            source: Some(EnvSource::EnvFile),
        }
    );
    golden!(
        "hold_acquire_params",
        HoldAcquireParams {
            reason: "db migration".into(),
            ttl_ms: 60_000,
        }
    );
    golden!(
        "hold_acquire_result",
        HoldAcquireResult {
            hold_id: HoldId::from("hold-1"),
            expires_at: 1_700_000_060_000,
        }
    );
    golden!(
        "hold_release_params",
        HoldReleaseParams {
            hold_id: HoldId::from("hold-1"),
        }
    );
    golden!("hold_release_result", HoldReleaseResult { released: true });
    golden!(
        "logs_tail_params",
        LogsTailParams {
            lines: Some(200),
            follow: Some(true),
        }
    );
    golden!(
        "logs_tail_result",
        LogsTailResult {
            file: Some("/home/op/.openclaw/logs/moltd.log.2026-11-24".into()),
            lines: vec!["INFO moltd: serving".into()],
            following: true,
        }
    );
}

#[test]
fn events() {
    golden!(
        "event_tick",
        Tick {
            ts: 1_700_000_000_000
        }
    );
    golden!(
        "event_shutdown",
        Shutdown {
            reason: "restart: update.run".into(),
            restart_expected_ms: Some(1000),
        }
    );
    golden!("event_restart_scheduled", restart_scheduled());
    golden!(
        "event_restart_deferred",
        RestartDeferred {
            pending_work: PendingWork {
                in_flight_requests: 2,
                holds: 0,
                update_steps: 1,
            },
            waited_ms: 1500,
            timeout_ms: 300_000,
        }
    );
    golden!(
        "event_update_progress",
        UpdateProgress {
            run_id: RunId::from("run-1"),
            phase: RunPhase::Running,
            step: Some(StepProgress {
                name: "install".into(),
                state: StepState::Finished,
                duration_ms: Some(4200),
                exit_code: Some(0),
            }),
        }
    );
    golden!("event_update_available", update_available());
    golden!(
        "event_config_changed",
        ConfigChanged {
            hash: "cd34".into(),
            changed_paths: vec!["gateway.port".into()],
        }
    );
    golden!(
        "event_logs_line",
        LogsLine {
            line: "INFO moltd: serving".into(),
        }
    );
    for event in EventName::ALL {
        assert_eq!(EventName::from_name(event.as_str()), Some(*event));
    }
}

#[test]
fn sentinel_and_runs() {
    golden!(
        "sentinel",
        Sentinel {
            version: Sentinel::FORMAT_VERSION,
            payload: sentinel_payload(),
        }
    );
    golden!("run_record", run_record());
}

#[test]
fn an_openclaw_sentinel_without_molt_fields_decodes() {
    let sentinel: Sentinel = serde_json::from_value(json!({
        "version": 1,
        "payload": {
            "kind": "update", "status": "ok", "ts": 1, "message": null,
            "doctorHint": "run openclaw doctor",
            "stats": {"mode": "npm", "root": "/x", "before": {"version": "1"},
                      "after": {"version": "2"}, "steps": [], "reason": null, "durationMs": 5}
        }
    }))
    .unwrap();
    assert_eq!(sentinel.payload.verified, None);
    assert!(!sentinel.payload.rolled_back);
}

#[test]
fn negotiation_table() {
    let cases: &[(u32, u32, Result<u32, ()>)] = &[
        (3, 4, Ok(4)),
        (4, 4, Ok(4)),
        (3, 3, Ok(3)),
        (1, 3, Ok(3)),
        (3, 9, Ok(4)),
        (4, 9, Ok(4)),
        (1, 2, Err(())),
        (5, 9, Err(())),
        (4, 3, Err(())),
        (0, 0, Err(())),
    ];
    for &(min, max, expected) in cases {
        let got = negotiate_protocol(min, max);
        match expected {
            Ok(v) => assert_eq!(got, Ok(v), "client {min}..={max}"),
            Err(()) => {
                let err = got.expect_err("mismatch");
                assert_eq!(err.expected_protocol(), PROTOCOL_VERSION);
                assert!(err.to_string().contains("protocol mismatch"));
            }
        }
    }
}

fn frame(method: &str, params: Option<Value>) -> RequestFrame {
    RequestFrame {
        id: RequestId::from("r"),
        method: method.into(),
        params,
    }
}

#[test]
fn requests_decode_with_typed_params() {
    assert_eq!(
        Request::from_frame(&frame("health", None)),
        Ok(Request::Health)
    );
    assert_eq!(
        Request::from_frame(&frame("health", Some(json!({"extra": 1})))),
        Ok(Request::Health)
    );
    assert_eq!(
        Request::from_frame(&frame(
            "gateway.restart.request",
            Some(json!({"delayMs": 10, "unknown": true}))
        )),
        Ok(Request::RestartRequest(RestartRequestParams {
            reason: None,
            delay_ms: Some(10),
            skip_deferral: None,
        }))
    );
    assert_eq!(
        Request::from_frame(&frame("update.run", None)),
        Ok(Request::UpdateRun(UpdateRunParams::default()))
    );
    for method in Method::ALL {
        assert_eq!(Method::from_name(method.as_str()), Some(*method));
    }
}

#[test]
fn bad_requests_name_the_problem() {
    let cases: &[(&str, Option<Value>, &str)] = &[
        ("no.such.method", None, "unknown method: no.such.method"),
        (
            "gateway.restart.request",
            Some(json!({"delayMs": "soon"})),
            "delayMs",
        ),
        ("config.patch", None, "params are required"),
        ("config.patch", Some(json!({"raw": "{}"})), "baseHash"),
        (
            "gateway.hold.acquire",
            Some(json!({"reason": "x", "ttlMs": -1})),
            "ttlMs",
        ),
        ("health", Some(json!([1])), "expected an object"),
        (
            "update.noAutoUpdate.set",
            Some(json!({"enabled": "yes"})),
            "enabled",
        ),
    ];
    for (method, params, needle) in cases {
        let err = Request::from_frame(&frame(method, params.clone())).expect_err(method);
        assert_eq!(err.code, ErrorCode::InvalidRequest, "{method}");
        assert!(err.message.contains(needle), "{method}: {}", err.message);
    }
}

#[test]
fn scopes_gate_every_changing_method() {
    let read_only = [
        Method::Connect,
        Method::Health,
        Method::Status,
        Method::ConfigGet,
        Method::UpdateStatus,
        Method::UpdateHistory,
        Method::LogsTail,
        Method::AuditList,
    ];
    for method in Method::ALL {
        let expected = if read_only.contains(method) {
            Scope::Read
        } else {
            Scope::Admin
        };
        assert_eq!(method.required_scope(), expected, "{}", method.as_str());
    }
    assert!(Scope::Admin.satisfies(Scope::Read));
    assert!(!Scope::Read.satisfies(Scope::Admin));
    assert_eq!(Scope::from_wire("operator.write"), None);
}

#[test]
fn client_frames_are_parsed_strictly_on_shape_and_leniently_on_extras() {
    let req =
        ClientFrame::parse(r#"{"type":"req","id":"1","method":"health","extra":[1]}"#).unwrap();
    assert_eq!(req.method, "health");
    assert!(matches!(
        ClientFrame::parse("{not json"),
        Err(FrameError::Malformed(_))
    ));
    assert!(matches!(
        ClientFrame::parse("[]"),
        Err(FrameError::Invalid(_))
    ));
    assert!(matches!(
        ClientFrame::parse(r#"{"type":"event","event":"x"}"#),
        Err(FrameError::Invalid(m)) if m.contains("\"event\"")
    ));
    assert!(matches!(
        ClientFrame::parse(r#"{"type":"req","method":"health"}"#),
        Err(FrameError::Invalid(m)) if m.contains("id")
    ));
    let event =
        ServerFrame::parse(r#"{"type":"event","event":"tick","seq":1,"new":true}"#).unwrap();
    assert!(matches!(event, ServerFrame::Event(e) if e.seq == Some(1)));
}

#[test]
fn response_into_result() {
    let ok = ResponseFrame::success(RequestId::from("1"), json!({"released": true}));
    assert_eq!(
        ok.into_result::<HoldReleaseResult>(),
        Ok(HoldReleaseResult { released: true })
    );
    let err = ResponseFrame::failure(RequestId::from("1"), ErrorShape::not_found("no hold"));
    assert_eq!(
        err.into_result::<HoldReleaseResult>().unwrap_err().code,
        ErrorCode::NotFound
    );
    let unavailable = ErrorShape::unavailable(UnavailableReason::GatewayRestarting, "x");
    assert_eq!(
        unavailable.unavailable_reason(),
        Some(UnavailableReason::GatewayRestarting)
    );
}

#[test]
fn every_reason_code_is_documented_and_read_back_from_a_reason() {
    let docs = include_str!("../../docs/updating.md");
    for code in ReasonCode::ALL {
        assert!(
            docs.contains(&format!("`{code}`")) || docs.contains(&format!("`{code}: ")),
            "{code} is not in docs/updating.md"
        );
        assert_eq!(ReasonCode::of(code.as_str()), Some(code));
        assert_eq!(ReasonCode::of(&format!("{code}: a detail")), Some(code));
    }
    assert_eq!(ReasonCode::of("up-to-dates"), None);
    assert_eq!(
        ReasonCode::of("resolved at start: the target version runs"),
        None
    );
}

#[test]
fn update_run_commands_are_bounded_by_timeout_ms_each() {
    let default = UpdateRunParams::default();
    assert_eq!(default.step_timeout_ms(), DEFAULT_UPDATE_STEP_TIMEOUT_MS);
    assert_eq!(
        default.commands_bound_ms(),
        MAX_UPDATE_RUN_COMMANDS * DEFAULT_UPDATE_STEP_TIMEOUT_MS
    );
    let bounded = UpdateRunParams {
        timeout_ms: Some(120_000),
        ..UpdateRunParams::default()
    };
    assert_eq!(
        bounded.commands_bound_ms(),
        MAX_UPDATE_RUN_COMMANDS * 120_000
    );
}

#[test]
fn wire_names_used_as_metric_labels_match_their_serde_names() {
    let serde_name = |v: serde_json::Value| v.as_str().unwrap().to_owned();
    for code in ErrorCode::ALL {
        assert_eq!(
            code.as_str(),
            serde_name(serde_json::to_value(code).unwrap())
        );
    }
    for phase in [
        RunPhase::Requested,
        RunPhase::Running,
        RunPhase::Restarting,
        RunPhase::Verified,
        RunPhase::Failed,
        RunPhase::RolledBack,
        RunPhase::Skipped,
    ] {
        assert_eq!(
            phase.as_str(),
            serde_name(serde_json::to_value(phase).unwrap())
        );
    }
    for trigger in [RunTrigger::Manual, RunTrigger::Auto] {
        assert_eq!(
            trigger.as_str(),
            serde_name(serde_json::to_value(trigger).unwrap())
        );
    }
}
