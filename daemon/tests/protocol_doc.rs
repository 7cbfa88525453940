//! docs/protocol.md against the code: the method table and the `hello-ok`
//! example name exactly what this version serves, with each method's
//! scope; the close codes are [`ServerClose::ALL`]; the error table names
//! every [`ErrorCode`], each one the daemon sends; the status table names
//! every field of [`StatusResult`]; the event table names every event,
//! each one the daemon sends. A method, event, close, code or field added
//! without the doc fails here.

use std::collections::BTreeSet;

use molt_daemon::methods::SERVED;
use molt_e2e::doc;
use molt_protocol::Method;
use molt_protocol::close::ServerClose;
use molt_protocol::error::ErrorCode;
use molt_protocol::event::EventName;
use molt_protocol::scope::Scope;
use molt_protocol::status::{
    AuthStatus, AutoUpdateState, BuildInfo, EnvSource, InstallInfo, PendingWork, RestartFailure,
    RestartInfo, RestartPhase, RestartStrategy, StatusResult, SupervisorInfo, SupervisorKind,
};
use molt_protocol::update::{Channel, InstallMode};
use serde_json::Value;

const DOC: &str = include_str!("../../docs/protocol.md");

/// The rows of the Scopes section's method table.
fn method_table() -> doc::Table {
    doc::table_with(DOC, "Scopes", &["method", "scope", "params", "result"])
}

/// The wire names in a `{a, b?, c}` cell; `none` is no params.
fn names(cell: &str) -> Vec<String> {
    if cell == "none" {
        return Vec::new();
    }
    let ticked = doc::ticked(cell);
    let [object] = ticked.as_slice() else {
        panic!("expected one `{{…}}` in {cell:?}");
    };
    object
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .map(|name| name.trim().trim_end_matches('?').to_owned())
        .collect()
}

/// The params and result types of a method, as field lists.
fn shapes(method: Method) -> (Vec<&'static str>, Vec<&'static str>) {
    use molt_protocol::audit::{AuditListParams, AuditListResult};
    use molt_protocol::method::*;
    let none = Vec::new;
    let of = |f: &'static [&'static str]| f.to_vec();
    match method {
        Method::Connect => (none(), none()),
        Method::Health => (none(), of(doc::fields::<HealthResult>())),
        Method::Status => (none(), of(doc::fields::<StatusResult>())),
        Method::ConfigGet => (none(), of(doc::fields::<ConfigGetResult>())),
        Method::ConfigPatch => (
            of(doc::fields::<ConfigPatchParams>()),
            of(doc::fields::<ConfigPatchResult>()),
        ),
        Method::RestartRequest => (
            of(doc::fields::<RestartRequestParams>()),
            of(doc::fields::<RestartScheduled>()),
        ),
        Method::UpdateRun => (
            of(doc::fields::<UpdateRunParams>()),
            of(doc::fields::<UpdateRunResult>()),
        ),
        Method::UpdateStatus => (
            of(doc::fields::<UpdateStatusParams>()),
            of(doc::fields::<UpdateStatusResult>()),
        ),
        Method::UpdateCheck => (none(), of(doc::fields::<UpdateCheckResult>())),
        Method::UpdateHistory => (
            of(doc::fields::<UpdateHistoryParams>()),
            of(doc::fields::<UpdateHistoryResult>()),
        ),
        Method::NoAutoUpdateSet => (
            of(doc::fields::<NoAutoUpdateSetParams>()),
            of(doc::fields::<NoAutoUpdateSetResult>()),
        ),
        Method::HoldAcquire => (
            of(doc::fields::<HoldAcquireParams>()),
            of(doc::fields::<HoldAcquireResult>()),
        ),
        Method::HoldRelease => (
            of(doc::fields::<HoldReleaseParams>()),
            of(doc::fields::<HoldReleaseResult>()),
        ),
        Method::LogsTail => (
            of(doc::fields::<LogsTailParams>()),
            of(doc::fields::<LogsTailResult>()),
        ),
        Method::AuditList => (
            of(doc::fields::<AuditListParams>()),
            of(doc::fields::<AuditListResult>()),
        ),
    }
}

fn method_rows() -> Vec<(String, String)> {
    method_table()
        .rows
        .iter()
        .map(|row| (row[0].trim_matches('`').to_owned(), row[1].clone()))
        .collect()
}

