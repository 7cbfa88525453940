//! The auto-updater wired to a running gateway: live inputs from its
//! settings and env, hints as `update.available` broadcasts, stop with the
//! gateway. Its check is the same resolution `update.check` makes, its
//! apply is `update.run` with trigger `auto` (restart reason
//! `update.auto`, same sentinel and run records).

use std::future::Future;

use molt_protocol::actor::Actor;
use molt_protocol::audit::{AuditAction, AuditOutcome};
use molt_protocol::method::UpdateRunParams;
use molt_protocol::update::{RunTrigger, UpdateAvailable, UpdateStatus};
use semver::Version;
use tokio::task::JoinHandle;

use super::Gateway;
use crate::audit;
use crate::autoupdate::{ApplyOutcome, AutoUpdater, Hooks, Live};
use crate::clock::unix_ms;
use crate::metrics::metrics;
use crate::update::flow;

struct GatewayHooks<C, A> {
    gw: Gateway,
    /// Fixed at start: the version this process runs.
    running: Version,
    check: C,
    apply: A,
}

impl<C, CF, A, AF> Hooks for GatewayHooks<C, A>
where
    C: Fn() -> CF + Send + Sync + 'static,
    CF: Future<Output = Result<Version, String>> + Send,
    A: Fn(Version) -> AF + Send + Sync + 'static,
    AF: Future<Output = ApplyOutcome> + Send,
{
    fn now_ms(&self) -> u64 {
        unix_ms()
    }

    fn live(&self) -> Live {
        Live {
            settings: self.gw.settings().update,
            install: self.gw.install().surface,
            kill_switch: self.gw.kill_switch(),
            running: self.running.clone(),
        }
    }

    fn check(&self) -> impl Future<Output = Result<Version, String>> + Send {
        (self.check)()
    }

    fn apply(&self, version: Version) -> impl Future<Output = ApplyOutcome> + Send {
        (self.apply)(version)
    }

    fn notify(&self, available: UpdateAvailable) {
        self.gw.announce_update(Some(available));
    }
}

/// Starts the auto-updater for `gw`; it stops when the gateway stops.
/// `check` resolves the configured channel's target version; `apply` runs
/// the update to a version with trigger `auto`. `None` (and a log line)
/// when the running version is not semver: nothing could be compared.
pub fn spawn<C, CF, A, AF>(gw: &Gateway, check: C, apply: A) -> Option<JoinHandle<()>>
where
    C: Fn() -> CF + Send + Sync + 'static,
    CF: Future<Output = Result<Version, String>> + Send + 'static,
    A: Fn(Version) -> AF + Send + Sync + 'static,
    AF: Future<Output = ApplyOutcome> + Send + 'static,
{
    let Some(live) = gw.auto_live() else {
        tracing::warn!(
            version = %gw.identity().version,
            "auto-updater not started: the running version is not semver"
        );
        return None;
    };
    let hooks = GatewayHooks {
        gw: gw.clone(),
        running: live.running,
        check,
        apply,
    };
    let updater = AutoUpdater::new(hooks, gw.auto().clone());
    Some(tokio::spawn(updater.run(gw.stopping().clone())))
}

/// Starts the auto-updater with the update engine's check and run.
pub fn spawn_with_update_engine(gw: &Gateway) -> Option<JoinHandle<()>> {
    let (check_gw, apply_gw) = (gw.clone(), gw.clone());
    spawn(
        gw,
        move || {
            let (ctx, gw) = (check_gw.run_context(), check_gw.clone());
            async move {
                let found = gw.check_flight().latest(&ctx).await;
                metrics().autoupdate_check(match &found {
                    Ok(latest)
                        if Version::parse(&gw.identity().version).is_ok_and(|v| *latest > v) =>
                    {
                        "update-available"
                    }
                    Ok(_) => "up-to-date",
                    Err(_) => "failed",
                });
                found.map_err(|e| e.to_string())
            }
        },
        move |version| {
            let gw = apply_gw.clone();
            // Tracked as a client's update run is: a stop drains it, so the
            // run's end and its audit entry are written before this process
            // exits (after a handoff, too).
            let tracker = gw.requests().clone();
            tracker.track_future(async move { apply(&gw, version).await })
        },
    )
}

/// Runs the update with trigger `auto` and writes it to the audit trail
/// as the auto-updater's.
async fn apply(gw: &Gateway, version: Version) -> ApplyOutcome {
    let params = UpdateRunParams {
        tag: Some(version.to_string()),
        ..UpdateRunParams::default()
    };
    let request = flow::RunRequest {
        params: params.clone(),
        trigger: RunTrigger::Auto,
        actor: Some(Actor::AutoUpdater.to_string()),
        requester: None,
    };
    let ran = flow::run(&gw.run_context(), request).await;
    let (outcome, run_id) = match &ran {
        Ok(run) if run.ok => (AuditOutcome::ok(), Some(run.run_id.clone())),
        Ok(run) => (
            AuditOutcome::failed(
                run.result.status.as_str(),
                run.result.reason.as_deref().unwrap_or_default(),
            ),
            Some(run.run_id.clone()),
        ),
        Err(refused) => (AuditOutcome::failed("refused", &refused.to_string()), None),
    };
    let params = serde_json::to_value(&params).unwrap_or_default();
    gw.audit(audit::entry(
        AuditAction::UpdateRun,
        Actor::AutoUpdater,
        params,
        outcome,
        run_id,
    ))
    .await;
    match ran {
        Ok(run) => {
            let reason = run.result.reason.unwrap_or_default();
            match run.result.status {
                UpdateStatus::Ok if run.ok => ApplyOutcome::Applied,
                UpdateStatus::Skipped => ApplyOutcome::Skipped(reason),
                _ => ApplyOutcome::Failed(reason),
            }
        }
        Err(refused) => ApplyOutcome::Skipped(refused.to_string()),
    }
}
