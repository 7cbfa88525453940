//! Method handlers: a typed request in, a JSON result or a typed error out.

mod audited;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use molt_protocol::error::{ErrorCode, ErrorShape, UnavailableReason};
use molt_protocol::event::{ConfigChanged, EventName};
use molt_protocol::handshake::{Features, GrantedAuth, HelloOk, Policy, ServerInfo};
use molt_protocol::ids::ConnId;
use molt_protocol::limits::{self, TextLimit};
use molt_protocol::method::{
    ConfigGetResult, ConfigPatchParams, ConfigPatchResult, HealthResult, HoldAcquireParams,
    HoldAcquireResult, HoldReleaseParams, HoldReleaseResult, LogsTailParams, LogsTailResult,
    Method, NoAutoUpdateSetParams, NoAutoUpdateSetResult, RestartRequestParams, RestartScheduled,
};
use molt_protocol::{Request, Scope};
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit;
use crate::clock::unix_ms;
use crate::config::{PatchError, secrets};
use crate::gateway::{Caller, Gateway};
use crate::logging;
use crate::restart::engine::RestartRequest;
use crate::restart::scheduler::RequesterId;
use crate::update::check::CheckError;
use crate::update::flow::{self, Refused, RunRequest};
use crate::update::{check, sentinel};
use molt_protocol::method::{
    UpdateHistoryResult, UpdateRunParams, UpdateRunResult, UpdateStatusParams, UpdateStatusResult,
};
use molt_protocol::update::RunTrigger;

/// The methods this gateway serves (advertised in `hello-ok`).
pub const SERVED: &[Method] = &[
    Method::Health,
    Method::Status,
    Method::ConfigGet,
    Method::ConfigPatch,
    Method::RestartRequest,
    Method::UpdateRun,
    Method::UpdateStatus,
    Method::UpdateCheck,
    Method::UpdateHistory,
    Method::HoldAcquire,
    Method::HoldRelease,
    Method::LogsTail,
    Method::NoAutoUpdateSet,
    Method::AuditList,
];

const DEFAULT_TAIL_LINES: u32 = 100;
const MAX_TAIL_LINES: u32 = 5000;
/// What one `logs.tail` answer may hold: a client that asks for many
/// answers at once must not cost much.
pub const MAX_TAIL_BYTES: usize = 512 * 1024;

/// Per-session switches a handler may flip.
#[derive(Debug, Default, Clone)]
pub struct SessionFlags {
    pub follow_logs: Arc<AtomicBool>,
}

/// Checks the caller's scope, then runs the handler. A request that
/// changes something is written to the audit trail before it is answered,
/// refused or not.
pub async fn dispatch(
    gw: &Gateway,
    caller: &Caller,
    flags: &SessionFlags,
    request: Request,
) -> Result<Value, ErrorShape> {
    let secrets = match &request {
        Request::ConfigPatch(_) => crate::config::secrets::values(&gw.config().get().0),
        _ => Vec::new(),
    };
    let audited = audited::described(&request, &secrets);
    let result = handle(gw, caller, flags, request).await;
    if let Some((action, params)) = audited {
        let (outcome, run_id) = audited::outcome(&result);
        gw.audit(audit::entry(
            action,
            caller.actor(),
            params,
            outcome,
            run_id,
        ))
        .await;
    }
    result
}

