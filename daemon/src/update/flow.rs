//! `update.run`: validate, refuse what cannot work before touching
//! anything, take the install root (one run at a time, across processes),
//! run the install mode's steps, then hand off to the new version.

use std::path::Path;
use std::time::Duration;

use molt_protocol::error::{ErrorShape, UnavailableReason};
use molt_protocol::ids::RunId;
use molt_protocol::method::{MAX_UPDATE_NOTE, UpdateRunParams, UpdateRunResult};
use molt_protocol::status::SupervisorKind;
use molt_protocol::update::{
    Channel, InstallMode, RunPhase, RunRecord, RunTarget, RunTrigger, VersionRef,
};
use serde_json::json;

use super::lease::{self, Lease, LeaseError};
use super::record::{Ended, Run};
use super::runs::new_run_id;
use super::target::{self, TagSpec};
use super::{Undo, git, handoff, layout, package};
use crate::gateway::{Caller, Gateway, VERSION, unix_ms};
use crate::restart::scheduler::RequesterId;

/// Default per-step bound; `timeoutMs` overrides it.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const MIN_STEP_TIMEOUT_MS: u64 = 1000;
const MAX_STEP_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Validated `update.run` params.
pub struct Plan {
    pub tag: Option<TagSpec>,
    pub channel: Channel,
    pub timeout: Duration,
    pub dry_run: bool,
    pub restart_delay_ms: Option<u64>,
}

/// What a mode's steps leave for the handoff.
pub struct Prepared {
    pub undo: Undo,
    /// Restart at once, past deferral and cooldown (package swaps).
    pub forced: bool,
}

pub fn plan(params: &UpdateRunParams, default_channel: Channel) -> Result<Plan, ErrorShape> {
    let tag = params
        .tag
        .as_deref()
        .map(target::parse_tag)
        .transpose()
        .map_err(|e| ErrorShape::invalid_request(format!("tag: {e}")))?;
    if let Some(ms) = params.timeout_ms
        && !(MIN_STEP_TIMEOUT_MS..=MAX_STEP_TIMEOUT_MS).contains(&ms)
    {
        return Err(ErrorShape::invalid_request(format!(
            "timeoutMs must be between {MIN_STEP_TIMEOUT_MS} and {MAX_STEP_TIMEOUT_MS}, got {ms}"
        )));
    }
    if let Some(note) = &params.note
        && note.chars().count() > MAX_UPDATE_NOTE
    {
        return Err(ErrorShape::invalid_request(format!(
            "note must be at most {MAX_UPDATE_NOTE} characters"
        )));
    }
    Ok(Plan {
        tag,
        channel: params.channel.unwrap_or(default_channel),
        timeout: params
            .timeout_ms
            .map_or(DEFAULT_STEP_TIMEOUT, Duration::from_millis),
        dry_run: params.dry_run.unwrap_or(false),
        restart_delay_ms: params.restart_delay_ms,
    })
}

