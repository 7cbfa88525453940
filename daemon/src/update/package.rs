//! Package installs (npm, pnpm, bun): resolve one exact version through
//! the manager's own metadata, install it into a private stage beside the
//! live tree, prove the staged binary, swap it in all at once.

use std::path::{Path, PathBuf};

use molt_protocol::update::{Channel, DRY_RUN_REASON, InstallMode, VersionRef};

use super::flow::{Plan, Prepared};
use super::layout::Install;
use super::record::{Ended, Run};
use super::{Undo, stage, swap, target};
use crate::gateway::VERSION;

/// The package manager's executable, from PATH.
pub fn tool(mode: InstallMode) -> Option<PathBuf> {
    if !mode.is_package_manager() {
        return None;
    }
    crate::install::find_on_path(mode.as_str())
}

/// The registry's answer for `channel`/`tag`, through `tool`.
pub async fn resolve(
    run: &mut Run,
    install: &Install,
    tool: &Path,
    package: &str,
    channel: Channel,
    tag: Option<&target::TagSpec>,
) -> Result<semver::Version, String> {
    let argv = target::metadata_argv(install.mode, tool, package);
    let stdout = run
        .command("resolve", argv, Vec::new(), None)
        .await
        .map_err(|e| format!("resolve-failed: {e}"))?;
    let meta = target::parse_metadata(install.mode, &stdout)
        .map_err(|e| format!("resolve-failed: {}", e.in_package(package)))?;
    target::resolve(channel, tag, &meta)
        .map_err(|e| format!("resolve-failed: {}", e.in_package(package)))
}

/// Everything up to and including the swap. Nothing live changes unless
/// the swap succeeds; a failed swap restores what was there.
pub async fn prepare(
    run: &mut Run,
    plan: &Plan,
    install: Install,
    package: &str,
) -> Result<Prepared, (Ended, String)> {
    let failed = |reason: String| (Ended::Failed, reason);
    let tool = tool(install.mode).ok_or_else(|| {
        failed(format!(
            "tool-missing: {} is not on moltd's PATH",
            install.mode
        ))
    })?;
    let version = resolve(
        run,
        &install,
        &tool,
        package,
        plan.channel,
        plan.tag.as_ref(),
    )
    .await
    .map_err(failed)?;
    run.record.target.version = Some(version.to_string());
    run.record.after = VersionRef::new(version.to_string());
    if version.to_string() == VERSION {
        return Err((Ended::Skipped, "up-to-date".to_owned()));
    }
    if plan.dry_run {
        return Err((
            Ended::Skipped,
            format!("{DRY_RUN_REASON}: would install {package}@{version}"),
        ));
    }

    let stage = stage::stage_dir(&install).map_err(|e| failed(format!("stage-failed: {e}")))?;
    let outcome = install_and_swap(run, &install, &tool, &stage, package, &version).await;
    stage::cleanup_stage(&stage);
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
) -> Result<swap::Backup, (Ended, String)> {
    let failed = |reason: String| (Ended::Failed, reason);
    let (argv, env) = stage::install_argv(install, tool, stage, &format!("{package}@{version}"));
    run.command("install", argv, env, Some(stage.to_path_buf()))
        .await
        .map_err(|e| failed(format!("install-failed: {e}")))?;
    let (live, staged, target) = (install.clone(), stage.to_path_buf(), version.clone());
    run.internal("verify", move || {
        stage::verify_staged(&live, &staged, &target)
    })
    .await
    .map_err(|e| failed(format!("verify-failed: {e}")))?;
    let tag = run.record.run_id.as_str().to_owned();
    let (live, staged) = (install.clone(), stage.to_path_buf());
    run.internal("swap", move || {
        swap::swap(&live, &staged, &tag).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| failed(format!("swap-failed: {e}")))
}