async fn handle(
    gw: &Gateway,
    caller: &Caller,
    flags: &SessionFlags,
    request: Request,
) -> Result<Value, ErrorShape> {
    let method = request.method();
    let required = method.required_scope();
    if !caller.scopes.iter().any(|s| s.satisfies(required)) {
        return Err(ErrorShape::missing_scope(required, &[required]));
    }
    match request {
        Request::Connect(_) => Err(ErrorShape::invalid_request(
            "already connected: connect is only valid as the first request",
        )),
        Request::Health => to_value(health(gw)),
        Request::Status => to_value(gw.status(1)),
        // The config file is read (and written) on the blocking pool.
        Request::ConfigGet => on_blocking_pool(gw, config_get).await,
        Request::ConfigPatch(params) => {
            let caller = caller.clone();
            on_blocking_pool(gw, move |gw| config_patch(gw, &caller, params)).await
        }
        Request::RestartRequest(params) => restart_request(gw, caller, params),
        Request::UpdateRun(params) => to_value(update_run(gw, caller, params).await?),
        Request::UpdateStatus(params) => to_value(update_status(gw, params).await?),
        Request::UpdateCheck => to_value(update_check(gw).await?),
        Request::UpdateHistory(params) => {
            let (store, limit) = (gw.runs().clone(), params.limit.unwrap_or(20).clamp(1, 500));
            let runs = blocking(move || store.history(limit as usize)).await?;
            to_value(UpdateHistoryResult { runs })
        }
        Request::HoldAcquire(params) => hold_acquire(gw, params),
        Request::HoldRelease(params) => to_value(hold_release(gw, params)?),
        Request::LogsTail(params) => logs_tail(gw, flags, params).await,
        Request::NoAutoUpdateSet(params) => {
            on_blocking_pool(gw, move |gw| no_auto_update_set(gw, params)).await
        }
        Request::AuditList(params) => {
            let trail = gw.audit_log().clone();
            let listed = blocking(move || trail.list(&params)).await?;
            listed
                .map_err(|e| match e {
                    audit::ListError::Io(e) => ErrorShape::internal(e.to_string()),
                    refused => ErrorShape::invalid_request(refused.to_string()),
                })
                .and_then(to_value)
        }
    }
}

fn to_value(value: impl Serialize) -> Result<Value, ErrorShape> {
    serde_json::to_value(value).map_err(|e| ErrorShape::internal(e.to_string()))
}

/// The `hello-ok` answer to a granted `connect`.
pub fn hello(gw: &Gateway, protocol: u32, conn_id: ConnId, scopes: Vec<Scope>) -> HelloOk {
    HelloOk {
        kind: "hello-ok".to_owned(),
        protocol,
        server: ServerInfo {
            version: gw.identity().version.clone(),
            conn_id,
        },
        features: Features {
            methods: SERVED.iter().map(|m| m.as_str().to_owned()).collect(),
            events: EventName::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        },
        snapshot: gw.status(0),
        auth: GrantedAuth {
            role: "operator".to_owned(),
            scopes,
        },
        policy: Policy::default(),
    }
}

/// A handler that reads or writes files, run on the blocking pool.
async fn on_blocking_pool(
    gw: &Gateway,
    handler: impl FnOnce(&Gateway) -> Result<Value, ErrorShape> + Send + 'static,
) -> Result<Value, ErrorShape> {
    let gw = gw.clone();
    blocking(move || handler(&gw)).await?
}

/// Blocking reads of state files, off the runtime.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ErrorShape> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| ErrorShape::internal(e.to_string()))
}

async fn update_run(
    gw: &Gateway,
    caller: &Caller,
    params: UpdateRunParams,
) -> Result<UpdateRunResult, ErrorShape> {
    let request = RunRequest {
        params,
        trigger: RunTrigger::Manual,
        actor: Some(caller.actor().to_string()),
        requester: Some(RequesterId(caller.conn)),
    };
    flow::run(&gw.run_context(), request)
        .await
        .map_err(|refused| refused_error(&refused))
}

/// A refusal before any run exists, as the wire states it.
fn refused_error(refused: &Refused) -> ErrorShape {
    let message = refused.to_string();
    match refused {
        Refused::InvalidParams(_) => ErrorShape::invalid_request(message),
        Refused::Busy(run_id) => {
            ErrorShape::unavailable(UnavailableReason::UpdateInProgress, message)
                .with_details(json!({ "reason": "update-in-progress", "runId": run_id }))
                .retry_after(5000)
        }
        Refused::Stopping => {
            ErrorShape::unavailable(UnavailableReason::GatewayRestarting, message).retry_after(1000)
        }
    }
}