#[test]
fn the_method_table_gives_each_method_its_params_and_result() {
    for row in &method_table().rows {
        let name = row[0].trim_matches('`');
        let method = Method::from_name(name).unwrap_or_else(|| panic!("no method {name}"));
        let (params, result) = shapes(method);
        assert_eq!(names(&row[2]), params, "{name} params");
        if method == Method::Status {
            assert!(row[3].contains("#status"), "status points at its table");
        } else {
            assert_eq!(names(&row[3]), result, "{name} result");
        }
    }
}

/// The JSON array after `"<key>": [` in the `hello-ok` example.
fn example_list(key: &str) -> Vec<String> {
    let start = DOC
        .find(&format!("\"{key}\": ["))
        .unwrap_or_else(|| panic!("no {key} in the hello-ok example"));
    let rest = &DOC[start..];
    let list = &rest[rest.find('[').unwrap()..=rest.find(']').unwrap()];
    serde_json::from_str(list).unwrap_or_else(|e| panic!("{key}: {e}: {list}"))
}

#[test]
fn the_method_table_names_every_served_method_with_its_scope() {
    let scope = |m: &Method| match m.required_scope() {
        Scope::Read => "read",
        Scope::Admin => "admin",
    };
    let mut documented = method_rows();
    documented.sort();
    let mut served: Vec<(String, String)> = SERVED
        .iter()
        .map(|m| (m.as_str().to_owned(), scope(m).to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

#[test]
fn the_hello_ok_example_lists_what_hello_ok_sends() {
    let methods: Vec<String> = SERVED.iter().map(|m| m.as_str().to_owned()).collect();
    assert_eq!(example_list("methods"), methods);
    let events: Vec<String> = EventName::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(example_list("events"), events);

    // The policy, whose numbers the limits table repeats.
    let start = DOC
        .find("\"policy\": {")
        .expect("a policy in the hello-ok example");
    let object = &DOC[start + "\"policy\": ".len()..];
    let object = &object[..=object.find('}').unwrap()];
    let shown: Value = serde_json::from_str(object).unwrap();
    let policy = serde_json::to_value(molt_protocol::handshake::Policy::default()).unwrap();
    assert_eq!(shown, policy, "the hello-ok example's policy");
}

#[test]
fn the_close_table_is_every_close_moltd_sends() {
    let table = doc::table(DOC, "Close codes");
    let documented: Vec<(String, String)> = table
        .rows
        .iter()
        .map(|row| (row[0].clone(), row[1].trim_matches('`').to_owned()))
        .collect();
    let sent: Vec<(String, String)> = ServerClose::ALL
        .iter()
        .map(|close| {
            let reason = if close.has_detail() {
                format!("{}: …", close.reason())
            } else {
                close.reason().to_owned()
            };
            (close.code().to_string(), reason)
        })
        .collect();
    assert_eq!(documented, sent, "docs/protocol.md, \"Close codes\"");
}

/// Where the daemon builds an error of each code: `ErrorCode::X`, or the
/// `ErrorShape` shorthand for it.
fn constructors(code: ErrorCode) -> &'static [&'static str] {
    match code {
        ErrorCode::InvalidRequest => &["ErrorCode::InvalidRequest", "invalid_request("],
        ErrorCode::Forbidden => &["ErrorCode::Forbidden", "missing_scope("],
        ErrorCode::Unavailable => &["ErrorCode::Unavailable", "ErrorShape::unavailable("],
        ErrorCode::NotFound => &["ErrorCode::NotFound", "ErrorShape::not_found("],
        ErrorCode::Conflict => &["ErrorCode::Conflict", "ErrorShape::conflict("],
        ErrorCode::RateLimited => &["ErrorCode::RateLimited"],
        ErrorCode::Internal => &["ErrorCode::Internal", "ErrorShape::internal("],
        ErrorCode::Unknown => &[],
    }
}

/// The daemon's sources outside its unit tests.
fn daemon_sources() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                // Inline unit tests sit at the end of a file.
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                out.push_str(text);
            }
        }
    }
    let mut out = String::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut out,
    );
    out
}

