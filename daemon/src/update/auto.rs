//! The auto-updater wired to the update engine: its check is the same
//! resolution `update.check` makes, its apply is `update.run` with trigger
//! `auto` (restart reason `update.auto`, same sentinel and run records).

use molt_protocol::method::UpdateRunParams;
use molt_protocol::update::{RunTrigger, UpdateStatus};
use tokio::task::JoinHandle;

use super::{check, flow};
use crate::autoupdate::{self, ApplyOutcome};
use crate::gateway::Gateway;

/// Starts the auto-updater for `gw` (it stops with the gateway).
pub fn spawn(gw: &Gateway) -> Option<JoinHandle<()>> {
    let check_gw = gw.clone();
    let apply_gw = gw.clone();
    autoupdate::spawn(
        gw,
        move || {
            let gw = check_gw.clone();
            async move { check::latest(&gw).await.map_err(|e| e.message) }
        },
        move |version| {
            let gw = apply_gw.clone();
            async move { apply(&gw, version).await }
        },
    )
}

async fn apply(gw: &Gateway, version: semver::Version) -> ApplyOutcome {
    let params = UpdateRunParams {
        tag: Some(version.to_string()),
        ..UpdateRunParams::default()
    };
    match flow::run(gw, None, params, RunTrigger::Auto).await {
        Ok(run) => {
            let reason = run.result.reason.unwrap_or_default();
            match run.result.status {
                UpdateStatus::Ok if run.ok => ApplyOutcome::Applied,
                UpdateStatus::Skipped => ApplyOutcome::Skipped(reason),
                _ => ApplyOutcome::Failed(reason),
            }
        }
        Err(refused) => ApplyOutcome::Skipped(refused.message),
    }
}