/// `update.check`, announcing what it found (`update.available`).
async fn update_check(
    gw: &Gateway,
) -> Result<molt_protocol::method::UpdateCheckResult, ErrorShape> {
    let checked = check::check(&gw.run_context(), gw.check_flight())
        .await
        .map_err(|e| check_error(&e))?;
    gw.announce_update(checked.update_available.clone());
    Ok(checked)
}

/// Why `update.check` could not answer, as the wire states it: the
/// registry not answering may pass, a wrong install will not.
fn check_error(error: &CheckError) -> ErrorShape {
    let message = error.to_string();
    match error {
        CheckError::Query(_) => {
            ErrorShape::new(ErrorCode::Unavailable, message).retry_after(30_000)
        }
        CheckError::ToolMissing(_) | CheckError::Metadata(_) | CheckError::RunningNotSemver(_) => {
            ErrorShape::internal(message)
        }
        CheckError::NoEntrypoint
        | CheckError::Layout(_)
        | CheckError::NotUpdatable(_)
        | CheckError::NoTarget(_)
        | CheckError::NoReleaseTag(_) => ErrorShape::invalid_request(message),
    }
}

/// What runs now (this process's version, not the disk's), the sentinel
/// and the runs.
async fn update_status(
    gw: &Gateway,
    params: UpdateStatusParams,
) -> Result<UpdateStatusResult, ErrorShape> {
    if let Some(run_id) = &params.run_id {
        within(&limits::RUN_ID, run_id.as_str())?;
    }
    let (store, sentinel_path) = (gw.runs().clone(), gw.paths().sentinel_path.clone());
    let (run, sentinel, last_run) = blocking(move || {
        let run = match &params.run_id {
            Some(run_id) => Some(
                store
                    .get(run_id)
                    .ok_or_else(|| ErrorShape::not_found(format!("no update run {run_id}")))?,
            ),
            None => None,
        };
        let sentinel = sentinel::read_or_quarantine(&sentinel_path).map(|doc| doc.payload);
        Ok::<_, ErrorShape>((run, sentinel, store.latest()))
    })
    .await??;
    Ok(UpdateStatusResult {
        sentinel,
        running_version: gw.identity().version.clone(),
        run,
        last_run,
        update_available: gw.update_available(),
        auto: gw.auto_update_state(),
    })
}

fn health(gw: &Gateway) -> HealthResult {
    let id = gw.identity();
    HealthResult {
        ok: true,
        status: "live".to_owned(),
        version: id.version.clone(),
        pid: id.pid,
        uptime_ms: id.uptime_ms(),
    }
}

fn config_get(gw: &Gateway) -> Result<Value, ErrorShape> {
    let mut store = gw.config();
    // Hand edits since the last read are served, not a stale copy, and the
    // running settings follow them.
    match store.reload() {
        Ok(true) => match store.settings() {
            Ok(settings) => gw.set_settings(settings),
            Err(e) => tracing::warn!(
                "config edited by hand is invalid, keeping the running settings: {e}"
            ),
        },
        Ok(false) => {}
        Err(e) => return Err(ErrorShape::internal(e.to_string())),
    }
    let (config, hash) = store.get();
    to_value(ConfigGetResult {
        path: store.path().display().to_string(),
        config: secrets::redact(&config),
        hash,
    })
}

/// Keys whose change only takes effect in a new process.
const RESTART_KEYS: &[&str] = &[
    "gateway.port",
    "gateway.bind",
    "gateway.customBindHost",
    "gateway.auth",
    "gateway.tls",
];

fn restart_request(
    gw: &Gateway,
    caller: &Caller,
    params: RestartRequestParams,
) -> Result<Value, ErrorShape> {
    let reason = params
        .reason
        .unwrap_or_else(|| "gateway.restart.request".to_owned());
    if reason.trim().is_empty() {
        return Err(ErrorShape::invalid_request("reason must not be blank"));
    }
    within(&limits::RESTART_REASON, &reason)?;
    let request = RestartRequest {
        reason,
        delay_ms: params.delay_ms,
        skip_deferral: params.skip_deferral.unwrap_or(false),
        ..RestartRequest::default()
    };
    to_value(schedule_restart(gw, caller, request)?)
}

