use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorShape;
use crate::frame::{RequestFrame, decode};
use crate::ids::{HoldId, RunId};
use crate::scope::Scope;
use crate::status::{AutoUpdateState, RestartStrategy};
use crate::update::{Channel, RunRecord, SentinelPayload, UpdateAvailable, UpdateResult};

macro_rules! methods {
    ($($variant:ident = $name:literal, $scope:ident;)*) => {
        /// Every method moltd serves.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Method {
            $($variant,)*
        }

        impl Method {
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Method::$variant => $name,)*
                }
            }

            /// The scope a client needs to call this method.
            pub fn required_scope(self) -> Scope {
                match self {
                    $(Method::$variant => Scope::$scope,)*
                }
            }
        }
    };
}

methods! {
    Connect = "connect", Read;
    Health = "health", Read;
    Status = "status", Read;
    ConfigGet = "config.get", Read;
    ConfigPatch = "config.patch", Admin;
    RestartRequest = "gateway.restart.request", Admin;
    UpdateRun = "update.run", Admin;
    UpdateStatus = "update.status", Read;
    UpdateCheck = "update.check", Admin;
    UpdateHistory = "update.history", Read;
    NoAutoUpdateSet = "update.noAutoUpdate.set", Admin;
    HoldAcquire = "gateway.hold.acquire", Admin;
    HoldRelease = "gateway.hold.release", Admin;
    LogsTail = "logs.tail", Read;
    AuditList = "audit.list", Read;
}

/// The longest method name an error repeats back.
const MAX_METHOD_NAME: usize = 64;

impl Method {
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.as_str() == name)
    }
}

/// `health` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthResult {
    pub ok: bool,
    /// Always `"live"`.
    pub status: String,
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
}

/// `config.get` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigGetResult {
    pub path: String,
    pub config: Value,
    pub hash: String,
}

/// `config.patch` params: `raw` is JSON merge patch text (RFC 7396).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatchParams {
    pub raw: String,
    pub base_hash: String,
}

/// `config.patch` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatchResult {
    pub config: Value,
    pub hash: String,
    pub changed_paths: Vec<String>,
    /// The restart the change needs (port, bind), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartScheduled>,
}

pub use crate::limits::{MAX_DIST_TAG, MAX_RESTART_REASON, MAX_UPDATE_NOTE};

/// `gateway.restart.request` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartRequestParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_deferral: Option<bool>,
}

/// A scheduled restart (result of `gateway.restart.request`, `restart` of
/// `update.run`, payload of `restart.scheduled`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartScheduled {
    pub ok: bool,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub delay_ms: u64,
    pub reason: String,
    pub mode: RestartStrategy,
    pub coalesced: bool,
    pub cooldown_ms_applied: u64,
}

/// `update.run` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRunParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A version or dist-tag for this run only (downgrades allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// OpenClaw clients send this; molt records it as the actor when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// `update.run`'s `timeoutMs` bounds each command the run starts
/// (docs/protocol.md, "Updates"); this when it is not given.
pub const DEFAULT_UPDATE_STEP_TIMEOUT_MS: u64 = 20 * 60 * 1000;
/// The `timeoutMs` a run accepts: 1 s to 24 h.
pub const UPDATE_STEP_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1000..=24 * 60 * 60 * 1000;
/// The most commands one run starts, each within `timeoutMs`: a git
/// checkout's clean, fetch, tags, resolve, version, head, branch, checkout
/// and build (a package install starts two: resolve and install).
pub const MAX_UPDATE_RUN_COMMANDS: u64 = 9;

impl UpdateRunParams {
    /// The bound on each command of the run.
    pub fn step_timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_UPDATE_STEP_TIMEOUT_MS)
    }

    /// The longest the run's commands can take together: each one at its
    /// bound. The answer comes after them and the handoff.
    pub fn commands_bound_ms(&self) -> u64 {
        MAX_UPDATE_RUN_COMMANDS.saturating_mul(self.step_timeout_ms())
    }
}

/// `{path, payload}` of the sentinel written for a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentinelRef {
    pub path: String,
    pub payload: SentinelPayload,
}

/// `update.run` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRunResult {
    pub ok: bool,
    pub run_id: RunId,
    pub result: UpdateResult,
    #[serde(default)]
    pub restart: Option<RestartScheduled>,
    #[serde(default)]
    pub sentinel: Option<SentinelRef>,
}

/// `update.status` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatusParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
}

/// `update.status` result: the truth about what runs now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatusResult {
    #[serde(default)]
    pub sentinel: Option<SentinelPayload>,
    /// The version of the process answering, not of the files on disk.
    pub running_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    #[serde(default)]
    pub last_run: Option<RunRecord>,
    #[serde(default)]
    pub update_available: Option<UpdateAvailable>,
    pub auto: AutoUpdateState,
}

/// `update.check` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCheckResult {
    #[serde(default)]
    pub update_available: Option<UpdateAvailable>,
    pub current_version: String,
    #[serde(default)]
    pub latest_version: Option<String>,
    pub channel: Channel,
    /// Unix ms.
    pub checked_at: u64,
}

/// `update.history` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateHistoryParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `update.history` result, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateHistoryResult {
    pub runs: Vec<RunRecord>,
}

/// `update.noAutoUpdate.set` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoAutoUpdateSetParams {
    pub enabled: bool,
}

