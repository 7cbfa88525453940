use serde::{Deserialize, Serialize};

use crate::changelog::Changelog;
use crate::ids::RunId;

/// How moltd was installed, which decides how it updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallMode {
    Npm,
    Pnpm,
    Bun,
    Git,
    /// A binary molt cannot update itself (copied by hand, a dev build).
    Unmanaged,
    /// A container or orchestrator owns the binary: replace the image.
    External,
    #[serde(other)]
    Unknown,
}

impl InstallMode {
    pub fn is_package_manager(self) -> bool {
        matches!(self, Self::Npm | Self::Pnpm | Self::Bun)
    }

    /// The wire name, also the package manager's program name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Pnpm => "pnpm",
            Self::Bun => "bun",
            Self::Git => "git",
            Self::Unmanaged => "unmanaged",
            Self::External => "external",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for InstallMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Update channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// dist-tag `latest`.
    #[default]
    Stable,
    /// dist-tag `beta`, falling back to `latest` when missing or older.
    Beta,
    /// git `main`.
    Dev,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
            Channel::Dev => "dev",
        }
    }
}

/// Outcome of one update attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateStatus {
    Ok,
    Error,
    Skipped,
}

impl UpdateStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Skipped => "skipped",
        }
    }
}

/// How a step's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    Exited,
    Signaled,
    TimedOut,
    SpawnFailed,
    /// A step molt does itself (stage, swap), with no child process.
    Internal,
}

impl Termination {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Signaled => "signaled",
            Self::TimedOut => "timed-out",
            Self::SpawnFailed => "spawn-failed",
            Self::Internal => "internal",
        }
    }
}

/// One step of an update, with the head and tail of its output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub name: String,
    /// Display form of `argv` (shell-quoted), for humans and OpenClaw clients.
    pub command: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub duration_ms: u64,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub termination: Termination,
    #[serde(default)]
    pub stdout_head: String,
    #[serde(default)]
    pub stdout_tail: String,
    #[serde(default)]
    pub stderr_head: String,
    #[serde(default)]
    pub stderr_tail: String,
}

impl StepRecord {
    /// Whether the step failed: anything but exit code 0 (a timeout or a
    /// signal has none).
    pub fn failed(&self) -> bool {
        self.exit_code != Some(0)
    }
}

/// `{version}`; null when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    pub version: Option<String>,
}

impl VersionRef {
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: Some(version.into()),
        }
    }
}

/// The `result` of `update.run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateResult {
    pub status: UpdateStatus,
    pub mode: InstallMode,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub before: VersionRef,
    pub after: VersionRef,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    pub duration_ms: u64,
    /// The new version's changelog entries since the version before, read
    /// from the new tree once it is in place (absent before that, and
    /// from a moltd that does not read changelogs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog: Option<Changelog>,
}

