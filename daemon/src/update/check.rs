//! `update.check`: what the channel offers, through the package manager's
//! own metadata (or the checkout's tags), without changing anything.

use std::path::Path;
use std::time::Duration;

use molt_protocol::error::{ErrorCode, ErrorShape};
use molt_protocol::method::UpdateCheckResult;
use molt_protocol::update::{Channel, InstallMode, UpdateAvailable};

use super::steps::{StepSpec, run_step_with_stdout};
use super::{git, layout, package, record, target};
use crate::gateway::{Gateway, VERSION, unix_ms};

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_METADATA: usize = 8 * 1024 * 1024;

/// Resolves the channel's version and records whether it is newer than
/// the running one (broadcasting `update.available` when that changes).
pub async fn check(gw: &Gateway) -> Result<UpdateCheckResult, ErrorShape> {
    let channel = gw.settings().update.channel;
    let latest = latest(gw).await?;
    let available = semver::Version::parse(VERSION)
        .map_or(true, |running| latest > running)
        .then(|| UpdateAvailable {
            current_version: VERSION.to_owned(),
            latest_version: latest.to_string(),
            channel,
        });
    gw.announce_update(available.clone());
    Ok(UpdateCheckResult {
        update_available: available,
        current_version: VERSION.to_owned(),
        latest_version: Some(latest.to_string()),
        channel,
        checked_at: unix_ms(),
    })
}

/// The one version the configured channel resolves to now.
pub async fn latest(gw: &Gateway) -> Result<semver::Version, ErrorShape> {
    let settings = gw.settings();
    let channel = settings.update.channel;
    let info = gw.install();
    let entrypoint = info.entrypoint.as_deref().ok_or_else(|| {
        ErrorShape::invalid_request("no stable entrypoint: cannot tell how moltd was installed")
    })?;
    let latest = match info.surface {
        InstallMode::Git => {
            let root = info.root.as_deref().unwrap_or_default();
            git_latest(gw, Path::new(root), channel).await?
        }
        mode if mode.is_package_manager() => {
            let install = layout::locate(Path::new(entrypoint))
                .map_err(|e| ErrorShape::invalid_request(format!("update.check: {e}")))?;
            let package = settings
                .update
                .package
                .clone()
                .unwrap_or(install.package.clone());
            let tool = package::tool(install.mode)
                .ok_or_else(|| ErrorShape::internal(format!("{mode} is not on moltd's PATH")))?;
            let stdout = query(gw, target::metadata_argv(install.mode, &tool, &package)).await?;
            let meta = target::parse_metadata(install.mode, &stdout)
                .map_err(|e| ErrorShape::internal(e.in_package(&package).to_string()))?;
            target::resolve(channel, None, &meta)
                .map_err(|e| ErrorShape::invalid_request(e.in_package(&package).to_string()))?
        }
        other => {
            return Err(ErrorShape::invalid_request(format!(
                "update.check needs a package or git install; this one is {}",
                other
            )));
        }
    };
    Ok(latest)
}

/// Runs a read-only query; stdout, or `UNAVAILABLE` naming what failed.
async fn query(gw: &Gateway, argv: Vec<String>) -> Result<String, ErrorShape> {
    let spec = StepSpec {
        name: "check".to_owned(),
        argv,
        cwd: None,
        env: Vec::new(),
        timeout: CHECK_TIMEOUT,
    };
    let (step, stdout) =
        run_step_with_stdout(&spec, &gw.stopping().child_token(), MAX_METADATA).await;
    match stdout {
        Some(stdout) if step.exit_code == Some(0) => Ok(stdout),
        _ => Err(ErrorShape::new(
            ErrorCode::Unavailable,
            format!("update check failed: {}", record::step_failure(&step)),
        )
        .retry_after(30_000)),
    }
}

/// The newest release tag on `channel`, read from the remote without
/// touching the checkout (`ls-remote`: no fetch, no ref changes); `dev`
/// has no version of its own to compare, so it reports the running one.
async fn git_latest(
    gw: &Gateway,
    root: &Path,
    channel: Channel,
) -> Result<semver::Version, ErrorShape> {
    if channel == Channel::Dev {
        return semver::Version::parse(VERSION).map_err(|e| ErrorShape::internal(e.to_string()));
    }
    let argv = git::git_argv(root, &["ls-remote", "--tags", "--refs", git::REMOTE]);
    let refs = query(gw, argv).await?;
    let tags: Vec<&str> = refs
        .lines()
        .filter_map(|line| line.split('\t').nth(1)?.strip_prefix("refs/tags/"))
        .collect();
    git::newest_release(&tags.join("\n"), channel == Channel::Beta).ok_or_else(|| {
        ErrorShape::invalid_request(format!(
            "no release tag (vX.Y.Z) on {} of {}",
            git::REMOTE,
            root.display()
        ))
    })
}