/// `update.noAutoUpdate.set` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoAutoUpdateSetResult {
    pub enabled: bool,
    #[serde(default)]
    pub source: Option<crate::status::EnvSource>,
}

/// `gateway.hold.acquire` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldAcquireParams {
    pub reason: String,
    pub ttl_ms: u64,
}

/// `gateway.hold.acquire` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldAcquireResult {
    pub hold_id: HoldId,
    /// Unix ms.
    pub expires_at: u64,
}

/// `gateway.hold.release` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldReleaseParams {
    pub hold_id: HoldId,
}

/// `gateway.hold.release` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoldReleaseResult {
    pub released: bool,
}

/// `logs.tail` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogsTailParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
}

/// `logs.tail` result; with `follow`, `logs.line` events follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsTailResult {
    #[serde(default)]
    pub file: Option<String>,
    pub lines: Vec<String>,
    pub following: bool,
}

/// A request decoded into its method and typed params.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Connect(crate::handshake::ConnectParams),
    Health,
    Status,
    ConfigGet,
    ConfigPatch(ConfigPatchParams),
    RestartRequest(RestartRequestParams),
    UpdateRun(UpdateRunParams),
    UpdateStatus(UpdateStatusParams),
    UpdateCheck,
    UpdateHistory(UpdateHistoryParams),
    NoAutoUpdateSet(NoAutoUpdateSetParams),
    HoldAcquire(HoldAcquireParams),
    HoldRelease(HoldReleaseParams),
    LogsTail(LogsTailParams),
    AuditList(crate::audit::AuditListParams),
}

impl Request {
    /// Decodes a request frame. Unknown methods and ill-typed params are
    /// `INVALID_REQUEST` errors that name the method or the field.
    pub fn from_frame(frame: &RequestFrame) -> Result<Request, ErrorShape> {
        let method = Method::from_name(&frame.method).ok_or_else(|| {
            // The name is repeated, not stored: cut to what a name can be.
            let mut shown: String = frame.method.chars().take(MAX_METHOD_NAME).collect();
            if shown.len() < frame.method.len() {
                shown.push('…');
            }
            ErrorShape::invalid_request(format!("unknown method: {shown}"))
        })?;
        let params = frame.params.clone();
        Ok(match method {
            Method::Connect => Request::Connect(required(method, params)?),
            Method::Health => no_params(method, params, Request::Health)?,
            Method::Status => no_params(method, params, Request::Status)?,
            Method::ConfigGet => no_params(method, params, Request::ConfigGet)?,
            Method::ConfigPatch => Request::ConfigPatch(required(method, params)?),
            Method::RestartRequest => Request::RestartRequest(optional(method, params)?),
            Method::UpdateRun => Request::UpdateRun(optional(method, params)?),
            Method::UpdateStatus => Request::UpdateStatus(optional(method, params)?),
            Method::UpdateCheck => no_params(method, params, Request::UpdateCheck)?,
            Method::UpdateHistory => Request::UpdateHistory(optional(method, params)?),
            Method::NoAutoUpdateSet => Request::NoAutoUpdateSet(required(method, params)?),
            Method::HoldAcquire => Request::HoldAcquire(required(method, params)?),
            Method::HoldRelease => Request::HoldRelease(required(method, params)?),
            Method::LogsTail => Request::LogsTail(optional(method, params)?),
            Method::AuditList => Request::AuditList(optional(method, params)?),
        })
    }

    pub fn method(&self) -> Method {
        match self {
            Request::Connect(_) => Method::Connect,
            Request::Health => Method::Health,
            Request::Status => Method::Status,
            Request::ConfigGet => Method::ConfigGet,
            Request::ConfigPatch(_) => Method::ConfigPatch,
            Request::RestartRequest(_) => Method::RestartRequest,
            Request::UpdateRun(_) => Method::UpdateRun,
            Request::UpdateStatus(_) => Method::UpdateStatus,
            Request::UpdateCheck => Method::UpdateCheck,
            Request::UpdateHistory(_) => Method::UpdateHistory,
            Request::NoAutoUpdateSet(_) => Method::NoAutoUpdateSet,
            Request::HoldAcquire(_) => Method::HoldAcquire,
            Request::HoldRelease(_) => Method::HoldRelease,
            Request::LogsTail(_) => Method::LogsTail,
            Request::AuditList(_) => Method::AuditList,
        }
    }
}

fn invalid_params(method: Method, problem: &str) -> ErrorShape {
    ErrorShape::invalid_request(format!("invalid {} params: {problem}", method.as_str()))
}

fn required<T: DeserializeOwned>(method: Method, params: Option<Value>) -> Result<T, ErrorShape> {
    match params {
        None | Some(Value::Null) => Err(invalid_params(method, "params are required")),
        Some(value) => decode(value).map_err(|e| invalid_params(method, &e)),
    }
}

fn optional<T: DeserializeOwned + Default>(
    method: Method,
    params: Option<Value>,
) -> Result<T, ErrorShape> {
    match params {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => decode(value).map_err(|e| invalid_params(method, &e)),
    }
}

fn no_params(
    method: Method,
    params: Option<Value>,
    request: Request,
) -> Result<Request, ErrorShape> {
    match params {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(request),
        Some(_) => Err(invalid_params(method, "expected an object or nothing")),
    }
}
