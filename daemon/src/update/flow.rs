//! `update.run`: validate, refuse what cannot work before touching
//! anything, take the install root (one run at a time, across processes),
//! run the install mode's steps, then hand off to the new version.

use std::path::Path;
use std::time::Duration;

use molt_protocol::ids::RunId;
use molt_protocol::limits::{SESSION_KEY, TooLong, UPDATE_NOTE, UPDATE_TAG};
use molt_protocol::method::{UPDATE_STEP_TIMEOUT_MS, UpdateRunParams, UpdateRunResult};
use molt_protocol::status::SupervisorKind;
use molt_protocol::update::{
    Channel, InstallMode, RunPhase, RunRecord, RunTarget, RunTrigger, VersionRef,
};

use super::context::RunContext;
use super::failure::{Ended, Failure};
use super::lease::{self, Lease, LeaseError};
use super::owner::current_owner;
use super::record::Run;
use super::runs::new_run_id;
use super::target;
use super::{Plan, Prepared, git, handoff, package};
use crate::clock::unix_ms;
use crate::install::layout;
use crate::restart::scheduler::RequesterId;

/// An `update.run` as the engine takes it.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub params: UpdateRunParams,
    pub trigger: RunTrigger,
    /// Who asked, for the record (`sessionKey`, else the connection).
    pub actor: Option<String>,
    /// The connection whose own request must not defer the restart.
    pub requester: Option<RequesterId>,
}

/// A refusal before any run exists; the method answers it as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    InvalidParams(String),
    /// Another run holds this process's slot or the install's lease.
    #[error("{}", match .0 { Some(id) => format!("update run {id} is in progress"), None => "an update is in progress".to_owned() })]
    Busy(Option<RunId>),
    #[error("this gateway is stopping; retry against its successor")]
    Stopping,
}

pub fn plan(params: &UpdateRunParams, default_channel: Channel) -> Result<Plan, Refused> {
    let too_long = |e: TooLong| Refused::InvalidParams(e.to_string());
    for (limit, value) in [
        (&UPDATE_NOTE, &params.note),
        (&UPDATE_TAG, &params.tag),
        (&SESSION_KEY, &params.session_key),
    ] {
        if let Some(value) = value {
            limit.check(value).map_err(too_long)?;
        }
    }
    let tag = params
        .tag
        .as_deref()
        .map(target::parse_tag)
        .transpose()
        .map_err(|e| Refused::InvalidParams(format!("tag: {e}")))?;
    if let Some(ms) = params.timeout_ms
        && !UPDATE_STEP_TIMEOUT_MS.contains(&ms)
    {
        return Err(Refused::InvalidParams(format!(
            "timeoutMs must be between {} and {}, got {ms}",
            UPDATE_STEP_TIMEOUT_MS.start(),
            UPDATE_STEP_TIMEOUT_MS.end()
        )));
    }
    Ok(Plan {
        tag,
        channel: params.channel.unwrap_or(default_channel),
        timeout: Duration::from_millis(params.step_timeout_ms()),
        dry_run: params.dry_run.unwrap_or(false),
        restart_delay_ms: params.restart_delay_ms,
    })
}

/// Runs `update.run`. An `Err` is a refusal before any run exists (bad
/// params, another run in progress, stopping); everything after is a
/// result with a run record.
pub async fn run(ctx: &RunContext, request: RunRequest) -> Result<UpdateRunResult, Refused> {
    let RunRequest {
        params,
        trigger,
        actor,
        requester,
    } = request;
    let plan = plan(&params, ctx.settings.channel)?;
    if ctx.cancel.is_cancelled() {
        return Err(Refused::Stopping);
    }
    let installed = &ctx.install;
    let run_id = new_run_id();
    let now = unix_ms();
    let record = RunRecord {
        run_id: run_id.clone(),
        trigger,
        actor: params.session_key.clone().or(actor),
        phase: RunPhase::Requested,
        mode: installed.surface,
        root: installed.root.clone(),
        target: RunTarget {
            version: None,
            tag: params.tag.clone(),
            channel: Some(plan.channel),
        },
        before: VersionRef::new(&ctx.version),
        after: VersionRef::default(),
        note: params.note.clone(),
        reason: None,
        steps: Vec::new(),
        owner: current_owner(),
        requested_at: now,
        updated_at: now,
        finished_at: None,
        changelog: None,
    };
    let mut run = Run::new(ctx, record, plan.timeout, plan.dry_run);

    if let Some(refusal) = refusal(ctx, plan.channel) {
        return Ok(run.end(refusal.into()).await);
    }
    let (Some(root), Some(entrypoint)) = (installed.root.clone(), installed.entrypoint.clone())
    else {
        let unknown = Failure::Layout("the install root or entrypoint is unknown".to_owned());
        return Ok(run.end(unknown.into()).await);
    };

    if plan.dry_run {
        // A plan only reads: it takes neither this process's slot nor the
        // install's lease, so it answers while a run holds them and never
        // holds up a real run.
        let ended = plan_only(ctx, &mut run, &plan, &root).await;
        return Ok(run.end(ended).await);
    }

    let Some(_slot) = ctx.slot.try_claim(&run_id) else {
        return Err(Refused::Busy(ctx.slot.current()));
    };
    let owner = run.record.owner.clone();
    let lease_path = lease::lease_path(Path::new(&root));
    let acquired = tokio::task::spawn_blocking(move || Lease::acquire(&lease_path, run_id, owner))
        .await
        .unwrap_or_else(|e| Err(LeaseError::Io(std::io::Error::other(e))));
    let lease = match acquired {
        Ok(lease) => lease,
        Err(LeaseError::Busy { run_id, .. }) => return Err(Refused::Busy(Some(run_id))),
        Err(e) => return Ok(run.end(Failure::LeaseFailed(e.to_string()).into()).await),
    };
    run.set_phase(RunPhase::Running).await;

    let prepared = prepare(ctx, &mut run, &plan, &root, &entrypoint).await;
    match prepared {
        Ok(prepared) => Ok(handoff::restart(ctx, run, prepared, lease, &plan, requester).await),
        Err(ended) => {
            let answer = run.end(ended).await;
            release(lease).await;
            Ok(answer)
        }
    }
}