/// Runs `update.run`. An `Err` is a refusal before any run exists (bad
/// params, another run in progress, stopping); everything after is a
/// result with a run record.
pub async fn run(
    gw: &Gateway,
    caller: Option<&Caller>,
    params: UpdateRunParams,
    trigger: RunTrigger,
) -> Result<UpdateRunResult, ErrorShape> {
    let settings = gw.settings();
    let plan = plan(&params, settings.update.channel)?;
    if gw.stopping().is_cancelled() {
        return Err(ErrorShape::unavailable(
            UnavailableReason::GatewayRestarting,
            "this gateway is stopping; retry against its successor",
        )
        .retry_after(1000));
    }
    let installed = gw.install().clone();
    let run_id = new_run_id();
    let owner = lease::current_owner();
    let now = unix_ms();
    let record = RunRecord {
        run_id: run_id.clone(),
        trigger,
        actor: params
            .session_key
            .clone()
            .or_else(|| caller.map(|c| c.conn_id.to_string())),
        phase: RunPhase::Requested,
        mode: installed.surface,
        root: installed.root.clone(),
        target: RunTarget {
            version: None,
            tag: params.tag.clone(),
            channel: Some(plan.channel),
        },
        before: VersionRef::new(VERSION),
        after: VersionRef::default(),
        note: params.note.clone(),
        reason: None,
        steps: Vec::new(),
        owner,
        requested_at: now,
        updated_at: now,
        finished_at: None,
    };
    let mut run = Run::new(gw, record, plan.timeout, plan.dry_run);

    if let Some(reason) = refusal(
        gw,
        settings.restart_enabled,
        installed.surface,
        plan.channel,
    ) {
        return Ok(run.end(Ended::Skipped, &reason));
    }
    let (Some(root), Some(entrypoint)) = (installed.root.clone(), installed.entrypoint.clone())
    else {
        return Ok(run.end(
            Ended::Failed,
            "layout: the install root or entrypoint is unknown",
        ));
    };

    let Some(_slot) = gw.update_slot().try_claim(&run_id) else {
        return Err(busy(gw.update_slot().current()));
    };
    let lease = match Lease::acquire(
        &lease::lease_path(Path::new(&root)),
        run_id.clone(),
        run.record.owner.clone(),
    ) {
        Ok(lease) => lease,
        Err(LeaseError::Busy { run_id, .. }) => return Err(busy(Some(run_id))),
        Err(e) => return Ok(run.end(Ended::Failed, &format!("lease-failed: {e}"))),
    };
    run.set_phase(RunPhase::Running);

    let prepared = if installed.surface == InstallMode::Git {
        let build = settings
            .update
            .git_build_command
            .clone()
            .unwrap_or_else(|| git::DEFAULT_BUILD.map(str::to_owned).to_vec());
        git::prepare(
            &mut run,
            &plan,
            Path::new(&root),
            Path::new(&entrypoint),
            build,
        )
        .await
    } else {
        match layout::locate(Path::new(&entrypoint)) {
            Ok(install) => {
                let package = settings
                    .update
                    .package
                    .clone()
                    .unwrap_or_else(|| install.package.clone());
                package::prepare(&mut run, &plan, install, &package).await
            }
            Err(e) => Err((Ended::Failed, format!("layout: {e}"))),
        }
    };
    match prepared {
        Ok(prepared) => {
            let requester = caller.map(|c| RequesterId(c.conn));
            Ok(handoff::restart(gw, run, prepared, lease, &plan, requester).await)
        }
        Err((ended, reason)) => Ok(run.end(ended, &reason)),
    }
}

/// Why this install cannot be updated from here, before anything changes.
fn refusal(
    gw: &Gateway,
    restart_enabled: bool,
    surface: InstallMode,
    channel: Channel,
) -> Option<String> {
    let reason = match surface {
        InstallMode::Unmanaged | InstallMode::Unknown => {
            "unmanaged: this binary was not installed by npm, pnpm, bun or a git checkout; \
             reinstall it with one of them to update it in place"
        }
        InstallMode::External => {
            "external: a container or orchestrator owns this binary; replace the image instead"
        }
        InstallMode::Npm | InstallMode::Pnpm | InstallMode::Bun if channel == Channel::Dev => {
            "dev-channel: the dev channel follows git main and needs a git checkout"
        }
        _ => "",
    };
    if !reason.is_empty() {
        return Some(reason.to_owned());
    }
    // A supervisor that starts moltd again on exit; a container runtime
    // does not count (moltd restarts itself there).
    let supervised = matches!(
        gw.supervisor_info().kind,
        SupervisorKind::Systemd | SupervisorKind::Launchd | SupervisorKind::Custom
    );
    if !restart_enabled && !supervised {
        return Some(
            "restart-unavailable: commands.restart is false and no supervisor would start \
             the new version"
                .to_owned(),
        );
    }
    None
}

fn busy(run_id: Option<RunId>) -> ErrorShape {
    let message = match &run_id {
        Some(id) => format!("update run {id} is in progress"),
        None => "an update is in progress".to_owned(),
    };
    ErrorShape::unavailable(UnavailableReason::UpdateInProgress, message)
        .with_details(json!({ "reason": "update-in-progress", "runId": run_id }))
        .retry_after(5000)
}
