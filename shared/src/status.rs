use serde::{Deserialize, Serialize};

use crate::update::{Channel, InstallMode, RunRecord, UpdateAvailable};

/// The `status` result, also the `hello-ok` snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    pub version: String,
    pub build: BuildInfo,
    pub pid: u32,
    /// Unix ms.
    pub started_at: u64,
    pub uptime_ms: u64,
    /// The address the gateway serves, e.g. `127.0.0.1:18789`.
    pub listen: String,
    pub state_dir: String,
    pub install: InstallInfo,
    pub supervisor: SupervisorInfo,
    pub restart: RestartInfo,
    pub pending_work: PendingWork,
    pub auto: AutoUpdateState,
    #[serde(default)]
    pub update_available: Option<UpdateAvailable>,
    #[serde(default)]
    pub latest_run: Option<RunRecord>,
    pub connections: u32,
    /// How clients authenticate; absent from an older moltd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthStatus>,
}

/// How clients authenticate here (never a credential itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// `token` or `none` (`gateway.auth.mode`).
    pub mode: String,
    /// Whether a read-only credential is configured.
    pub read_token: bool,
    /// The credentials shorter than `secret::MIN_TOKEN_CHARS`, by where
    /// they come from (`gateway.auth.token`, `OPENCLAW_GATEWAY_TOKEN`, …).
    #[serde(default)]
    pub short_tokens: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    pub version: String,
    pub protocol: u32,
    /// `debug` or `release`.
    pub profile: String,
}

/// How this binary was installed and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallInfo {
    pub surface: InstallMode,
    /// The package or checkout root, when known.
    #[serde(default)]
    pub root: Option<String>,
    /// The stable path moltd was invoked through; its successor starts from it.
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// `detected` or `config`.
    pub source: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupervisorKind {
    None,
    Systemd,
    Launchd,
    /// Named with `--supervisor=`.
    Custom,
    /// A container runtime or orchestrator.
    External,
}

impl SupervisorKind {
    pub const ALL: [SupervisorKind; 5] = [
        SupervisorKind::None,
        SupervisorKind::Systemd,
        SupervisorKind::Launchd,
        SupervisorKind::Custom,
        SupervisorKind::External,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SupervisorKind::None => "none",
            SupervisorKind::Systemd => "systemd",
            SupervisorKind::Launchd => "launchd",
            SupervisorKind::Custom => "custom",
            SupervisorKind::External => "external",
        }
    }

    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorInfo {
    pub kind: SupervisorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How this process restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartStrategy {
    /// Start a successor that inherits the listener, then hand off.
    Respawn,
    /// Drain and exit; the supervisor starts the new binary.
    Supervised,
    /// Replace the process image in place (same pid).
    Exec,
}

impl RestartStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Respawn => "respawn",
            Self::Supervised => "supervised",
            Self::Exec => "exec",
        }
    }
}

impl std::fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work that defers a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingWork {
    pub in_flight_requests: u32,
    pub holds: u32,
    pub update_steps: u32,
}

impl PendingWork {
    pub fn total(&self) -> u32 {
        self.in_flight_requests
            .saturating_add(self.holds)
            .saturating_add(self.update_steps)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPhase {
    Idle,
    Scheduled,
    Deferring,
    InFlight,
}

/// The restart engine's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartInfo {
    pub strategy: RestartStrategy,
    pub phase: RestartPhase,
    #[serde(default)]
    pub reason: Option<String>,
    /// Unix ms the pending restart fires at.
    #[serde(default)]
    pub fire_at: Option<u64>,
    #[serde(default)]
    pub forced: bool,
    /// Why the last restart attempt failed, if it did.
    #[serde(default)]
    pub last_failure: Option<RestartFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartFailure {
    /// Unix ms.
    pub at: u64,
    pub reason: String,
    /// The successor's start as a step: its command, exit and the head
    /// and tail of what it printed before it failed. Absent when it said
    /// nothing anyone kept (an older moltd, or the failure came before it
    /// ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<crate::update::StepRecord>,
}

/// Where a setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvSource {
    ProcessEnv,
    EnvFile,
}

/// Auto-updater state, including the kill switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoUpdateState {
    pub enabled: bool,
    pub channel: Channel,
    /// `"env"` while `OPENCLAW_NO_AUTO_UPDATE` blocks automatic applies.
    #[serde(default)]
    pub blocked_by: Option<String>,
    #[serde(default)]
    pub source: Option<EnvSource>,
    /// Unix ms.
    #[serde(default)]
    pub next_check_at: Option<u64>,
    #[serde(default)]
    pub next_apply_at: Option<u64>,
}
