use serde::{Deserialize, Serialize};

use crate::ids::RunId;
use crate::status::PendingWork;
use crate::update::RunPhase;

macro_rules! events {
    ($($variant:ident = $name:literal;)*) => {
        /// Every event moltd sends.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventName {
            $($variant,)*
        }

        impl EventName {
            pub const ALL: &'static [EventName] = &[$(EventName::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<EventName> {
                EventName::ALL.iter().copied().find(|e| e.as_str() == name)
            }
        }
    };
}

events! {
    ConnectChallenge = "connect.challenge";
    Tick = "tick";
    Shutdown = "shutdown";
    RestartScheduled = "restart.scheduled";
    RestartDeferred = "restart.deferred";
    RestartChanged = "restart.changed";
    UpdateProgress = "update.progress";
    UpdateAvailable = "update.available";
    ConfigChanged = "config.changed";
    LogsLine = "logs.line";
}

/// `tick`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Unix ms.
    pub ts: u64,
}

/// `shutdown`: this process is going away; with a restart, clients should
/// reconnect after about `restartExpectedMs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shutdown {
    pub reason: String,
    #[serde(default)]
    pub restart_expected_ms: Option<u64>,
}

/// `restart.changed`: the restart engine's state after a restart fired or
/// ended without a handoff (a failure keeps this process serving and
/// sends no `shutdown`); the payload is `status.restart`.
pub type RestartChanged = crate::status::RestartInfo;

/// `restart.deferred`: a restart waits on pending work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartDeferred {
    pub pending_work: PendingWork,
    pub waited_ms: u64,
    /// 0 = waits until the work is done.
    pub timeout_ms: u64,
}

/// Where a step is, within `update.progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Started,
    Finished,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for StepState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Started, Self::Finished, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown step state {s:?}"))
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step starting or finishing within `update.progress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepProgress {
    pub name: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `update.progress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProgress {
    pub run_id: RunId,
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepProgress>,
}

/// `config.changed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChanged {
    pub hash: String,
    pub changed_paths: Vec<String>,
}

/// `logs.line`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsLine {
    pub line: String,
}
