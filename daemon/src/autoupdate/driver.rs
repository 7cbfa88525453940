//! The auto-updater task: evaluate the policy, run a due check, run a due
//! apply, log anything else with its reason, then sleep until the plan's
//! next time or until poked (settings or kill switch changed). The
//! registry check and the update itself are the caller's ([`Hooks`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use molt_protocol::update::{InstallMode, UpdateAvailable};
use parking_lot::{Mutex, MutexGuard};
use semver::Version;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::kill_switch::KillSwitch;
use super::policy::{self, Decision, Inputs, Plan};
use super::state::{AttemptOutcome, CheckState};
use super::store;
use crate::config::UpdateSettings;

/// The longest single sleep. Sleeps run on the monotonic clock while the
/// plan is in wall-clock time; re-planning hourly bounds how late a
/// suspend or a clock step can make a check or an apply.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The inputs that can change while moltd runs, read at every evaluation.
#[derive(Clone, Debug)]
pub struct Live {
    pub settings: UpdateSettings,
    pub install: InstallMode,
    pub kill_switch: KillSwitch,
    pub running: Version,
}

/// What an automatic update run came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The update ran and its restart is scheduled.
    Applied,
    /// The update failed or was rolled back.
    Failed(String),
    /// The update flow declined (a run in progress, no restart possible,
    /// the kill switch seen at the last moment).
    Skipped(String),
}

/// What the gateway gives the driver.
pub trait Hooks: Send + Sync + 'static {
    /// Unix ms. Tests derive it from tokio's (paused) clock.
    fn now_ms(&self) -> u64;
    fn live(&self) -> Live;
    /// Asks the registry for the configured channel's target version.
    fn check(&self) -> impl Future<Output = Result<Version, String>> + Send;
    /// Runs the update to `version` (trigger `auto`, reason `update.auto`).
    fn apply(&self, version: Version) -> impl Future<Output = ApplyOutcome> + Send;
    /// A newer version is available (log and broadcast `update.available`).
    fn notify(&self, available: UpdateAvailable);
}

/// The auto-updater's state, shared by the driver and the gateway (for
/// `status.auto`): the persisted [`CheckState`] and a wake-up signal.
#[derive(Debug)]
pub struct Shared {
    path: PathBuf,
    state: Mutex<CheckState>,
    wake: Notify,
    driving: AtomicBool,
    started_at_ms: u64,
}

impl Shared {
    /// Loads `update-check.json` (see [`store::load_or_init`]).
    pub fn load(path: &Path, started_at_ms: u64) -> Self {
        Self::new(path, store::load_or_init(path), started_at_ms)
    }

    pub fn new(path: &Path, state: CheckState, started_at_ms: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            state: Mutex::new(state),
            wake: Notify::new(),
            driving: AtomicBool::new(false),
            started_at_ms,
        }
    }

    pub fn state(&self) -> CheckState {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, CheckState> {
        self.state.lock()
    }

    /// Changes the state and saves it. A failed save is logged and the
    /// change kept in memory: the updater must not stall on a full disk.
    /// The save stays inline (a small atomic write): a stop between the
    /// change and its save must not lose it.
    fn update(&self, change: impl FnOnce(&mut CheckState)) {
        let snapshot = {
            let mut state = self.lock();
            change(&mut state);
            state.clone()
        };
        if let Err(e) = store::write(&self.path, &snapshot) {
            tracing::warn!("cannot save the auto-update state: {e}");
        }
    }

    /// Re-evaluates at once (after a settings or kill switch change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether a driver runs; without one nothing is scheduled.
    pub fn driving(&self) -> bool {
        self.driving.load(Ordering::Relaxed)
    }

    pub fn plan(&self, live: &Live, now_ms: u64) -> Plan {
        let state = self.lock();
        policy::evaluate(&Inputs {
            settings: &live.settings,
            install: live.install,
            kill_switch: live.kill_switch,
            state: &state,
            running: &live.running,
            started_at_ms: self.started_at_ms,
            now_ms,
        })
    }
}

pub struct AutoUpdater<H> {
    hooks: H,
    shared: Arc<Shared>,
    /// The version last announced by this process.
    notified: Option<Version>,
    /// The last decision logged, so a spurious wake does not repeat it.
    logged: Option<Decision>,
}

