//! `update.check`: what the channel offers, through the package manager's
//! own metadata (or the checkout's tags), without changing anything.
//!
//! Single flight: a check is a child process and a registry (or remote)
//! query, and any admin client may ask for one. Checks asked for while one
//! runs wait for it and share its answer ([`CheckFlight`]), so a hundred
//! concurrent `update.check` calls, and the auto-updater's own checks, run
//! one query.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use molt_protocol::method::UpdateCheckResult;
use molt_protocol::update::{Channel, InstallMode, UpdateAvailable};

use super::context::RunContext;
use super::steps::StepSpec;
use super::{git, record, target};
use crate::clock::unix_ms;
use crate::install::layout::{self, LayoutError};

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_METADATA: usize = 8 * 1024 * 1024;

/// Why the channel's version could not be told.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// How moltd was installed is unknown, or cannot be updated in place.
    #[error("no stable entrypoint: cannot tell how moltd was installed")]
    NoEntrypoint,
    #[error("update.check: {0}")]
    Layout(#[from] LayoutError),
    #[error("update.check needs a package or git install; this one is {0}")]
    NotUpdatable(InstallMode),
    #[error("{0} is not on moltd's PATH")]
    ToolMissing(InstallMode),
    /// The registry or the remote did not answer.
    #[error("update check failed: {0}")]
    Query(String),
    /// The manager answered with something that is not package metadata.
    #[error("{0}")]
    Metadata(String),
    /// The channel names nothing installable.
    #[error("{0}")]
    NoTarget(String),
    #[error("no release tag (vX.Y.Z) on {} of {}", git::REMOTE, .0.display())]
    NoReleaseTag(std::path::PathBuf),
    #[error("the running version {0:?} is not semver")]
    RunningNotSemver(String),
}

/// What one check found, shared by every caller that waited for it.
pub type Shared = Result<semver::Version, Arc<CheckError>>;

/// The check in flight, if any: callers that come while it runs share it.
#[derive(Debug, Default)]
pub struct CheckFlight {
    current: Mutex<Option<Arc<watch::Sender<Option<Shared>>>>>,
}

