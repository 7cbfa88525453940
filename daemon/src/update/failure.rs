//! Why an update run ends without handing off: one typed failure or
//! refusal per documented reason. [`Failure::code`] is what clients read
//! (the start of `reason`, docs/updating.md); `Display` is the whole
//! `reason`, code first, for people.

use std::path::PathBuf;

use molt_protocol::status::EnvSource;
use molt_protocol::update::{InstallMode, ReasonCode, RunPhase, UpdateStatus};

use crate::autoupdate::kill_switch::NO_AUTO_UPDATE_ENV;
use crate::restart::engine::HandoffFailure;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("up-to-date")]
    UpToDate,
    /// A dry run found something to install; `would` says what.
    #[error("dry-run: would {would}")]
    DryRun { would: String },
    #[error(
        "unmanaged: this binary was not installed by npm, pnpm, bun or a git checkout; \
         reinstall it with one of them to update it in place"
    )]
    Unmanaged,
    #[error("external: a container or orchestrator owns this binary; replace the image instead")]
    External,
    #[error("dev-channel: the dev channel follows git main and needs a git checkout")]
    DevChannel,
    #[error(
        "restart-unavailable: commands.restart is false and no supervisor would start \
         the new version"
    )]
    RestartUnavailable,
    #[error("layout: {0}")]
    Layout(String),
    #[error("lease-failed: {0}")]
    LeaseFailed(String),
    #[error("tool-missing: {0} is not on moltd's PATH")]
    ToolMissing(InstallMode),
    #[error("resolve-failed: {0}")]
    ResolveFailed(String),
    #[error("stage-failed: {0}")]
    StageFailed(String),
    #[error("install-failed: {0}")]
    InstallFailed(String),
    #[error("verify-failed: {0}")]
    VerifyFailed(String),
    #[error("swap-failed: {0}")]
    SwapFailed(String),
    #[error("sentinel-failed: {0}")]
    SentinelFailed(String),
    /// The kill switch was set while an automatic update ran.
    #[error(
        "kill-switch: {NO_AUTO_UPDATE_ENV} was set ({}) while the update ran; rolled back",
        source_name(*.0)
    )]
    KillSwitch(EnvSource),
    #[error("restart-rejected: {0}")]
    RestartRejected(String),
    #[error("git-failed: {0}")]
    GitFailed(String),
    #[error(
        "dirty-tree: {} has uncommitted changes ({changes}); commit or stash them",
        root.display()
    )]
    DirtyTree { root: PathBuf, changes: String },
    #[error("fetch-failed: {0}")]
    FetchFailed(String),
    #[error("checkout-failed: {0}")]
    CheckoutFailed(String),
    #[error("build-failed: {0}")]
    BuildFailed(String),
    #[error("backup-failed: {0}")]
    BackupFailed(String),
    /// The successor did not take over; `0` says how it failed.
    #[error("restart-unhealthy: {0}")]
    RestartUnhealthy(String),
    /// The successor came up running another version than the update
    /// installed; `0` says which.
    #[error("restart-version-mismatch: {0}")]
    RestartVersionMismatch(String),
    #[error("owner-died: the process running this update stopped before it finished")]
    OwnerDied,
    #[error(
        "crash-loop: {new_version} failed {failures} times within {window_min} min after the \
         update (last: {last_exit}); the rescue step restored {previous_version}"
    )]
    CrashLoop {
        new_version: String,
        previous_version: String,
        failures: usize,
        window_min: u64,
        last_exit: String,
    },
}

impl From<&HandoffFailure> for Failure {
    /// A successor that ran the wrong version is told apart from one that
    /// did not come up at all.
    fn from(handoff: &HandoffFailure) -> Self {
        match handoff {
            HandoffFailure::WrongVersion { .. } => {
                Self::RestartVersionMismatch(handoff.to_string())
            }
            _ => Self::RestartUnhealthy(handoff.to_string()),
        }
    }
}

fn source_name(source: EnvSource) -> &'static str {
    match source {
        EnvSource::ProcessEnv => "process env",
        EnvSource::EnvFile => ".env",
    }
}

impl Failure {
    /// The documented reason code this failure reports.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::UpToDate => ReasonCode::UpToDate,
            Self::DryRun { .. } => ReasonCode::DryRun,
            Self::Unmanaged => ReasonCode::Unmanaged,
            Self::External => ReasonCode::External,
            Self::DevChannel => ReasonCode::DevChannel,
            Self::RestartUnavailable => ReasonCode::RestartUnavailable,
            Self::Layout(_) => ReasonCode::Layout,
            Self::LeaseFailed(_) => ReasonCode::LeaseFailed,
            Self::ToolMissing(_) => ReasonCode::ToolMissing,
            Self::ResolveFailed(_) => ReasonCode::ResolveFailed,
            Self::StageFailed(_) => ReasonCode::StageFailed,
            Self::InstallFailed(_) => ReasonCode::InstallFailed,
            Self::VerifyFailed(_) => ReasonCode::VerifyFailed,
            Self::SwapFailed(_) => ReasonCode::SwapFailed,
            Self::SentinelFailed(_) => ReasonCode::SentinelFailed,
            Self::KillSwitch(_) => ReasonCode::KillSwitch,
            Self::RestartRejected(_) => ReasonCode::RestartRejected,
            Self::GitFailed(_) => ReasonCode::GitFailed,
            Self::DirtyTree { .. } => ReasonCode::DirtyTree,
            Self::FetchFailed(_) => ReasonCode::FetchFailed,
            Self::CheckoutFailed(_) => ReasonCode::CheckoutFailed,
            Self::BuildFailed(_) => ReasonCode::BuildFailed,
            Self::BackupFailed(_) => ReasonCode::BackupFailed,
            Self::RestartUnhealthy(_) => ReasonCode::RestartUnhealthy,
            Self::RestartVersionMismatch(_) => ReasonCode::RestartVersionMismatch,
            Self::OwnerDied => ReasonCode::OwnerDied,
            Self::CrashLoop { .. } => ReasonCode::CrashLoop,
        }
    }

    /// Nothing was wrong: the run chose not to (or could not be asked to)
    /// change anything, so it ends `skipped`.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UpToDate
                | Self::DryRun { .. }
                | Self::Unmanaged
                | Self::External
                | Self::DevChannel
                | Self::RestartUnavailable
                | Self::KillSwitch(_)
        )
    }
}