/// Frees the install root on the blocking pool (flock and a write).
async fn release(lease: Lease) {
    match tokio::task::spawn_blocking(move || lease.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("releasing the update lease: {e}"),
        Err(e) => tracing::warn!("releasing the update lease did not finish: {e}"),
    }
}

/// The install mode's steps, up to an applied update.
async fn prepare(
    ctx: &RunContext,
    run: &mut Run,
    plan: &Plan,
    root: &str,
    entrypoint: &str,
) -> Result<Prepared, Ended> {
    let settings = &ctx.settings;
    if ctx.install.surface == InstallMode::Git {
        let build = settings
            .git_build_command
            .clone()
            .unwrap_or_else(|| git::DEFAULT_BUILD.map(str::to_owned).to_vec());
        return git::prepare(run, plan, Path::new(root), Path::new(entrypoint), build).await;
    }
    let (install, package, tool) = package_install(ctx, entrypoint)?;
    package::prepare(run, plan, install, &package, &tool, &ctx.version).await
}

/// A dry run: what the run would install, or why not; never a change.
async fn plan_only(ctx: &RunContext, run: &mut Run, plan: &Plan, root: &str) -> Ended {
    if ctx.install.surface == InstallMode::Git {
        return git::plan_only(run, plan, Path::new(root)).await;
    }
    let entrypoint = ctx.install.entrypoint.as_deref().unwrap_or_default();
    match package_install(ctx, entrypoint) {
        Ok((install, package, tool)) => {
            package::plan_only(run, plan, &install, &package, &tool, &ctx.version).await
        }
        Err(failure) => failure.into(),
    }
}

/// The package install behind `entrypoint`, the package to install and
/// the manager to install it with.
fn package_install(
    ctx: &RunContext,
    entrypoint: &str,
) -> Result<(layout::Install, String, std::path::PathBuf), Failure> {
    let install =
        layout::locate(Path::new(entrypoint)).map_err(|e| Failure::Layout(e.to_string()))?;
    let package = ctx
        .settings
        .package
        .clone()
        .unwrap_or_else(|| install.package.clone());
    let tool = ctx
        .steps
        .tool(install.mode)
        .ok_or(Failure::ToolMissing(install.mode))?;
    Ok((install, package, tool))
}

/// Why this install cannot be updated from here, before anything changes.
fn refusal(ctx: &RunContext, channel: Channel) -> Option<Failure> {
    match ctx.install.surface {
        InstallMode::Unmanaged | InstallMode::Unknown => return Some(Failure::Unmanaged),
        InstallMode::External => return Some(Failure::External),
        InstallMode::Npm | InstallMode::Pnpm | InstallMode::Bun if channel == Channel::Dev => {
            return Some(Failure::DevChannel);
        }
        _ => {}
    }
    // A supervisor that starts moltd again on exit; a container runtime
    // does not count (moltd restarts itself there).
    let supervised = matches!(
        ctx.supervisor,
        SupervisorKind::Systemd | SupervisorKind::Launchd | SupervisorKind::Custom
    );
    (!ctx.restart_enabled && !supervised).then_some(Failure::RestartUnavailable)
}

#[cfg(test)]
mod tests;
