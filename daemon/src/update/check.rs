//! `update.check`: what the channel offers, through the package manager's
//! own metadata (or the checkout's tags), without changing anything.

use std::path::Path;
use std::time::Duration;

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

/// Resolves the channel's version and whether it is newer than the
/// running one. The caller announces it (`update.available`).
pub async fn check(ctx: &RunContext) -> Result<UpdateCheckResult, CheckError> {
    let channel = ctx.settings.channel;
    let latest = latest(ctx).await?;
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