/// Schedules through the one scheduler and tells every client.
pub fn schedule_restart(
    gw: &Gateway,
    caller: &Caller,
    mut request: RestartRequest,
) -> Result<RestartScheduled, ErrorShape> {
    if !gw.settings().restart_enabled {
        return Err(ErrorShape::invalid_request(
            "restarts are disabled here: commands.restart is false",
        ));
    }
    request.requester = Some(RequesterId(caller.conn));
    let scheduled = gw
        .restart()
        .request(request)
        .map_err(|e| {
            ErrorShape::unavailable(UnavailableReason::GatewayRestarting, e.to_string())
                .retry_after(1000)
        })?
        .to_wire();
    gw.broadcast(EventName::RestartScheduled, &scheduled);
    Ok(scheduled)
}

fn config_patch(
    gw: &Gateway,
    caller: &Caller,
    params: ConfigPatchParams,
) -> Result<Value, ErrorShape> {
    let (outcome, settings) = {
        let mut store = gw.config();
        let outcome = store.patch(&params.raw, &params.base_hash);
        (outcome, store.settings())
    };
    let outcome = outcome.map_err(|e| match e {
        PatchError::Conflict { ref current_hash } => {
            ErrorShape::conflict(e.to_string()).with_details(json!({ "currentHash": current_hash }))
        }
        PatchError::Write(_) | PatchError::Disk(_) => {
            ErrorShape::internal(format!("config not written: {e}"))
        }
        PatchError::InvalidPatch(_) | PatchError::Invalid(_) | PatchError::Sentinel(_) => {
            ErrorShape::invalid_request(e.to_string())
        }
        PatchError::FileOnly(ref refused) => ErrorShape::new(
            ErrorCode::Forbidden,
            format!("{e} (the file: {})", gw.paths().config_path.display()),
        )
        .with_details(json!({ "code": "FILE_EDIT_REQUIRED", "key": refused.key })),
    })?;
    if let Ok(settings) = settings {
        gw.set_settings(settings);
    }
    tracing::info!(paths = ?outcome.changed_paths, "config patched");
    if !outcome.changed_paths.is_empty() {
        gw.broadcast(
            EventName::ConfigChanged,
            ConfigChanged {
                hash: outcome.hash.clone(),
                changed_paths: outcome.changed_paths.clone(),
            },
        );
    }
    let needs_restart = outcome
        .changed_paths
        .iter()
        .any(|path| RESTART_KEYS.iter().any(|key| path.starts_with(key)));
    // The change is saved either way; a refused restart is reported in the
    // log and the next restart applies it.
    let restart = needs_restart
        .then(|| schedule_restart(gw, caller, RestartRequest::new("config.patch")).ok())
        .flatten();
    to_value(ConfigPatchResult {
        config: secrets::redact(&outcome.config),
        hash: outcome.hash,
        changed_paths: outcome.changed_paths,
        restart,
    })
}

/// `update.noAutoUpdate.set`: the kill switch in `.env`, live. A value in
/// the process env wins over `.env`, so changing it here is refused
/// (`CONFLICT`) rather than written where it would not take effect.
fn no_auto_update_set(gw: &Gateway, params: NoAutoUpdateSetParams) -> Result<Value, ErrorShape> {
    use crate::autoupdate::kill_switch::{NO_AUTO_UPDATE_ENV, SetError};
    let switch = gw.set_kill_switch(params.enabled).map_err(|e| match e {
        SetError::ProcessEnv { ref value } => ErrorShape::conflict(e.to_string()).with_details(
            json!({ "variable": NO_AUTO_UPDATE_ENV, "source": "process-env", "value": value }),
        ),
        SetError::File(_) => ErrorShape::internal(format!("kill switch not changed: {e}")),
    })?;
    to_value(NoAutoUpdateSetResult {
        enabled: switch.blocked(),
        source: switch.source,
    })
}