#[test]
fn the_error_table_names_every_code_and_the_daemon_sends_each() {
    let table = doc::table(DOC, "Errors");
    let documented: Vec<String> = table
        .column("code")
        .into_iter()
        .filter(|cell| !cell.is_empty())
        .flat_map(|cell| doc::ticked(cell).into_iter().map(str::to_owned))
        .collect();
    let defined: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(
        documented.iter().collect::<BTreeSet<_>>(),
        defined.iter().collect::<BTreeSet<_>>(),
        "docs/protocol.md, \"Errors\""
    );
    assert_eq!(documented.len(), defined.len(), "a code listed twice");
    for row in &table.rows {
        assert!(
            !row[1].contains("Not sent") && !row[1].contains("not sent by"),
            "every code is sent: {row:?}"
        );
    }
    let sources = daemon_sources();
    for code in ErrorCode::ALL {
        assert!(
            constructors(code).iter().any(|c| sources.contains(c)),
            "{} is documented as sent, but daemon/src never builds one",
            code.as_str()
        );
    }
}

/// A `status` result with every field present.
fn full_status() -> StatusResult {
    StatusResult {
        version: "1.2.0".into(),
        build: BuildInfo {
            version: "1.2.0".into(),
            protocol: 4,
            profile: "release".into(),
        },
        pid: 1,
        started_at: 1,
        uptime_ms: 1,
        listen: "127.0.0.1:18789".into(),
        state_dir: "/srv/molt".into(),
        install: InstallInfo {
            surface: InstallMode::Npm,
            root: Some("/opt".into()),
            entrypoint: Some("/opt/bin/moltd".into()),
            source: "detected".into(),
        },
        supervisor: SupervisorInfo {
            kind: SupervisorKind::Systemd,
            detail: Some("NOTIFY_SOCKET".into()),
        },
        restart: RestartInfo {
            strategy: RestartStrategy::Respawn,
            phase: RestartPhase::Scheduled,
            reason: Some("update.run".into()),
            fire_at: Some(2),
            forced: false,
            last_failure: Some(RestartFailure {
                at: 1,
                reason: "successor exited".into(),
                successor: None,
            }),
        },
        pending_work: PendingWork::default(),
        auto: AutoUpdateState {
            enabled: true,
            channel: Channel::Stable,
            blocked_by: Some("env".into()),
            source: Some(EnvSource::EnvFile),
            next_check_at: Some(3),
            next_apply_at: Some(4),
        },
        update_available: None,
        latest_run: None,
        connections: 1,
        auth: Some(AuthStatus {
            mode: "token".into(),
            read_token: true,
            short_tokens: vec![],
        }),
    }
}

/// Fields whose value is a type of its own, described with its method.
const OPAQUE: &[&str] = &["updateAvailable", "latestRun"];

#[test]
fn the_status_table_names_every_status_field() {
    let status = serde_json::to_value(full_status()).unwrap();
    let Value::Object(fields) = &status else {
        unreachable!()
    };
    let table = doc::table_with(DOC, "status", &["field", "meaning"]);
    let mut documented = BTreeSet::new();
    for row in &table.rows {
        for name in doc::ticked(&row[0]) {
            documented.insert(name.split('.').next().unwrap().to_owned());
            // Each field's own fields are named in its row.
            if let Some(Value::Object(inner)) = fields.get(name)
                && !OPAQUE.contains(&name)
            {
                let named: BTreeSet<&str> = doc::ticked(&row[1])
                    .into_iter()
                    .flat_map(|t| t.split([':', ' ']).next())
                    .collect();
                for key in inner.keys() {
                    assert!(
                        named.contains(key.as_str()),
                        "status.{name}.{key} is not described in its row: {row:?}"
                    );
                }
            }
        }
    }
    let served: BTreeSet<String> = fields.keys().cloned().collect();
    assert_eq!(documented, served, "docs/protocol.md, \"status\"");

    // The example shows the same fields.
    let example = doc::code_blocks(doc::section(DOC, "status"), "json")[0];
    let example: Value = serde_json::from_str(example).unwrap();
    let shown: BTreeSet<String> = example.as_object().unwrap().keys().cloned().collect();
    assert_eq!(shown, served, "the status example");
}

#[test]
fn the_event_table_names_every_event() {
    let table = doc::table_with(DOC, "Events", &["event", "payload", "sent"]);
    let documented: Vec<String> = table
        .column("event")
        .iter()
        .map(|cell| cell.trim_matches('`').to_owned())
        .collect();
    let defined: Vec<String> = EventName::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(
        documented.iter().collect::<BTreeSet<_>>(),
        defined.iter().collect::<BTreeSet<_>>(),
        "docs/protocol.md, \"Events\""
    );
    let sources = daemon_sources();
    for event in EventName::ALL {
        let variant = format!("{event:?}");
        assert!(
            sources.contains(&format!("EventName::{variant}")),
            "{} is documented as sent, but daemon/src never sends one",
            event.as_str()
        );
    }
}