impl CheckFlight {
    /// [`latest`], or the answer of the check already running. A caller
    /// that gives up (its connection went) does not fail the others: the
    /// next one in line runs the query.
    pub async fn latest(&self, ctx: &RunContext) -> Shared {
        loop {
            let joined = {
                let mut current = self.current.lock();
                match &*current {
                    Some(running) => Err(running.subscribe()),
                    None => {
                        let tx = Arc::new(watch::Sender::new(None));
                        *current = Some(Arc::clone(&tx));
                        Ok(tx)
                    }
                }
            };
            match joined {
                Ok(tx) => {
                    // Frees the slot however this ends, also when dropped.
                    let _leader = Leader(self);
                    let found = latest(ctx).await.map_err(Arc::new);
                    tx.send_replace(Some(found.clone()));
                    return found;
                }
                Err(mut running) => {
                    if let Ok(found) = running.wait_for(Option::is_some).await
                        && let Some(found) = &*found
                    {
                        return found.clone();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
impl CheckFlight {
    /// Callers waiting for the check in flight.
    fn waiting(&self) -> usize {
        self.current
            .lock()
            .as_ref()
            .map_or(0, |running| running.receiver_count())
    }
}

/// The caller running the query; the slot is free again once it is gone.
struct Leader<'a>(&'a CheckFlight);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        *self.0.current.lock() = None;
    }
}

/// Resolves the channel's version and whether it is newer than the
/// running one, through `flight`. The caller announces it
/// (`update.available`).
pub async fn check(
    ctx: &RunContext,
    flight: &CheckFlight,
) -> Result<UpdateCheckResult, Arc<CheckError>> {
    let channel = ctx.settings.channel;
    let latest = flight.latest(ctx).await?;
    let available = semver::Version::parse(&ctx.version)
        .map_or(true, |running| latest > running)
        .then(|| UpdateAvailable {
            current_version: ctx.version.clone(),
            latest_version: latest.to_string(),
            channel,
        });
    Ok(UpdateCheckResult {
        update_available: available,
        current_version: ctx.version.clone(),
        latest_version: Some(latest.to_string()),
        channel,
        checked_at: unix_ms(),
    })
}

/// The one version the configured channel resolves to now.
pub async fn latest(ctx: &RunContext) -> Result<semver::Version, CheckError> {
    let channel = ctx.settings.channel;
    let info = &ctx.install;
    let entrypoint = info.entrypoint.as_deref().ok_or(CheckError::NoEntrypoint)?;
    match info.surface {
        InstallMode::Git => {
            let root = info.root.as_deref().unwrap_or_default();
            git_latest(ctx, Path::new(root), channel).await
        }
        mode if mode.is_package_manager() => {
            let install = layout::locate(Path::new(entrypoint))?;
            let package = ctx
                .settings
                .package
                .clone()
                .unwrap_or(install.package.clone());
            let tool = ctx
                .steps
                .tool(install.mode)
                .ok_or(CheckError::ToolMissing(mode))?;
            let stdout = query(ctx, target::metadata_argv(install.mode, &tool, &package)).await?;
            let meta = target::parse_metadata(install.mode, &stdout)
                .map_err(|e| CheckError::Metadata(e.in_package(&package).to_string()))?;
            target::resolve(channel, None, &meta)
                .map_err(|e| CheckError::NoTarget(e.in_package(&package).to_string()))
        }
        other => Err(CheckError::NotUpdatable(other)),
    }
}

/// Runs a read-only query; its stdout.
async fn query(ctx: &RunContext, argv: Vec<String>) -> Result<String, CheckError> {
    let spec = StepSpec {
        name: "check".to_owned(),
        argv,
        cwd: None,
        env: Vec::new(),
        timeout: CHECK_TIMEOUT,
    };
    let cancel = ctx.cancel.child_token();
    let (step, stdout) = ctx.steps.run(&spec, &cancel, MAX_METADATA).await;
    match stdout {
        Some(stdout) if !step.failed() => Ok(stdout),
        _ => Err(CheckError::Query(record::step_failure(&step))),
    }
}

/// The newest release tag on `channel`, read from the remote without
/// touching the checkout (`ls-remote`: no fetch, no ref changes); `dev`
/// has no version of its own to compare, so it reports the running one.
async fn git_latest(
    ctx: &RunContext,
    root: &Path,
    channel: Channel,
) -> Result<semver::Version, CheckError> {
    if channel == Channel::Dev {
        return semver::Version::parse(&ctx.version)
            .map_err(|_| CheckError::RunningNotSemver(ctx.version.clone()));
    }
    let argv = git::git_argv(root, &["ls-remote", "--tags", "--refs", git::REMOTE]);
    let refs = query(ctx, argv).await?;
    let tags: Vec<&str> = refs
        .lines()
        .filter_map(|line| line.split('\t').nth(1)?.strip_prefix("refs/tags/"))
        .collect();
    git::newest_release(&tags.join("\n"), channel == Channel::Beta)
        .ok_or_else(|| CheckError::NoReleaseTag(root.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::update::testing::{
        FakeRestarter, FakeSteps, Gate, Handoff, context, installed, npm_install,
    };

    const METADATA: &str = r#"{"dist-tags":{"latest":"2.0.0"},"versions":["1.0.0","2.0.0"]}"#;

    #[tokio::test]
    async fn concurrent_checks_share_one_query_and_the_next_check_asks_again() {
        let dir = tempfile::tempdir().unwrap();
        let install = npm_install(&dir.path().join("prefix"), "1.0.0");
        let gate = Gate::new();
        let steps = Arc::new(
            FakeSteps::with_tool()
                .answer("check", 0, METADATA)
                .gated("check", Arc::clone(&gate)),
        );
        let ctx = context(
            dir.path(),
            installed(&install),
            steps.clone(),
            FakeRestarter::new(Handoff::Pending),
        );
        let flight = Arc::new(CheckFlight::default());
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (ctx, flight) = (ctx.clone(), Arc::clone(&flight));
                tokio::spawn(async move { flight.latest(&ctx).await })
            })
            .collect();
        gate.entered(1).await;
        let joined = async {
            while flight.waiting() < 9 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), joined)
            .await
            .expect("nine callers wait for the one check");
        gate.open();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().to_string(), "2.0.0");
        }
        assert_eq!(steps.ran(), ["check"], "one query for ten callers");

        let again = check(&ctx, &flight).await.unwrap();
        assert_eq!(again.latest_version.as_deref(), Some("2.0.0"));
        assert_eq!(steps.ran(), ["check", "check"], "a later check asks again");
    }
}