fn hold_acquire(gw: &Gateway, params: HoldAcquireParams) -> Result<Value, ErrorShape> {
    let now = Instant::now();
    let (hold_id, expires) = gw
        .holds()
        .acquire(now, &params.reason, Duration::from_millis(params.ttl_ms))
        .map_err(|e| ErrorShape::invalid_request(format!("gateway.hold.acquire: {e}")))?;
    tracing::info!(%hold_id, reason = %params.reason, ttl_ms = params.ttl_ms, "hold acquired");
    to_value(HoldAcquireResult {
        hold_id,
        expires_at: unix_ms() + expires.duration_since(now).as_millis() as u64,
    })
}

fn hold_release(gw: &Gateway, params: HoldReleaseParams) -> Result<HoldReleaseResult, ErrorShape> {
    within(&limits::HOLD_ID, params.hold_id.as_str())?;
    let released = gw.holds().release(Instant::now(), &params.hold_id);
    tracing::info!(hold_id = %params.hold_id, released, "hold release");
    Ok(HoldReleaseResult { released })
}

/// A client string within its limit, else `INVALID_REQUEST` naming the
/// field and the limit.
fn within(limit: &TextLimit, value: &str) -> Result<(), ErrorShape> {
    limit
        .check(value)
        .map_err(|e| ErrorShape::invalid_request(e.to_string()))
}

async fn logs_tail(
    gw: &Gateway,
    flags: &SessionFlags,
    params: LogsTailParams,
) -> Result<Value, ErrorShape> {
    let count = params
        .lines
        .unwrap_or(DEFAULT_TAIL_LINES)
        .min(MAX_TAIL_LINES) as usize;
    let file = logging::current_log_file(&gw.paths().logs_dir);
    let lines = match file.clone() {
        Some(path) => {
            tokio::task::spawn_blocking(move || logging::tail_lines(&path, count, MAX_TAIL_BYTES))
                .await
                .map_err(|e| ErrorShape::internal(e.to_string()))?
                .map_err(|e| ErrorShape::internal(format!("log file not readable: {e}")))?
        }
        None => Vec::new(),
    };
    let following = params.follow.unwrap_or(false);
    flags.follow_logs.store(following, Ordering::Relaxed);
    to_value(LogsTailResult {
        file: file.map(|f| f.display().to_string()),
        lines,
        following,
    })
}

#[cfg(test)]
mod tests {
    use molt_protocol::ids::RunId;
    use molt_protocol::update::InstallMode;

    use super::*;

    #[test]
    fn refusals_are_the_documented_wire_errors() {
        let busy = refused_error(&Refused::Busy(Some(RunId::from("run-1"))));
        assert_eq!(busy.code, ErrorCode::Unavailable);
        assert_eq!(busy.message, "update run run-1 is in progress");
        assert_eq!(
            busy.details,
            Some(json!({"reason": "update-in-progress", "runId": "run-1"}))
        );
        assert_eq!(busy.retry_after_ms, Some(5000));

        let stopping = refused_error(&Refused::Stopping);
        assert_eq!(
            stopping.unavailable_reason(),
            Some(UnavailableReason::GatewayRestarting)
        );
        assert_eq!(stopping.retry_after_ms, Some(1000));

        let bad = refused_error(&Refused::InvalidParams(
            "note must be at most 1000 characters".into(),
        ));
        assert_eq!(bad.code, ErrorCode::InvalidRequest);
        assert_eq!(bad.message, "note must be at most 1000 characters");
    }

    #[test]
    fn a_registry_that_does_not_answer_may_pass_and_a_wrong_install_will_not() {
        let unreachable = check_error(&CheckError::Query("check failed (exit 1)".into()));
        assert_eq!(unreachable.code, ErrorCode::Unavailable);
        assert_eq!(unreachable.retry_after_ms, Some(30_000));
        assert_eq!(
            unreachable.message,
            "update check failed: check failed (exit 1)"
        );
        let unmanaged = check_error(&CheckError::NotUpdatable(InstallMode::Unmanaged));
        assert_eq!(unmanaged.code, ErrorCode::InvalidRequest);
        assert_eq!(unmanaged.retry_after_ms, None);
        assert_eq!(
            check_error(&CheckError::ToolMissing(InstallMode::Npm)).code,
            ErrorCode::Internal
        );
    }
}