/// The code every `reason` of a run, a result or a sentinel starts with:
/// `"<code>"` or `"<code>: <detail for people>"`. docs/updating.md lists
/// what each means; clients decide on the code, never on the detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    UpToDate,
    /// A dry run that found something to install: `"dry-run: would install …"`.
    DryRun,
    DevChannel,
    ToolMissing,
    Layout,
    LeaseFailed,
    StageFailed,
    Unmanaged,
    External,
    RestartUnavailable,
    ResolveFailed,
    InstallFailed,
    VerifyFailed,
    SwapFailed,
    SentinelFailed,
    RestartRejected,
    KillSwitch,
    GitFailed,
    DirtyTree,
    FetchFailed,
    CheckoutFailed,
    BuildFailed,
    BackupFailed,
    RestartUnhealthy,
    RestartVersionMismatch,
    CrashLoop,
    OwnerDied,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 27] = [
        Self::UpToDate,
        Self::DryRun,
        Self::DevChannel,
        Self::ToolMissing,
        Self::Layout,
        Self::LeaseFailed,
        Self::StageFailed,
        Self::Unmanaged,
        Self::External,
        Self::RestartUnavailable,
        Self::ResolveFailed,
        Self::InstallFailed,
        Self::VerifyFailed,
        Self::SwapFailed,
        Self::SentinelFailed,
        Self::RestartRejected,
        Self::KillSwitch,
        Self::GitFailed,
        Self::DirtyTree,
        Self::FetchFailed,
        Self::CheckoutFailed,
        Self::BuildFailed,
        Self::BackupFailed,
        Self::RestartUnhealthy,
        Self::RestartVersionMismatch,
        Self::CrashLoop,
        Self::OwnerDied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "up-to-date",
            Self::DryRun => "dry-run",
            Self::DevChannel => "dev-channel",
            Self::ToolMissing => "tool-missing",
            Self::Layout => "layout",
            Self::LeaseFailed => "lease-failed",
            Self::StageFailed => "stage-failed",
            Self::Unmanaged => "unmanaged",
            Self::External => "external",
            Self::RestartUnavailable => "restart-unavailable",
            Self::ResolveFailed => "resolve-failed",
            Self::InstallFailed => "install-failed",
            Self::VerifyFailed => "verify-failed",
            Self::SwapFailed => "swap-failed",
            Self::SentinelFailed => "sentinel-failed",
            Self::RestartRejected => "restart-rejected",
            Self::KillSwitch => "kill-switch",
            Self::GitFailed => "git-failed",
            Self::DirtyTree => "dirty-tree",
            Self::FetchFailed => "fetch-failed",
            Self::CheckoutFailed => "checkout-failed",
            Self::BuildFailed => "build-failed",
            Self::BackupFailed => "backup-failed",
            Self::RestartUnhealthy => "restart-unhealthy",
            Self::RestartVersionMismatch => "restart-version-mismatch",
            Self::CrashLoop => "crash-loop",
            Self::OwnerDied => "owner-died",
        }
    }

    /// The code `reason` starts with, if it is one of these.
    pub fn of(reason: &str) -> Option<Self> {
        let code = reason.split_once(':').map_or(reason, |(code, _)| code);
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl UpdateResult {
    pub fn reason_code(&self) -> Option<ReasonCode> {
        self.reason.as_deref().and_then(ReasonCode::of)
    }

    /// A dry run's plan: nothing was done, `after` is what a real run
    /// would install.
    pub fn is_planned(&self) -> bool {
        self.status == UpdateStatus::Skipped && self.reason_code() == Some(ReasonCode::DryRun)
    }
}

/// `restart-sentinel.json`: `{version: 1, payload}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sentinel {
    pub version: u32,
    pub payload: SentinelPayload,
}

impl Sentinel {
    pub const FORMAT_VERSION: u32 = 1;
}

/// What the process that restarts leaves for its successor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentinelPayload {
    /// `"update"` for update restarts.
    pub kind: String,
    pub status: UpdateStatus,
    /// Unix ms when written.
    pub ts: u64,
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// The operator's note, if any.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_hint: Option<String>,
    pub stats: SentinelStats,
    /// Set by the successor once it proved what runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    #[serde(default)]
    pub rolled_back: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentinelStats {
    pub mode: InstallMode,
    #[serde(default)]
    pub root: Option<String>,
    pub before: VersionRef,
    pub after: VersionRef,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default)]
    pub reason: Option<String>,
    pub duration_ms: u64,
}

/// The successor's proof of what runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub running_version: String,
    pub pid: u32,
    /// Unix ms.
    pub at: u64,
    /// Set when the running version is not the one the sentinel expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

/// Who started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunTrigger {
    Manual,
    Auto,
}

/// Lifecycle of a run: requested → running → restarting → a terminal phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunPhase {
    Requested,
    Running,
    Restarting,
    Verified,
    Failed,
    RolledBack,
    Skipped,
}

impl RunTrigger {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Auto => "auto",
        }
    }
}

impl RunPhase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::Skipped => "skipped",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Verified | Self::Failed | Self::RolledBack | Self::Skipped
        )
    }
}

/// What a run aims at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTarget {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
}

/// The process that owns a run (its lease).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOwner {
    pub pid: u32,
    /// Unix ms the owner process started; with `pid` it names one process.
    pub started_at: u64,
}

/// One line of `update-runs.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: RunId,
    pub trigger: RunTrigger,
    #[serde(default)]
    pub actor: Option<String>,
    pub phase: RunPhase,
    pub mode: InstallMode,
    #[serde(default)]
    pub root: Option<String>,
    pub target: RunTarget,
    pub before: VersionRef,
    #[serde(default)]
    pub after: VersionRef,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    pub owner: RunOwner,
    /// Unix ms.
    pub requested_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// What the installed version's changelog says changed since
    /// `before`: set once the new tree is in place, dropped when the
    /// update is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog: Option<Changelog>,
}

impl RunRecord {
    /// The version the run installs: what it reached, else what it aims at.
    pub fn target_version(&self) -> Option<&str> {
        self.after
            .version
            .as_deref()
            .or(self.target.version.as_deref())
    }
}

/// A newer version than the one running is on the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAvailable {
    pub current_version: String,
    pub latest_version: String,
    pub channel: Channel,
}
