//! What one update run is given, and nothing more: the run store, the
//! event bus, the restart handle, the gateway's stop token, the step
//! runner and the few facts the run reads. The gateway builds one per run;
//! tests build one from fakes.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use molt_protocol::status::{InstallInfo, SupervisorKind};
use molt_protocol::update::{InstallMode, StepRecord};
use tokio_util::sync::CancellationToken;

use super::UpdateSlot;
use super::runs::RunStore;
use super::steps::{StepSpec, run_step_with_stdout};
use crate::autoupdate::KillSwitch;
use crate::config::UpdateSettings;
use crate::events::EventBus;
use crate::paths::StatePaths;
use crate::restart::engine::{RestartEngine, RestartRequest};
use crate::restart::scheduler::{Rejected, Scheduled};

/// A command's record and, up to the asked bound, its whole stdout.
pub type StepOutput = (StepRecord, Option<String>);

/// The package manager and git, as a run starts them.
pub trait StepRunner: Send + Sync {
    /// The package manager's executable for `mode`.
    fn tool(&self, mode: InstallMode) -> Option<PathBuf>;

    /// Runs one command to its end (or its timeout, or `cancel`).
    fn run<'a>(
        &'a self,
        spec: &'a StepSpec,
        cancel: &'a CancellationToken,
        max_stdout: usize,
    ) -> Pin<Box<dyn Future<Output = StepOutput> + Send + 'a>>;
}

/// The real commands: tools from `PATH`, run by [`run_step_with_stdout`].
pub struct SystemSteps;

impl StepRunner for SystemSteps {
    fn tool(&self, mode: InstallMode) -> Option<PathBuf> {
        if !mode.is_package_manager() {
            return None;
        }
        crate::install::find_on_path(mode.as_str())
    }

    fn run<'a>(
        &'a self,
        spec: &'a StepSpec,
        cancel: &'a CancellationToken,
        max_stdout: usize,
    ) -> Pin<Box<dyn Future<Output = StepOutput> + Send + 'a>> {
        Box::pin(run_step_with_stdout(spec, cancel, max_stdout))
    }
}

/// Where a run asks for its restart.
pub trait Restarter: Send + Sync {
    fn request(&self, request: RestartRequest) -> Result<Scheduled, Rejected>;
}

impl Restarter for RestartEngine {
    fn request(&self, request: RestartRequest) -> Result<Scheduled, Rejected> {
        RestartEngine::request(self, request)
    }
}

/// The kill switch as it stands when asked: it can be set while a run works.
pub type KillSwitchNow = Arc<dyn Fn() -> KillSwitch + Send + Sync>;

#[derive(Clone)]
pub struct RunContext {
    pub runs: RunStore,
    pub events: EventBus,
    pub restart: Arc<dyn Restarter>,
    /// The gateway's stop: a run refuses to start once it fired, and every
    /// command of a run ends with it.
    pub cancel: CancellationToken,
    pub steps: Arc<dyn StepRunner>,
    /// One run at a time in this process (the lease covers the others).
    pub slot: Arc<UpdateSlot>,
    /// The sentinel, the undo record and the rescue live in the state dir.
    pub paths: StatePaths,
    pub install: InstallInfo,
    pub supervisor: SupervisorKind,
    /// The version this process runs.
    pub version: String,
    /// `update.*` as the run starts.
    pub settings: UpdateSettings,
    /// `commands.restart` as the run starts.
    pub restart_enabled: bool,
    pub kill_switch: KillSwitchNow,
}
