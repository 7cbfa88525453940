//! The audit trail: one entry per change made to a gateway (`audit.list`,
//! docs/protocol.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actor::Actor;
use crate::ids::RunId;

/// What was changed: the method, or what acted without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    #[serde(rename = "update.run")]
    UpdateRun,
    #[serde(rename = "config.patch")]
    ConfigPatch,
    #[serde(rename = "gateway.restart.request")]
    RestartRequest,
    /// `SIGUSR1`: a restart asked of the process.
    #[serde(rename = "signal.restart")]
    SignalRestart,
    #[serde(rename = "update.noAutoUpdate.set")]
    KillSwitch,
    #[serde(rename = "gateway.hold.acquire")]
    HoldAcquire,
    #[serde(rename = "gateway.hold.release")]
    HoldRelease,
    /// The rescue step rolled back a version that crash-looped.
    #[serde(rename = "update.rescue")]
    Rescue,
    /// Written by a newer moltd.
    #[serde(other)]
    Unknown,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::UpdateRun,
        AuditAction::ConfigPatch,
        AuditAction::RestartRequest,
        AuditAction::SignalRestart,
        AuditAction::KillSwitch,
        AuditAction::HoldAcquire,
        AuditAction::HoldRelease,
        AuditAction::Rescue,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::UpdateRun => "update.run",
            AuditAction::ConfigPatch => "config.patch",
            AuditAction::RestartRequest => "gateway.restart.request",
            AuditAction::SignalRestart => "signal.restart",
            AuditAction::KillSwitch => "update.noAutoUpdate.set",
            AuditAction::HoldAcquire => "gateway.hold.acquire",
            AuditAction::HoldRelease => "gateway.hold.release",
            AuditAction::Rescue => "update.rescue",
            AuditAction::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<AuditAction> {
        AuditAction::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == name)
    }
}

/// How a change ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditOutcome {
    pub ok: bool,
    /// The error code, or a run's failure reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The longest outcome message kept.
pub const MAX_OUTCOME_MESSAGE: usize = 500;

impl AuditOutcome {
    pub fn ok() -> Self {
        AuditOutcome {
            ok: true,
            code: None,
            message: None,
        }
    }

    /// A failure; `message` is cut to [`MAX_OUTCOME_MESSAGE`] characters.
    pub fn failed(code: impl Into<String>, message: &str) -> Self {
        AuditOutcome {
            ok: false,
            code: Some(code.into()),
            message: Some(message.chars().take(MAX_OUTCOME_MESSAGE).collect()),
        }
    }
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// `audit-<unix ms, 13 digits>-<8 hex>`.
    pub id: String,
    /// Unix ms, when the change was answered.
    pub at: u64,
    pub action: AuditAction,
    pub actor: Actor,
    /// What was asked, without secrets (see docs/protocol.md, `audit.list`).
    pub params: Value,
    pub outcome: AuditOutcome,
    /// The update run it started, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The pid of the moltd that wrote it.
    pub pid: u32,
}

/// `audit.list` params: newest first, filtered, in pages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditListParams {
    /// Entries per page, 1–500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only entries older than this id (the previous page's `nextBefore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Only this action (its wire name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only this actor kind (`client`, `auto-updater`, `rescue`, `signal`) or this
    /// client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only entries at or after this Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

pub const DEFAULT_AUDIT_LIMIT: u32 = 50;
pub const MAX_AUDIT_LIMIT: u32 = 500;

/// `audit.list` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditListResult {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    #[serde(default)]
    pub next_before: Option<String>,
}
