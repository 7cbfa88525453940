//! Package installs (npm, pnpm, bun): resolve one exact version through
//! the manager's own metadata, install it into a private stage beside the
//! live tree, prove the staged binary, swap it in all at once.

use std::path::Path;

use molt_protocol::update::{Channel, VersionRef};

use super::failure::{Ended, Failure};
use super::record::Run;
use super::{Plan, Prepared, Undo, stage, swap, target};
use crate::install::layout::Install;

/// The registry's answer for `channel`/`tag`, through `tool`.
pub async fn resolve(
    run: &mut Run,
    install: &Install,
    tool: &Path,
    package: &str,
    channel: Channel,
    tag: Option<&target::TagSpec>,
) -> Result<semver::Version, Failure> {
    let argv = target::metadata_argv(install.mode, tool, package);
    let stdout = run
        .command("resolve", argv, Vec::new(), None)
        .await
        .map_err(|e| Failure::ResolveFailed(e.to_string()))?;
    let meta = target::parse_metadata(install.mode, &stdout)
        .map_err(|e| Failure::ResolveFailed(e.in_package(package).to_string()))?;
    target::resolve(channel, tag, &meta)
        .map_err(|e| Failure::ResolveFailed(e.in_package(package).to_string()))
}

/// The one version the run would install; up to date when it runs.
async fn target(
    run: &mut Run,
    plan: &Plan,
    install: &Install,
    package: &str,
    tool: &Path,
    running: &str,
) -> Result<semver::Version, Failure> {
    let version = resolve(run, install, tool, package, plan.channel, plan.tag.as_ref()).await?;
    run.record.target.version = Some(version.to_string());
    run.record.after = VersionRef::new(version.to_string());
    if version.to_string() == running {
        return Err(Failure::UpToDate);
    }
    Ok(version)
}

/// A dry run: resolve only (a metadata query), and say what would be
/// installed.
pub async fn plan_only(
    run: &mut Run,
    plan: &Plan,
    install: &Install,
    package: &str,
    tool: &Path,
    running: &str,
) -> Ended {
    match target(run, plan, install, package, tool, running).await {
        Ok(version) => Failure::DryRun {
            would: format!("install {package}@{version}"),
        }
        .into(),
        Err(failure) => failure.into(),
    }
}

/// Everything up to and including the swap. Nothing live changes unless
/// the swap succeeds; a failed swap restores what was there.
pub async fn prepare(
    run: &mut Run,
    plan: &Plan,
    install: Install,
    package: &str,
    tool: &Path,
    running: &str,
) -> Result<Prepared, Ended> {
    let version = target(run, plan, &install, package, tool, running).await?;

    let live = install.clone();
    let stage = tokio::task::spawn_blocking(move || stage::stage_dir(&live))
        .await
        .map_err(std::io::Error::other)
        .and_then(|made| made)
        .map_err(|e| Failure::StageFailed(e.to_string()))?;
    let outcome = install_and_swap(run, &install, tool, &stage, package, &version).await;
    let cleanup = stage.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || stage::cleanup_stage(&cleanup)).await {
        tracing::warn!(stage = %stage.display(), "removing the stage did not finish: {e}");
    }
    let backup = outcome?;
    Ok(Prepared {
        undo: Undo::Package {
            backup: Box::new(backup),
        },
        forced: true,
    })
}

async fn install_and_swap(
    run: &mut Run,
    install: &Install,
    tool: &Path,
    stage: &Path,
    package: &str,
    version: &semver::Version,
) -> Result<swap::Backup, Failure> {
    let (argv, env) = stage::install_argv(install, tool, stage, &format!("{package}@{version}"));
    run.command("install", argv, env, Some(stage.to_path_buf()))
        .await
        .map_err(|e| Failure::InstallFailed(e.to_string()))?;
    let (live, staged, target) = (install.clone(), stage.to_path_buf(), version.clone());
    run.internal("verify", move || {
        stage::verify_staged(&live, &staged, &target)
    })
    .await
    .map_err(|e| Failure::VerifyFailed(e.to_string()))?;
    let tag = run.record.run_id.as_str().to_owned();
    let (live, staged) = (install.clone(), stage.to_path_buf());
    let journal = super::journal_path(run.paths());
    run.internal("swap", move || swap::swap(&live, &staged, &tag, &journal))
        .await
        .map_err(|e| Failure::SwapFailed(e.to_string()))
}