/// Clears `driving` however the driver ends.
struct Driving<'a>(&'a Shared);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        self.0.driving.store(false, Ordering::Relaxed);
    }
}

impl<H: Hooks> AutoUpdater<H> {
    pub fn new(hooks: H, shared: Arc<Shared>) -> Self {
        Self {
            hooks,
            shared,
            notified: None,
            logged: None,
        }
    }

    /// Runs until `cancel`. A running check is dropped on cancel; a
    /// running apply is not (the update flow owns what a stop means).
    pub async fn run(mut self, cancel: CancellationToken) {
        let shared = self.shared.clone();
        shared.driving.store(true, Ordering::Relaxed);
        let _driving = Driving(&shared);
        loop {
            let now = self.hooks.now_ms();
            let live = self.hooks.live();
            let plan = shared.plan(&live, now);
            if plan.next_check_at.is_some_and(|at| at <= now) {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    () = self.check(&live) => continue,
                }
            }
            if let Decision::Apply { version } = &plan.decision {
                self.apply(version.clone()).await;
                continue;
            }
            self.log(&plan);
            let wake_at = [plan.next_check_at, plan.next_apply_at]
                .into_iter()
                .flatten()
                .filter(|at| *at > now)
                .min();
            let sleep = async {
                match wake_at {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at - now).min(MAX_SLEEP)).await
                    }
                    None => tokio::time::sleep(MAX_SLEEP).await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = shared.wake.notified() => {}
                () = sleep => {}
            }
        }
    }

    async fn check(&mut self, live: &Live) {
        let channel = live.settings.channel;
        let result = self.hooks.check().await;
        let now = self.hooks.now_ms();
        match &result {
            Ok(latest) => tracing::info!(
                %latest, running = %live.running, channel = channel.as_str(),
                "auto-update: checked the registry"
            ),
            Err(e) => tracing::warn!(
                channel = channel.as_str(),
                "auto-update: check failed, trying again at the next check time: {e}"
            ),
        }
        let newer = result
            .as_ref()
            .ok()
            .filter(|latest| **latest > live.running)
            .cloned();
        self.shared
            .update(|s| s.record_check(now, channel, result, &live.running));
        if let Some(latest) = newer
            && self.notified.as_ref() != Some(&latest)
        {
            self.hooks.notify(UpdateAvailable {
                current_version: live.running.to_string(),
                latest_version: latest.to_string(),
                channel,
            });
            self.shared
                .update(|s| s.last_notified_version = Some(latest.clone()));
            self.notified = Some(latest);
        }
    }

    async fn apply(&mut self, version: Version) {
        // The kill switch may have been set while a check ran.
        let live = self.hooks.live();
        if live.kill_switch.blocked() {
            return;
        }
        tracing::info!(%version, running = %live.running, "auto-update: applying");
        let outcome = self.hooks.apply(version.clone()).await;
        let (kind, reason) = match &outcome {
            ApplyOutcome::Applied => (AttemptOutcome::Applied, None),
            ApplyOutcome::Failed(r) => (AttemptOutcome::Failed, Some(r.clone())),
            ApplyOutcome::Skipped(r) => (AttemptOutcome::Skipped, Some(r.clone())),
        };
        match &reason {
            None => tracing::info!(%version, "auto-update: applied; restart scheduled"),
            Some(r) => tracing::warn!(
                %version, outcome = kind.as_str(),
                "auto-update: not applied ({r}); not attempted again for {} h",
                policy::RETRY_AFTER.as_secs() / 3600
            ),
        }
        let now = self.hooks.now_ms();
        self.shared
            .update(|s| s.record_attempt(&version, now, kind, reason));
    }

    fn log(&mut self, plan: &Plan) {
        if self.logged.as_ref() == Some(&plan.decision) {
            return;
        }
        match &plan.decision {
            Decision::Blocked { .. } => tracing::warn!("auto-update: {}", plan.decision),
            _ => tracing::info!(
                next_check_at = plan.next_check_at,
                "auto-update: {}",
                plan.decision
            ),
        }
        self.logged = Some(plan.decision.clone());
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