/// What happened to an install the run had already changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// Nothing live had changed.
    NotNeeded,
    /// The previous version is back.
    Done,
    /// Putting it back failed too; the install may be the new version.
    Failed(String),
}

/// How a run ends without a handoff: why, and what became of the install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub failure: Failure,
    pub rollback: Rollback,
}

impl From<Failure> for Ended {
    fn from(failure: Failure) -> Self {
        Ended {
            failure,
            rollback: Rollback::NotNeeded,
        }
    }
}

impl Ended {
    /// `failure` after the install changed; `restored` is how putting it
    /// back went.
    pub fn after_change(failure: Failure, restored: Result<(), impl std::fmt::Display>) -> Self {
        Ended {
            failure,
            rollback: match restored {
                Ok(()) => Rollback::Done,
                Err(e) => Rollback::Failed(e.to_string()),
            },
        }
    }

    /// The run's terminal phase and the result's status.
    pub fn phase(&self) -> (RunPhase, UpdateStatus) {
        match (&self.rollback, self.failure.is_refusal()) {
            (Rollback::Failed(_), _) => (RunPhase::Failed, UpdateStatus::Error),
            (_, true) => (RunPhase::Skipped, UpdateStatus::Skipped),
            (Rollback::Done, false) => (RunPhase::RolledBack, UpdateStatus::Error),
            (Rollback::NotNeeded, false) => (RunPhase::Failed, UpdateStatus::Error),
        }
    }

    /// The `reason` clients see.
    pub fn reason(&self) -> String {
        match &self.rollback {
            Rollback::Failed(e) => format!("{}; rolling back failed: {e}", self.failure),
            Rollback::NotNeeded | Rollback::Done => self.failure.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_starts_with_its_code() {
        let failures = [
            Failure::UpToDate,
            Failure::DryRun {
                would: "install moltd@2.0.0".into(),
            },
            Failure::Unmanaged,
            Failure::External,
            Failure::DevChannel,
            Failure::RestartUnavailable,
            Failure::ToolMissing(InstallMode::Pnpm),
            Failure::ResolveFailed("no such tag".into()),
            Failure::KillSwitch(EnvSource::EnvFile),
            Failure::DirtyTree {
                root: "/src/molt".into(),
                changes: " M a.rs".into(),
            },
            Failure::OwnerDied,
            Failure::from(&HandoffFailure::NoEntrypoint),
            Failure::from(&HandoffFailure::WrongVersion {
                pid: 7,
                running: "1.0.0".into(),
                expected: "2.0.0".into(),
            }),
            Failure::CrashLoop {
                new_version: "0.3.0".into(),
                previous_version: "0.1.0".into(),
                failures: 3,
                window_min: 10,
                last_exit: "exit-code".into(),
            },
        ];
        for failure in failures {
            let reason = failure.to_string();
            assert_eq!(ReasonCode::of(&reason), Some(failure.code()), "{reason}");
        }
        assert_eq!(Failure::UpToDate.to_string(), "up-to-date");
        assert_eq!(
            Failure::from(&HandoffFailure::WrongVersion {
                pid: 7,
                running: "1.0.0".into(),
                expected: "2.0.0".into(),
            })
            .to_string(),
            "restart-version-mismatch: successor pid 7 runs version 1.0.0, expected 2.0.0; \
             stopped it"
        );
        assert_eq!(
            Failure::KillSwitch(EnvSource::ProcessEnv).to_string(),
            "kill-switch: OPENCLAW_NO_AUTO_UPDATE was set (process env) while the update ran; \
             rolled back"
        );
    }

    #[test]
    fn the_phase_follows_the_failure_and_the_rollback() {
        let ended = |failure, rollback| Ended { failure, rollback };
        let swap = || Failure::SwapFailed("x".into());
        let table = [
            (
                ended(Failure::UpToDate, Rollback::NotNeeded),
                RunPhase::Skipped,
            ),
            (
                ended(Failure::KillSwitch(EnvSource::EnvFile), Rollback::Done),
                RunPhase::Skipped,
            ),
            (ended(swap(), Rollback::NotNeeded), RunPhase::Failed),
            (ended(swap(), Rollback::Done), RunPhase::RolledBack),
            (
                ended(swap(), Rollback::Failed("gone".into())),
                RunPhase::Failed,
            ),
            (
                ended(
                    Failure::KillSwitch(EnvSource::EnvFile),
                    Rollback::Failed("gone".into()),
                ),
                RunPhase::Failed,
            ),
        ];
        for (ended, phase) in table {
            assert_eq!(ended.phase().0, phase, "{ended:?}");
        }
        assert_eq!(
            ended(swap(), Rollback::Failed("gone".into())).reason(),
            "swap-failed: x; rolling back failed: gone"
        );
    }
}
